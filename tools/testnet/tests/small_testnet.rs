//! The harness's small mode, run by the test suite so it never rots: four real `cairnd` hosts
//! in network namespaces, every scenario for a few seconds, and the report must show one tip
//! and one UTXO digest on every host at the end of each scenario.
//!
//! Needs root and `ip netns` (CI has both); elsewhere it prints why and skips.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Hosts in `--small` mode (the harness's `SMALL_HOSTS`).
const SMALL_HOSTS: usize = 4;
const SCENARIOS: [&str; 5] = ["steady", "burst", "partition", "churn", "late-joiner"];

fn can_run() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| format!("no `ip`: {e}"))?;
    if !netns.status.success() {
        return Err("`ip netns` does not work here".into());
    }
    Ok(())
}

#[test]
fn small_testnet_ends_every_scenario_on_one_tip_and_utxo_digest() -> Result<(), String> {
    if let Err(why) = can_run() {
        eprintln!("SKIPPED small_testnet: {why} (the harness needs root and network namespaces)");
        return Ok(());
    }
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_cairn-testnet"));
    let cairnd = harness.with_file_name("cairnd");
    assert!(
        cairnd.is_file(),
        "{} not built: run `cargo build --workspace --bins` first (./test.sh does)",
        cairnd.display()
    );
    let dir = std::env::temp_dir().join(format!("cairn-testnet-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let report_path = dir.join("report.json");
    let out = Command::new(&harness)
        .arg("--small")
        .arg("--cairnd")
        .arg(&cairnd)
        .arg("--report")
        .arg(&report_path)
        .arg("--workdir")
        .arg(dir.join("work"))
        .output()
        .map_err(|e| format!("run {}: {e}", harness.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&report_path)
        .map_err(|e| format!("no report ({e}); status {}\n{stdout}\n{stderr}", out.status))?;
    let report: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let names: Vec<&str> = report["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, SCENARIOS, "{stdout}");
    for s in report["scenarios"].as_array().into_iter().flatten() {
        let end = &s["end_check"];
        let hosts = end["per_host"].as_array().map_or(0, Vec::len);
        assert_eq!(
            hosts, SMALL_HOSTS,
            "{}: every host checked\n{stdout}",
            s["name"]
        );
        assert_eq!(
            end["one_tip_and_utxo_digest"],
            Value::Bool(true),
            "{}\n{stdout}",
            s["name"]
        );
        let digests: Vec<&Value> = end["per_host"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| &h["utxo_digest"])
            .collect();
        assert!(
            digests
                .iter()
                .all(|d| d.as_str().is_some_and(|d| !d.is_empty()) && *d == digests[0])
        );
    }
    // Measurements came from the nodes: blocks were stamped by every host.
    let steady = &report["scenarios"][0]["measures"];
    assert!(
        steady["blocks"].as_array().is_some_and(|b| !b.is_empty()
            && b.iter()
                .all(|b| b["connected_by_every_host_ms"].is_number())),
        "{stdout}"
    );
    // Nothing is left behind: no namespace with the harness's prefix.
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| e.to_string())?;
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("cairn-tn-"),
        "namespaces left behind"
    );
    assert!(!dir.join("work").exists(), "work dir left behind");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
