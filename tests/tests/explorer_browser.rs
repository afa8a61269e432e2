//! The built-in explorer in a real browser: headless Chromium driven by Playwright
//! (`tests/browser/explorer.cjs`) against a real `cairnd` with a small chain. Opens the home page
//! and sees the height, mines a block over RPC and sees it appear without a reload, searches a
//! txid and checks its amounts, pages through an address's history (and back), and checks the
//! message of a search that finds nothing. Screenshots of every page go to the test's temp dir;
//! with `CAIRN_UPDATE_SCREENSHOT=1` the home page's also goes to `docs/explorer-home.png`.
//!
//! Installs what it needs when missing: Debian's `chromium` (apt-get) and `playwright-core`
//! (npm, pinned) into a cache outside the clone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_primitives::Address;
use cairn_primitives::encoding::encode_hex;
use cairn_tests::{TestNode, faucet_key};
use serde_json::json;

/// The Playwright release the script is written against.
const PLAYWRIGHT_CORE_VERSION: &str = "1.65.1";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Bounds of the set-up steps and of the browser run.
const APT_TIMEOUT: Duration = Duration::from_secs(900);
const NPM_TIMEOUT: Duration = Duration::from_secs(300);
const BROWSER_TIMEOUT: Duration = Duration::from_secs(240);
/// Transactions per page in the explorer's address view (`TX_PAGE` in explorer.js).
const EXPLORER_PAGE: usize = 25;

/// Runs `cmd` to completion within `timeout` (killed after it), failing on a non-zero exit.
fn run_bounded(mut cmd: Command, timeout: Duration, what: &str) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("start {what}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{what} failed with {status}");
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ensure_chromium() -> Result<()> {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    let mut update = Command::new("apt-get");
    update.arg("update");
    run_bounded(update, APT_TIMEOUT, "apt-get update")?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_bounded(install, APT_TIMEOUT, "apt-get install chromium")
}

/// `playwright-core` at the pinned version in `$HOME/.cache/cairn-npm`; returns its directory.
fn ensure_playwright() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".cache").join("cairn-npm");
    let dir = prefix.join("node_modules").join("playwright-core");
    let installed = std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(String::from));
    if installed.as_deref() != Some(PLAYWRIGHT_CORE_VERSION) {
        std::fs::create_dir_all(&prefix)?;
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("playwright-core@{PLAYWRIGHT_CORE_VERSION}"));
        run_bounded(npm, NPM_TIMEOUT, "npm install playwright-core")?;
    }
    Ok(dir)
}

fn coins(base: u64) -> String {
    format!("{}.{:08} CRN", base / 100_000_000, base % 100_000_000)
}

#[test]
fn explorer_in_a_real_browser() {
    ensure_chromium().unwrap();
    let playwright = ensure_playwright().unwrap();

    let node = TestNode::run(&[]).unwrap();
    let info = node.rpc("getblockchaininfo", json!([])).unwrap();
    let prefix = info["addressprefix"].as_str().unwrap().to_string();
    let addr = Address::new(faucet_key().public_key())
        .encode(&prefix)
        .unwrap();
    node.rpc("generatetoaddress", json!([28, addr])).unwrap();
    let tx = cairn_tests::spend_genesis_allocation(&node, 10_000).unwrap();
    let txid = node
        .rpc("sendrawtransaction", json!([encode_hex(&tx)]))
        .unwrap();
    node.rpc("generatetoaddress", json!([1, addr])).unwrap();
    let height = node.height().unwrap();
    let history = node
        .rpc("getaddresstxids", json!([addr]))
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert!(
        history > EXPLORER_PAGE && history < 2 * EXPLORER_PAGE,
        "{history}"
    );
    let out = tx.outputs[0].value.0;

    let tmp = tempfile::Builder::new()
        .prefix("cairn-explorer-")
        .tempdir()
        .unwrap();
    let shots = tmp.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let expect = json!({
        "height": height,
        "address": addr,
        "txid": txid,
        "fee": coins(10_000),
        "output": coins(out),
        "input": coins(out + 10_000),
        "history": history,
        "page": EXPLORER_PAGE,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/explorer.cjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .env("CAIRN_PLAYWRIGHT", &playwright)
        .env("CAIRN_URL", node.rpc_url.trim_end_matches('/'))
        .env("CAIRN_SHOTS", &shots)
        .env("CAIRN_PROFILE", tmp.path().join("profile"))
        .env("CAIRN_EXPECT", expect.to_string())
        // Mining from the script is a privileged call: it carries the node's cookie, as an
        // operator's tool would. The page itself never has credentials.
        .env(
            "CAIRN_RPC_AUTH",
            cairn_tests::basic_auth(&node.cookie().expect("cookie")),
        );
    let started = Instant::now();
    if let Err(e) = run_bounded(cmd, BROWSER_TIMEOUT, "the browser script") {
        panic!("{e:#} (see the output above)");
    }
    eprintln!("browser run: {:?}", started.elapsed());
    for name in [
        "home",
        "home-after-block",
        "tx",
        "address",
        "address-older",
        "block",
        "search-not-found",
    ] {
        let p = shots.join(format!("{name}.png"));
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "screenshot {} has {len} bytes", p.display());
    }
    eprintln!("screenshots in {}", shots.display());
    if std::env::var_os("CAIRN_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/explorer-home.png");
        std::fs::copy(shots.join("home.png"), docs).unwrap();
    }
    if std::env::var_os("CAIRN_KEEP_SCREENSHOTS").is_some() {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
}
