//! The virtual network: one Linux network namespace per host, two veth pairs each, two bridges,
//! `tc tbf` shaping, and the sweep that removes everything the harness ever created.
//!
//! Every host has two interfaces so that what is measured is only peer-to-peer traffic:
//! - `data0`, on the shaped data bridge, address `198.18.x.y/16`: P2P only. Its counters are the
//!   host's bytes sent and received; `tbf` on it shapes the host's upload, `tbf` on its root-side
//!   peer shapes its download.
//! - `ctl0`, on the unshaped control bridge, address `198.19.x.y/16`: the harness's JSON-RPC and
//!   WebSocket traffic, so that driving the load never counts as gossip nor waits behind it.
//!
//! Both ranges are inside 198.18.0.0/15 (RFC 2544, reserved for benchmarking). Every name the
//! harness creates starts with [`NS_PREFIX`] (namespaces) or [`LINK_PREFIX`] (links in the root
//! namespace), which is what [`sweep`] removes, so a crashed run is cleaned by the next one.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Prefix of every namespace the harness creates.
pub const NS_PREFIX: &str = "cairn-tn-";
/// Prefix of every link the harness creates in the root namespace (bridges and veth ends).
pub const LINK_PREFIX: &str = "ctn-";
/// Bridge of the P2P network.
pub const DATA_BRIDGE: &str = "ctn-data";
/// Second bridge with the same address range: hosts moved here cannot reach those on
/// [`DATA_BRIDGE`] (a partition) while they still reach each other.
pub const APART_BRIDGE: &str = "ctn-apart";
/// Bridge of the control network (RPC and WebSocket from the harness in the root namespace).
pub const CONTROL_BRIDGE: &str = "ctn-ctl";
/// Address of the harness on the control bridge.
pub const CONTROL_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// Prefix length of both networks.
const PREFIX_LEN: u8 = 16;
/// Interface names inside a namespace (a namespace has its own name space for links).
pub const DATA_IF: &str = "data0";
const CONTROL_IF: &str = "ctl0";
/// Hosts per /24 and the first host octet: addresses `198.1{8,9}.(i / 200).(10 + i % 200)`,
/// clear of the gateway's `.1`.
const HOSTS_PER_OCTET: usize = 200;
const FIRST_HOST_OCTET: usize = 10;
/// Most hosts one run may create (the address plan allows more; this keeps a typo from
/// starting thousands of nodes).
pub const MAX_HOSTS: usize = 400;
/// `tbf` queue bound: packets waiting longer than this are dropped (TCP backs off). Long enough
/// that a 1 MB block queued behind a 20 Mbit/s link is not dropped, as a real uplink's buffer.
const TBF_LATENCY: &str = "400ms";
/// `tbf` bucket: 10 ms of traffic at the shaped rate, and at least this many bytes, so a
/// slow link still passes a full-size (64 KiB GSO) packet without stalling.
const TBF_MIN_BURST_BYTES: u64 = 64 * 1024;
const TBF_BURST_PER_SECOND: u64 = 100;

/// The kernel's ARP table limits (soft floor, soft max, hard max). The table is shared by every
/// namespace: 32 hosts that each know the other 31 pass the default hard max of 1,024 and new
/// neighbours are refused ("neighbor table overflow"): a host started then can reach no one.
const NEIGH_LIMITS: [&str; 3] = [
    "/proc/sys/net/ipv4/neigh/default/gc_thresh1",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh2",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
];

/// ARP entries a run of `hosts` may hold: every host may know every other on the data
/// network, the harness knows every host on the control network, twice over for the slack the
/// kernel's garbage collection needs.
pub fn neighbour_entries(hosts: usize) -> u64 {
    2 * (hosts as u64 * hosts as u64 + hosts as u64)
}

/// Raises the ARP table limits to hold `needed` entries; returns the previous limits (to
/// restore at the end) if it changed them.
pub fn raise_neighbour_limits(needed: u64) -> Result<Option<[u64; 3]>> {
    let mut old = [0u64; 3];
    for (o, path) in old.iter_mut().zip(NEIGH_LIMITS) {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
        *o = text
            .trim()
            .parse()
            .with_context(|| format!("parse {path}"))?;
    }
    if old[2] >= needed {
        return Ok(None);
    }
    let new = [old[0].max(needed / 4), old[1].max(needed / 2), needed];
    write_neighbour_limits(new)?;
    Ok(Some(old))
}

/// Writes the three ARP table limits.
pub fn write_neighbour_limits(limits: [u64; 3]) -> Result<()> {
    for (v, path) in limits.iter().zip(NEIGH_LIMITS) {
        std::fs::write(path, v.to_string()).with_context(|| format!("write {path}"))?;
    }
    Ok(())
}

/// Names and addresses of one host's slot in the topology.
#[derive(Clone, Debug)]
pub struct Slot {
    pub index: usize,
    pub namespace: String,
    pub data_ip: Ipv4Addr,
    pub control_ip: Ipv4Addr,
    /// Root-namespace end of the data veth: its rx counter is what the host sent.
    pub data_link: String,
    control_link: String,
}

impl Slot {
    pub fn new(index: usize) -> Result<Slot> {
        if index >= MAX_HOSTS {
            bail!("at most {MAX_HOSTS} hosts");
        }
        let third = u8::try_from(index / HOSTS_PER_OCTET).context("host index")?;
        let fourth =
            u8::try_from(FIRST_HOST_OCTET + index % HOSTS_PER_OCTET).context("host index")?;
        Ok(Slot {
            index,
            namespace: format!("{NS_PREFIX}{index}"),
            data_ip: Ipv4Addr::new(198, 18, third, fourth),
            control_ip: Ipv4Addr::new(198, 19, third, fourth),
            data_link: format!("{LINK_PREFIX}d{index}"),
            control_link: format!("{LINK_PREFIX}c{index}"),
        })
    }
}

/// Runs a command and returns its stdout; a failure carries the command line and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// Whether this process can create namespaces: root, and `ip netns` works. `Err` says why not.
pub fn check_privileges() -> Result<()> {
    let uid = run("id", &["-u"])?;
    if uid.trim() != "0" {
        bail!(
            "needs root (network namespaces, bridges and tc); uid is {}",
            uid.trim()
        );
    }
    ip(&["netns", "list"]).context("`ip netns` is not available")?;
    run("tc", &["-V"]).context("`tc` is not available")?;
    run("setpriv", &["--version"]).context("`setpriv` (util-linux) is not available")?;
    Ok(())
}

/// With `br_netfilter` loaded (Docker loads it), bridged frames go through iptables' FORWARD
/// chain, whose policy may drop them: a warning to print, if so.
pub fn bridge_filter_warning() -> Option<String> {
    let path = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    let on = std::fs::read_to_string(path).ok()?.trim() == "1";
    on.then(|| {
        format!(
            "warning: {path} is 1: bridged P2P traffic passes iptables' FORWARD chain; \
             if hosts cannot reach each other, allow it or set it to 0"
        )
    })
}

/// Creates the bridges (after a [`sweep`]).
pub fn create_bridges() -> Result<()> {
    for bridge in [DATA_BRIDGE, APART_BRIDGE, CONTROL_BRIDGE] {
        ip(&["link", "add", bridge, "type", "bridge"])?;
        ip(&["link", "set", bridge, "up"])?;
    }
    let gateway = format!("{CONTROL_GATEWAY}/{PREFIX_LEN}");
    ip(&["addr", "add", &gateway, "dev", CONTROL_BRIDGE])?;
    Ok(())
}

/// Creates a host's namespace and links; the data link starts on `data_bridge` (`None`: on no
/// bridge, unreachable until [`attach`]).
pub fn create_slot(slot: &Slot, data_bridge: Option<&str>) -> Result<()> {
    let ns = slot.namespace.as_str();
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    for (link, inner, addr) in [
        (&slot.data_link, DATA_IF, slot.data_ip),
        (&slot.control_link, CONTROL_IF, slot.control_ip),
    ] {
        ip(&[
            "link", "add", link, "type", "veth", "peer", "name", inner, "netns", ns,
        ])?;
        let cidr = format!("{addr}/{PREFIX_LEN}");
        ip(&["-n", ns, "addr", "add", &cidr, "dev", inner])?;
        ip(&["-n", ns, "link", "set", inner, "up"])?;
    }
    ip(&[
        "link",
        "set",
        &slot.control_link,
        "master",
        CONTROL_BRIDGE,
        "up",
    ])?;
    match data_bridge {
        Some(b) => ip(&["link", "set", &slot.data_link, "master", b, "up"])?,
        None => ip(&["link", "set", &slot.data_link, "up"])?,
    };
    Ok(())
}

/// Moves a host's data link onto `bridge` (a partition, or healing one).
pub fn attach(slot: &Slot, bridge: &str) -> Result<()> {
    ip(&["link", "set", &slot.data_link, "master", bridge])?;
    Ok(())
}

/// Takes a host's data link off every bridge: it reaches no one until [`attach`].
pub fn detach(slot: &Slot) -> Result<()> {
    ip(&["link", "set", &slot.data_link, "nomaster"])?;
    Ok(())
}

/// Shaping of one host: its upload (egress of `data0` inside the namespace) and its download
/// (egress of the root-side peer) in Mbit/s; `None` removes the shaping of that direction.
pub fn shape(slot: &Slot, upload_mbit: Option<u32>, download_mbit: Option<u32>) -> Result<()> {
    let ns = slot.namespace.as_str();
    set_tbf(Some(ns), DATA_IF, upload_mbit)?;
    set_tbf(None, &slot.data_link, download_mbit)
}

fn set_tbf(ns: Option<&str>, dev: &str, mbit: Option<u32>) -> Result<()> {
    let mut args: Vec<String> = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n".into(), ns.into()]);
    }
    match mbit {
        Some(rate) => {
            let bytes_per_second = u64::from(rate) * 1_000_000 / 8;
            let burst = (bytes_per_second / TBF_BURST_PER_SECOND).max(TBF_MIN_BURST_BYTES);
            args.extend(["qdisc", "replace", "dev", dev, "root", "tbf", "rate"].map(String::from));
            args.extend([
                format!("{rate}mbit"),
                "burst".into(),
                format!("{burst}b"),
                "latency".into(),
                TBF_LATENCY.into(),
            ]);
        }
        None => {
            args.extend(["qdisc", "del", "dev", dev, "root"].map(String::from));
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match run("tc", &refs) {
        Ok(_) => Ok(()),
        // Deleting a qdisc that is not there is what "no shaping" means already.
        Err(_) if mbit.is_none() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes a host sent and received on its data link (root-side counters: what the peer end
/// received is what the host sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub received: u64,
}

impl Counters {
    pub fn since(self, before: Counters) -> Counters {
        Counters {
            sent: self.sent.saturating_sub(before.sent),
            received: self.received.saturating_sub(before.received),
        }
    }
}

pub fn counters(slot: &Slot) -> Result<Counters> {
    let read = |name: &str| -> Result<u64> {
        let path = format!("/sys/class/net/{}/statistics/{name}", slot.data_link);
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        text.trim().parse().with_context(|| format!("parse {path}"))
    };
    Ok(Counters {
        sent: read("rx_bytes")?,
        received: read("tx_bytes")?,
    })
}

/// Removes everything with the harness's prefixes: processes inside its namespaces (left by a
/// run that was killed with SIGKILL, whose nodes may have outlived it), the namespaces, then
/// the links in the root namespace (deleting a namespace deletes its veth pairs; the bridges
/// remain). Returns what it removed, for the log.
pub fn sweep() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for line in ip(&["netns", "list"])?.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with(NS_PREFIX) {
            continue;
        }
        for pid in ip(&["netns", "pids", name])
            .unwrap_or_default()
            .split_whitespace()
        {
            // Only processes inside a namespace this harness names: its own nodes.
            let _ = run("kill", &["-KILL", pid]);
            removed.push(format!("process {pid} in {name}"));
        }
        ip(&["netns", "del", name])?;
        removed.push(format!("namespace {name}"));
    }
    for line in ip(&["-o", "link", "show"])?.lines() {
        // "12: ctn-d5@if2: <BROADCAST,...>": the name is the second field, before any '@'.
        let Some(field) = line.split_whitespace().nth(1) else {
            continue;
        };
        let name = field.trim_end_matches(':');
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(LINK_PREFIX) {
            // A veth end may already be gone with its peer; a failure here is not fatal.
            if ip(&["link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_the_benchmarking_range_and_names_fit_ifnamsiz() -> Result<()> {
        for i in [0, 1, 199, 200, MAX_HOSTS - 1] {
            let s = Slot::new(i)?;
            for ip in [s.data_ip, s.control_ip] {
                let [a, b, ..] = ip.octets();
                assert!(a == 198 && (b == 18 || b == 19), "{ip}");
                assert_ne!(ip, CONTROL_GATEWAY);
            }
            // Linux interface names are at most 15 bytes.
            assert!(s.data_link.len() <= 15 && s.control_link.len() <= 15);
        }
        assert_ne!(Slot::new(0)?.data_ip, Slot::new(200)?.data_ip);
        assert!(Slot::new(MAX_HOSTS).is_err());
        Ok(())
    }
}
