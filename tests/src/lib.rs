//! Harness for end-to-end tests: starts real `cairnd` processes on 127.0.0.1 with free ports and
//! temporary data dirs, talks to them over JSON-RPC, runs `cairn-wallet`, and cleans up (the
//! process is killed and the directory removed when the [`TestNode`] is dropped).
//!
//! Every wait is bounded: [`wait_until`] polls a condition until a deadline.

pub mod scripted_peer;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// How long a node may take to answer its first RPC call (a debug build opening RocksDB).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Per-request HTTP timeout.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Directory holding the workspace's binaries (`cairnd`, `cairn-wallet`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAIRN_BIN_DIR") {
        return PathBuf::from(d);
    }
    // Test executables live in <target>/<profile>/deps; binaries in <target>/<profile>.
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first (./test.sh does)",
        p.display()
    );
    p
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `cond` every 50 ms until it returns `Some`, or fails after `timeout` with `what`.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A JSON-RPC error returned by the node.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

/// A running `cairnd`.
pub struct TestNode {
    child: Option<Child>,
    pub datadir: PathBuf,
    pub rpc_url: String,
    pub rpc_port: u16,
    _tmp: Option<tempfile::TempDir>,
    log: PathBuf,
}

/// How to start a node.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// `--dev` instead of `run`.
    pub dev: bool,
    /// Extra arguments after `run` (or after `--dev`).
    pub args: Vec<String>,
    /// Reuse this data dir instead of a fresh temporary one.
    pub datadir: Option<PathBuf>,
}

impl TestNode {
    /// `cairnd --dev` on a free RPC port with a fresh data dir.
    pub fn dev() -> Result<TestNode> {
        Self::start(NodeOptions {
            dev: true,
            ..Default::default()
        })
    }

    /// `cairnd run` on the devnet genesis, P2P on a free loopback port, plus `args`.
    pub fn run(args: &[&str]) -> Result<TestNode> {
        Self::start(NodeOptions {
            dev: false,
            args: args.iter().map(|s| s.to_string()).collect(),
            datadir: None,
        })
    }

    pub fn start(opts: NodeOptions) -> Result<TestNode> {
        Self::start_with_env(opts, &[])
    }

    /// [`TestNode::start`] with extra environment variables for the process.
    pub fn start_with_env(opts: NodeOptions, env: &[(&str, &str)]) -> Result<TestNode> {
        let (tmp, datadir) = match opts.datadir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::Builder::new().prefix("cairn-e2e-").tempdir()?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let rpc_port = free_port();
        let mut cmd = Command::new(bin("cairnd"));
        if opts.dev {
            cmd.arg("--dev");
        } else {
            cmd.arg("run");
        }
        // Any free port, unless the test names one: tests run in parallel.
        if !opts.args.iter().any(|a| a == "--p2p-listen") {
            cmd.args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0"]);
        }
        cmd.args([
            "--datadir",
            &datadir.to_string_lossy(),
            "--rpc-addr",
            &format!("127.0.0.1:{rpc_port}"),
        ]);
        cmd.args(&opts.args);
        let log = datadir.join(format!("cairnd-{rpc_port}.log"));
        let log_file = std::fs::File::create(&log)?;
        cmd.stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .stdin(Stdio::null());
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().context("spawn cairnd")?;
        let mut node = TestNode {
            child: Some(child),
            datadir,
            rpc_url: format!("http://127.0.0.1:{rpc_port}/"),
            rpc_port,
            _tmp: tmp,
            log,
        };
        node.wait_ready()?;
        Ok(node)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "cairnd exited during start-up with {status}:\n{}",
                    self.log_tail(40)
                );
            }
            if self.call("getblockcount", json!([])).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "cairnd did not answer RPC within {STARTUP_TIMEOUT:?}:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `n` lines of the node's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `user:password` of the node's RPC cookie (written at every start when no
    /// credentials are configured), if there is one.
    pub fn cookie(&self) -> Option<String> {
        std::fs::read_to_string(self.datadir.join(".cookie"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Calls a method as the operator (with the cookie's credentials, when there is a cookie);
    /// `Err` carries a transport failure or the JSON-RPC error.
    pub fn call(&self, method: &str, params: Value) -> std::result::Result<Value, RpcError> {
        self.call_as(method, params, self.cookie().as_deref())
    }

    /// Calls a method with no credentials (as any local process could).
    pub fn call_anonymous(
        &self,
        method: &str,
        params: Value,
    ) -> std::result::Result<Value, RpcError> {
        self.call_as(method, params, None)
    }

    /// Calls a method with `user:password` credentials, or none.
    pub fn call_as(
        &self,
        method: &str,
        params: Value,
        credentials: Option<&str>,
    ) -> std::result::Result<Value, RpcError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let transport = |e: anyhow::Error| RpcError {
            code: 0,
            message: e.to_string(),
        };
        let (status, text) =
            post_with(&self.rpc_url, &body.to_string(), credentials, &[]).map_err(transport)?;
        let resp: Value = serde_json::from_str(&text)
            .map_err(|e| transport(anyhow!("HTTP {status}, response is not JSON ({e}): {text}")))?;
        if let Some(err) = resp.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError {
                code: err["code"].as_i64().unwrap_or(0),
                message: err["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(resp.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Calls a method that must succeed.
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value> {
        self.call(method, params)
            .map_err(|e| anyhow!("{method} failed: {} {}", e.code, e.message))
    }

    pub fn height(&self) -> Result<u64> {
        self.rpc("getblockcount", json!([]))?
            .as_u64()
            .context("getblockcount is a number")
    }

    /// Waits until the node's height is at least `h`.
    pub fn wait_height(&self, h: u64, timeout: Duration) -> Result<u64> {
        wait_until(timeout, &format!("height {h}"), || {
            self.height().ok().filter(|x| *x >= h)
        })
    }

    /// The node's P2P listen addresses (each ending in /p2p/<peer id>).
    pub fn p2p_addrs(&self) -> Result<Vec<String>> {
        let info = self.rpc("getnetworkinfo", json!([]))?;
        Ok(info["localaddresses"]
            .as_array()
            .context("localaddresses")?
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect())
    }

    /// The first loopback P2P address.
    pub fn p2p_addr(&self) -> Result<String> {
        self.p2p_addrs()?
            .into_iter()
            .find(|a| a.contains("127.0.0.1"))
            .context("no loopback listen address")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                bail!(
                    "cairnd did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Mines one block paying `address`, then enough blocks (to the faucet) for its coinbase to
    /// mature, so `address` holds one spendable coinbase. Returns the faucet address.
    pub fn fund_by_mining(&self, address: &str) -> Result<String> {
        let maturity = self.rpc("getblockchaininfo", json!([]))?["coinbasematurity"]
            .as_u64()
            .context("coinbasematurity")?;
        self.rpc("generatetoaddress", json!([1, address]))?;
        let faucet = faucet_address();
        self.rpc("generatetoaddress", json!([maturity, faucet]))?;
        Ok(faucet)
    }

    /// Keeps the data dir alive past this node (for restart tests).
    pub fn into_datadir(mut self) -> (tempfile::TempDir, PathBuf) {
        self.kill();
        let tmp = self._tmp.take().expect("node owns a temporary data dir");
        (tmp, self.datadir.clone())
    }

    /// Runs `cairn-wallet` against this node with `--rpc` set; env adds variables.
    pub fn wallet(
        &self,
        wallet_file: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Output> {
        let mut cmd = Command::new(bin("cairn-wallet"));
        cmd.args([
            "--wallet",
            &wallet_file.to_string_lossy(),
            "--rpc",
            &self.rpc_url,
        ])
        .args(args)
        .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(cmd.output()?)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- cairnd log ({}) ---\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
        self.kill();
    }
}

/// The devnet address of [`faucet_key`]: where tests send mining rewards they do not need.
pub fn faucet_address() -> String {
    cairn_primitives::Address::new(faucet_key().public_key())
        .encode("cdev")
        .expect("the devnet prefix encodes")
}

/// POSTs a JSON body and parses the JSON answer, whatever the HTTP status.
pub fn post_json(url: &str, body: &Value) -> Result<Value> {
    let text = post_raw(url, &body.to_string())?.1;
    serde_json::from_str(&text).with_context(|| format!("response is not JSON: {text}"))
}

/// POSTs raw bytes as `application/json`, without credentials; returns the HTTP status and
/// body text.
pub fn post_raw(url: &str, body: &str) -> Result<(u16, String)> {
    post_with(url, body, None, &[])
}

/// `Basic base64(user:password)`.
pub fn basic_auth(credentials: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// POSTs `body` with optional `user:password` credentials and extra headers (which may
/// override `Content-Type`); returns the HTTP status and body text, whatever the status.
pub fn post_with(
    url: &str,
    body: &str,
    credentials: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let (status, _, text) = post_full(url, body, credentials, headers)?;
    Ok((status, text))
}

/// As [`post_with`], also returning the response's `Content-Type`.
pub fn post_full(
    url: &str,
    body: &str,
    credentials: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(u16, Option<String>, String)> {
    let agent = ureq::AgentBuilder::new().timeout(RPC_TIMEOUT).build();
    let mut req = agent.post(url).set("Content-Type", "application/json");
    if let Some(c) = credentials {
        req = req.set("Authorization", &basic_auth(c));
    }
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let read = |r: ureq::Response| -> Result<(u16, Option<String>, String)> {
        let ct = r.header("Content-Type").map(String::from);
        Ok((r.status(), ct, r.into_string()?))
    };
    match req.send_string(body) {
        Ok(r) => read(r),
        Err(ureq::Error::Status(_, r)) => read(r),
        Err(e) => Err(anyhow!("HTTP request to {url} failed: {e}")),
    }
}

/// The devnet faucet key (published; see docs/genesis.md).
pub fn faucet_key() -> cairn_primitives::SecretKey {
    let bytes: [u8; 32] = cairn_primitives::sha256(b"cairn devnet faucet");
    cairn_primitives::SecretKey::from_bytes(bytes).expect("valid key")
}

/// A minimal WebSocket client (RFC 6455, text frames only) over a blocking TCP stream: enough
/// to drive the node's subscriptions without another dependency.
pub struct WsClient {
    stream: std::net::TcpStream,
}

impl WsClient {
    /// Connects to `ws://127.0.0.1:<port>/` and completes the upgrade handshake.
    pub fn connect(port: u16) -> Result<WsClient> {
        Self::connect_with(port, &[])
    }

    /// As [`WsClient::connect`], with extra request headers (`Origin`, `Authorization`, or a
    /// `Host` that replaces the default one).
    pub fn connect_with(port: u16, headers: &[(&str, &str)]) -> Result<WsClient> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(RPC_TIMEOUT))?;
        let mut extra = String::new();
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            extra.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
        }
        for (k, v) in headers {
            extra.push_str(&format!("{k}: {v}\r\n"));
        }
        write!(
            stream,
            "GET / HTTP/1.1\r\n{extra}Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        // Read the response head byte by byte up to the blank line (frames may follow).
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte)?;
            head.push(byte[0]);
            if head.len() > 8192 {
                bail!("WebSocket handshake answer too long");
            }
        }
        let head = String::from_utf8_lossy(&head);
        if !head.starts_with("HTTP/1.1 101") {
            bail!("WebSocket upgrade refused: {head}");
        }
        Ok(WsClient { stream })
    }

    /// Sends one text frame (masked, as a client must).
    pub fn send(&mut self, text: &str) -> Result<()> {
        use std::io::Write;
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)?;
        Ok(())
    }

    /// Receives the next text frame as JSON (pings and other control frames are skipped).
    pub fn recv(&mut self) -> Result<Value> {
        use std::io::Read;
        loop {
            let mut h = [0u8; 2];
            self.stream.read_exact(&mut h)?;
            let opcode = h[0] & 0x0f;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b)?;
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b)?;
                len = u64::from_be_bytes(b);
            }
            if len > 16 * 1024 * 1024 {
                bail!("WebSocket frame of {len} bytes");
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload)?;
            match opcode {
                0x1 => return Ok(serde_json::from_slice(&payload)?),
                0x8 => bail!("WebSocket closed by the node"),
                _ => continue,
            }
        }
    }
}

/// A signed transaction spending the faucet's genesis allocation back to the faucet, paying
/// `fee`. The allocation is looked up through the node's address index.
pub fn spend_genesis_allocation(
    node: &TestNode,
    fee: u64,
) -> Result<cairn_primitives::Transaction> {
    use cairn_primitives::{
        Address, Amount, BlockHash, OutPoint, Signature, Transaction, TxIn, TxOut,
    };
    let info = node.rpc("getblockchaininfo", json!([]))?;
    let prefix = info["addressprefix"].as_str().context("addressprefix")?;
    let genesis: BlockHash = info["genesishash"]
        .as_str()
        .context("genesishash")?
        .parse()?;
    let faucet = faucet_key();
    let addr = Address::new(faucet.public_key()).encode(prefix)?;
    let utxos = node.rpc("getaddressutxos", json!([addr]))?;
    let alloc = utxos
        .as_array()
        .context("getaddressutxos is an array")?
        .iter()
        .find(|u| u["height"] == json!(0))
        .context("the genesis allocation is unspent")?;
    let value = alloc["value"].as_u64().context("value")?;
    let mut tx = Transaction {
        version: Transaction::VERSION,
        inputs: vec![TxIn {
            prevout: OutPoint::new(
                alloc["txid"].as_str().context("txid")?.parse()?,
                u32::try_from(alloc["vout"].as_u64().context("vout")?)?,
            ),
            signature: Signature([0; 64]),
        }],
        outputs: vec![TxOut {
            value: Amount(value.checked_sub(fee).context("fee above the allocation")?),
            pubkey: faucet.public_key(),
        }],
        lock_time: 0,
    };
    cairn_primitives::keys::sign_transaction(&mut tx, &genesis, &[&faucet]);
    Ok(tx)
}

/// The BIP340 verify rate of this machine on `threads` threads, best of `rounds` runs over
/// `samples` signatures (the machine's speed wanders; the highest observed is the honest
/// divisor for a benchmark's ratio). For the benchmark programs.
pub fn verify_rate(threads: usize, samples: usize, rounds: usize) -> f64 {
    use cairn_primitives::keys::{sighash, verify};
    let key = faucet_key();
    let genesis = cairn_consensus::ChainParams::devnet().genesis_hash();
    let sigs: Vec<([u8; 32], cairn_primitives::Signature)> = (0..samples as u32)
        .map(|i| {
            let mut t = [0u8; 32];
            t[..4].copy_from_slice(&i.to_le_bytes());
            let msg = sighash(&genesis, &cairn_primitives::Txid(t));
            (msg, key.sign(&msg))
        })
        .collect();
    let pk = key.public_key();
    (0..rounds)
        .map(|_| {
            let t = std::time::Instant::now();
            std::thread::scope(|s| {
                for chunk in sigs.chunks(samples.div_ceil(threads.max(1))) {
                    s.spawn(move || assert!(chunk.iter().all(|(m, sig)| verify(&pk, m, sig))));
                }
            });
            samples as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// A benchmark's numeric flag `name VALUE`, or `default`. Panics on a value that does not
/// parse: these are the benchmark programs' own command lines.
pub fn bench_arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().ok().expect("a number"))
        .unwrap_or(default)
}

/// A transaction spending `inputs` (all owned by `key`) to one output per value, paid back to
/// `key`, signed for the chain with genesis `genesis` (the benchmarks' name for it).
pub use cairn_primitives::keys::signed_spend as signed_tx;

/// Mines blocks paying `addr` until `node`'s mempool is empty, at most `max_blocks`.
pub fn mine_until_pool_empty(node: &TestNode, addr: &str, max_blocks: usize) -> Result<()> {
    for _ in 0..max_blocks {
        if node.rpc("getmempoolinfo", json!([]))?["size"] == json!(0) {
            return Ok(());
        }
        node.rpc("generatetoaddress", json!([1, addr]))?;
    }
    anyhow::bail!("the pool did not empty in {max_blocks} blocks")
}
