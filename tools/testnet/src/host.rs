//! One `cairnd` host: its process (started inside its namespace), its data dir, and a JSON-RPC
//! client over the control network with the credentials of the node's cookie.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::signals::Registry;
use crate::topology::Slot;

/// P2P port of every host (each has its own address).
pub const P2P_PORT: u16 = 9645;
/// RPC port of every host, on its control address.
pub const RPC_PORT: u16 = 8645;
/// cairnd's config file in its data dir (`--node-config` lines go there).
pub const NODE_CONFIG_FILE: &str = "cairn.toml";
/// Per-request HTTP timeout; `generatetoaddress` of a full block on a loaded machine is the
/// slowest call.
const RPC_TIMEOUT: Duration = Duration::from_secs(60);
/// How often start-up checks whether RPC answers (a check, not a measurement).
const READY_POLL: Duration = Duration::from_millis(100);
/// Timeout of one start-up probe: a probe stuck on a node still opening its database must
/// not use up the whole start-up time.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Log filter of the nodes unless `RUST_LOG` is set for the harness.
const DEFAULT_NODE_LOG: &str = "info";

/// The network address of a host's P2P listener, as a bootnode multiaddr (no peer id: cairnd
/// accepts bootnodes without it).
pub fn p2p_multiaddr(slot: &Slot) -> String {
    format!("/ip4/{}/tcp/{P2P_PORT}", slot.data_ip)
}

pub struct Host {
    pub slot: Slot,
    pub datadir: PathBuf,
    child: Option<Child>,
    pub rpc: Rpc,
    /// When the process was last spawned.
    pub started_at: Option<Instant>,
}

impl Host {
    pub fn new(slot: Slot, workdir: &Path) -> Host {
        let datadir = workdir.join(format!("host-{}", slot.index));
        let rpc = Rpc {
            url: format!("http://{}:{RPC_PORT}/", slot.control_ip),
            credentials: None,
            agent: ureq::AgentBuilder::new().timeout(RPC_TIMEOUT).build(),
            probe: ureq::AgentBuilder::new().timeout(PROBE_TIMEOUT).build(),
        };
        Host {
            slot,
            datadir,
            child: None,
            rpc,
            started_at: None,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.datadir.join("cairnd.log")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `cairnd run` inside the host's namespace. The process is wrapped in
    /// `setpriv --pdeathsig KILL`, so it dies with the harness even when the harness is killed
    /// with SIGKILL and no clean-up code runs. Call from the main thread only: the death signal
    /// follows the thread that spawned the process.
    pub fn spawn(
        &mut self,
        cairnd: &Path,
        genesis: Option<&Path>,
        bootnodes: &[String],
        node_config: &[String],
        registry: &Registry,
    ) -> Result<()> {
        if self.child.is_some() {
            bail!("host {} is already running", self.slot.index);
        }
        std::fs::create_dir_all(&self.datadir)
            .with_context(|| format!("create {}", self.datadir.display()))?;
        if !node_config.is_empty() {
            let path = self.datadir.join(NODE_CONFIG_FILE);
            let mut text = node_config.join("\n");
            text.push('\n');
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("open {}", self.log_path().display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.slot.namespace])
            .args(["setpriv", "--pdeathsig", "KILL", "--"])
            .arg(cairnd)
            .arg("run")
            .arg("--datadir")
            .arg(&self.datadir)
            .arg("--p2p-listen")
            .arg(p2p_multiaddr(&self.slot))
            .arg("--rpc-addr")
            .arg(format!("{}:{RPC_PORT}", self.slot.control_ip))
            .arg("--no-explorer");
        if let Some(g) = genesis {
            cmd.arg("--genesis").arg(g);
        }
        for b in bootnodes {
            cmd.arg("--bootnode").arg(b);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", DEFAULT_NODE_LOG);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        // Register under the registry lock, so an interrupt either sees this process or
        // finds the harness before it was spawned.
        let child = registry.spawn(&mut cmd)?;
        self.child = Some(child);
        self.started_at = Some(Instant::now());
        Ok(())
    }

    /// Waits until the node answers RPC with the cookie it wrote at this start.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let cookie = self.datadir.join(".cookie");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!(
                    "host {} exited during start-up with {status}; log {}:\n{}",
                    self.slot.index,
                    self.log_path().display(),
                    self.log_tail(20)
                );
            }
            // The cookie is new at every start: re-read it until a call with it succeeds.
            if let Ok(c) = std::fs::read_to_string(&cookie) {
                self.rpc.credentials = Some(c.trim().to_string());
                if self.rpc.probe().is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "host {} did not answer RPC within {timeout:?}; log:\n{}",
                    self.slot.index,
                    self.log_tail(20)
                );
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// SIGKILL, as a crash or a power cut would.
    pub fn kill(&mut self, registry: &Registry) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            registry.forget(c.id());
        }
    }

    /// SIGTERM and a bounded wait for the clean exit; SIGKILL after that.
    pub fn stop(&mut self, registry: &Registry, timeout: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                registry.forget(c.id());
                return;
            }
            std::thread::sleep(READY_POLL);
        }
        let _ = c.kill();
        let _ = c.wait();
        registry.forget(c.id());
    }

    /// Resident and peak resident memory of the process, from `/proc/<pid>/status` (kB there).
    pub fn memory(&self) -> Option<Memory> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        };
        Some(Memory {
            rss: field("VmRSS:")?,
            peak_rss: field("VmHWM:")?,
        })
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn best_hash(&self) -> Result<String> {
        let v = self.rpc.call("getbestblockhash", json!([]))?;
        v.as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("getbestblockhash is not a string: {v}"))
    }

    /// Whether every index says it is at the tip (`getindexinfo`); the answer, for errors.
    pub fn indexes_synced(&self) -> Result<(bool, Value)> {
        let info = self.rpc.call("getindexinfo", json!([]))?;
        let synced = info
            .as_object()
            .is_some_and(|m| !m.is_empty() && m.values().all(|v| v["synced"] == json!(true)));
        Ok((synced, info))
    }

    pub fn height(&self) -> Result<u64> {
        let v = self.rpc.call("getblockcount", json!([]))?;
        v.as_u64()
            .ok_or_else(|| anyhow!("getblockcount is not a number: {v}"))
    }

    pub fn peers(&self) -> Result<u64> {
        let v = self.rpc.call("getconnectioncount", json!([]))?;
        v.as_u64()
            .ok_or_else(|| anyhow!("getconnectioncount is not a number: {v}"))
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub peak_rss: u64,
}

/// JSON-RPC 2.0 over HTTP with Basic credentials (a node bound beyond loopback asks for them on
/// every method).
pub struct Rpc {
    pub url: String,
    pub credentials: Option<String>,
    agent: ureq::Agent,
    probe: ureq::Agent,
}

impl Rpc {
    /// `getblockcount` with a short timeout: is the node up?
    fn probe(&self) -> Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "getblockcount", "params": []});
        answer("getblockcount", &self.post_with(&self.probe, &body)?)
    }

    fn post(&self, body: &Value) -> Result<Value> {
        self.post_with(&self.agent, body)
    }

    fn post_with(&self, agent: &ureq::Agent, body: &Value) -> Result<Value> {
        let mut req = agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(c) = &self.credentials {
            req = req.set("Authorization", &basic_auth(c));
        }
        let resp = match req.send_string(&body.to_string()) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(anyhow!("RPC to {} failed: {e}", self.url)),
        };
        let text = resp.into_string()?;
        serde_json::from_str(&text).with_context(|| format!("RPC answer is not JSON: {text}"))
    }

    /// One call; a JSON-RPC error becomes `Err` with its code and message.
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        let resp =
            self.post(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))?;
        answer(method, &resp)
    }

    /// One batch of calls of one method; one result per call, in order.
    pub fn batch(&self, method: &str, params: &[Value]) -> Result<Vec<Result<Value>>> {
        let calls: Vec<Value> = params
            .iter()
            .enumerate()
            .map(|(i, p)| json!({"jsonrpc": "2.0", "id": i, "method": method, "params": p}))
            .collect();
        let resp = self.post(&Value::Array(calls))?;
        let answers = resp
            .as_array()
            .ok_or_else(|| anyhow!("batch answer is not an array: {resp}"))?;
        let mut out: Vec<Result<Value>> = (0..params.len())
            .map(|_| Err(anyhow!("no answer in the batch")))
            .collect();
        for a in answers {
            let Some(id) = a["id"].as_u64().and_then(|i| usize::try_from(i).ok()) else {
                continue;
            };
            if let Some(slot) = out.get_mut(id) {
                *slot = answer(method, a);
            }
        }
        Ok(out)
    }

    /// `GET /metrics`, parsed into (name, value) pairs of unlabelled samples.
    pub fn metrics(&self) -> Result<Vec<(String, f64)>> {
        let mut req = self.agent.get(&format!("{}metrics", self.url));
        if let Some(c) = &self.credentials {
            req = req.set("Authorization", &basic_auth(c));
        }
        let text = req
            .call()
            .map_err(|e| anyhow!("GET /metrics failed: {e}"))?
            .into_string()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next()?;
                let value = it.next()?.parse().ok()?;
                Some((name.to_string(), value))
            })
            .collect())
    }
}

fn answer(method: &str, resp: &Value) -> Result<Value> {
    if let Some(err) = resp.get("error").filter(|e| !e.is_null()) {
        bail!(
            "{method}: error {} {}",
            err["code"].as_i64().unwrap_or(0),
            err["message"].as_str().unwrap_or("")
        );
    }
    Ok(resp.get("result").cloned().unwrap_or(Value::Null))
}

pub fn basic_auth(credentials: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}
