//! `cairn-wallet`: the command-line wallet. Talks to `cairnd` only through its JSON-RPC API.
//!
//! Scriptable by design: results on stdout (bare address / txid, or JSON with `--json`),
//! progress, hints and warnings on stderr, exit status 0 on success, 1 on any failure (with one
//! `error: ...` line on stderr), 2 on a usage error. No prompt is ever shown when
//! `CAIRN_WALLET_PASSPHRASE` (and, for `import`, `CAIRN_WALLET_MNEMONIC` or piped stdin) is set.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use cairn_primitives::encoding::encode_hex;
use cairn_primitives::{Address, Amount, BlockHash, OutPoint, Txid, XOnlyPublicKey};
use cairn_wallet::coin_selection::{Candidate, select_coins};
use cairn_wallet::history::{TxSummary, summarize};
use cairn_wallet::keystore::{ChainRecord, generate_mnemonic, parse_mnemonic};
use cairn_wallet::rpc::{BlockchainInfo, RpcClient};
use cairn_wallet::tx_builder::{Payment, build_signed};
use cairn_wallet::{
    KdfParams, KeyChain, Keychain, Mnemonic, WalletError, WalletFile, parse_amount,
    parse_destination, signed_coin_string,
};

/// Environment variable holding the passphrase (may be empty) for scripts.
const ENV_PASSPHRASE: &str = "CAIRN_WALLET_PASSPHRASE";
/// Environment variable holding the mnemonic for `import` in scripts.
const ENV_MNEMONIC: &str = "CAIRN_WALLET_MNEMONIC";
/// Consecutive unused addresses after which `import` stops scanning a chain.
const GAP_LIMIT: u32 = 20;
/// Largest mnemonic input read from a file or stdin.
const MAX_MNEMONIC_BYTES: u64 = 4096;
/// Passphrase attempts at the prompt.
const PROMPT_ATTEMPTS: usize = 3;
/// Interval between confirmation polls of `send --wait`.
const WAIT_POLL: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(
    name = "cairn-wallet",
    version,
    about = "Cairn wallet: keys, balance, send, history (over cairnd's JSON-RPC)"
)]
struct Cli {
    /// Wallet file [default: $HOME/.cairn/wallet.json]
    #[arg(long, global = true, env = "CAIRN_WALLET", value_name = "FILE")]
    wallet: Option<PathBuf>,
    /// Node JSON-RPC URL
    #[arg(
        long,
        global = true,
        env = "CAIRN_RPC",
        value_name = "URL",
        default_value = "http://127.0.0.1:8645/"
    )]
    rpc: String,
    /// Machine-readable output (amounts as integer base units)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a wallet from a fresh 24-word mnemonic (shown once, on stderr)
    New,
    /// Restore a wallet from a mnemonic (from --mnemonic-file, $CAIRN_WALLET_MNEMONIC, stdin or a prompt)
    Import {
        /// File holding the mnemonic words
        #[arg(long, value_name = "FILE")]
        mnemonic_file: Option<PathBuf>,
        /// Do not ask the node which addresses were used
        #[arg(long)]
        no_scan: bool,
    },
    /// Print the next unused receive address
    Address {
        /// Derive a fresh address even if the current one is unused
        #[arg(long)]
        new: bool,
    },
    /// Confirmed, unconfirmed and spendable balance of all wallet addresses
    Balance,
    /// Pay AMOUNT coins to ADDR; prints the txid
    Send {
        /// Destination address
        #[arg(long, value_name = "ADDR")]
        to: String,
        /// Amount in coins, up to 8 decimals (e.g. 1.5)
        #[arg(long, value_name = "AMOUNT")]
        amount: String,
        /// Fee rate in base units per byte [default: the node's estimatefee]
        #[arg(long, value_name = "N")]
        fee_rate: Option<u64>,
        /// Wait until the transaction has one confirmation
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait before failing
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        wait_timeout: u64,
    },
    /// Transactions touching wallet addresses
    History,
    /// Details of one transaction
    Tx {
        /// Transaction id (hex)
        txid: String,
    },
}

struct Ctx {
    wallet_path: PathBuf,
    rpc: RpcClient,
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!(
                "error: {}",
                msg.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let wallet_path = match cli.wallet {
        Some(p) => p,
        None => {
            let home = std::env::var_os("HOME").ok_or_else(|| {
                anyhow!("HOME is not set; give the wallet file with --wallet or CAIRN_WALLET")
            })?;
            PathBuf::from(home).join(".cairn").join("wallet.json")
        }
    };
    let ctx = Ctx {
        wallet_path,
        rpc: RpcClient::new(&cli.rpc),
        json: cli.json,
    };
    match cli.command {
        Command::New => cmd_new(&ctx),
        Command::Import {
            mnemonic_file,
            no_scan,
        } => cmd_import(&ctx, mnemonic_file.as_deref(), no_scan),
        Command::Address { new } => cmd_address(&ctx, new),
        Command::Balance => cmd_balance(&ctx),
        Command::Send {
            to,
            amount,
            fee_rate,
            wait,
            wait_timeout,
        } => cmd_send(
            &ctx,
            &to,
            &amount,
            fee_rate,
            wait.then_some(Duration::from_secs(wait_timeout)),
        ),
        Command::History => cmd_history(&ctx),
        Command::Tx { txid } => cmd_tx(&ctx, &txid),
    }
}

// ---------------------------------------------------------------- passphrases and input

/// Whether we can prompt: stderr is a terminal and the process has a controlling terminal.
fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::fs::File::open("/dev/tty").is_ok()
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{name} is not valid UTF-8"),
    }
}

/// Unlocks an existing wallet: `$CAIRN_WALLET_PASSPHRASE`, else the empty passphrase (the dev
/// wallet's), else a prompt on the terminal, else a hint.
fn unlock(wallet: &WalletFile, path: &Path) -> Result<Keychain> {
    if let Some(p) = env_var(ENV_PASSPHRASE)? {
        return Ok(wallet.unlock(&p)?);
    }
    match wallet.unlock("") {
        Ok(k) => return Ok(k),
        Err(WalletError::WrongPassphrase) => {}
        Err(e) => return Err(e.into()),
    }
    if !interactive() {
        bail!(
            "wallet {} needs its passphrase: set {ENV_PASSPHRASE} (no terminal to prompt on)",
            path.display()
        );
    }
    for _ in 0..PROMPT_ATTEMPTS {
        let p = rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
            .context("cannot read the passphrase")?;
        match wallet.unlock(&p) {
            Ok(k) => return Ok(k),
            Err(WalletError::WrongPassphrase) => eprintln!("wrong passphrase"),
            Err(e) => return Err(e.into()),
        }
    }
    Err(WalletError::WrongPassphrase.into())
}

/// The passphrase for a new wallet file: `$CAIRN_WALLET_PASSPHRASE` or a prompt (twice).
fn new_passphrase() -> Result<String> {
    if let Some(p) = env_var(ENV_PASSPHRASE)? {
        return Ok(p);
    }
    if !interactive() {
        bail!(
            "no passphrase for the new wallet: set {ENV_PASSPHRASE} (it may be empty; no terminal to prompt on)"
        );
    }
    let p = rpassword::prompt_password("New wallet passphrase: ")
        .context("cannot read the passphrase")?;
    let again =
        rpassword::prompt_password("Repeat passphrase: ").context("cannot read the passphrase")?;
    if p != again {
        bail!("the passphrases differ");
    }
    if p.is_empty() {
        eprintln!(
            "warning: empty passphrase: anyone who can read the wallet file can spend its coins"
        );
    }
    Ok(p)
}

/// The mnemonic for `import`: --mnemonic-file, `$CAIRN_WALLET_MNEMONIC`, piped stdin, or a
/// hidden prompt. Never a command-line argument (it would land in shell history and `ps`).
fn read_mnemonic(file: Option<&Path>) -> Result<Mnemonic> {
    let text = if let Some(f) = file {
        let mut s = String::new();
        std::fs::File::open(f)
            .with_context(|| format!("cannot open {}", f.display()))?
            .take(MAX_MNEMONIC_BYTES)
            .read_to_string(&mut s)
            .with_context(|| format!("cannot read {}", f.display()))?;
        s
    } else if let Some(m) = env_var(ENV_MNEMONIC)? {
        m
    } else if !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .take(MAX_MNEMONIC_BYTES)
            .read_to_string(&mut s)
            .context("cannot read the mnemonic from stdin")?;
        s
    } else if interactive() {
        rpassword::prompt_password("Mnemonic words (hidden): ")
            .context("cannot read the mnemonic")?
    } else {
        bail!(
            "no mnemonic given: use --mnemonic-file FILE, {ENV_MNEMONIC}, or pipe the words on stdin"
        );
    };
    Ok(parse_mnemonic(&text)?)
}

// ---------------------------------------------------------------- chain and addresses

fn chain_info(ctx: &Ctx) -> Result<BlockchainInfo> {
    Ok(ctx.rpc.blockchain_info()?)
}

/// Records the node's chain in the wallet's metadata (saved if it changed); warns when the
/// wallet was last used on another chain.
fn note_chain(ctx: &Ctx, wallet: &mut WalletFile, info: &BlockchainInfo) -> Result<()> {
    let record = ChainRecord {
        genesis_hash: info.genesishash.clone(),
        address_prefix: info.addressprefix.clone(),
    };
    if wallet.chain.as_ref() == Some(&record) {
        return Ok(());
    }
    if let Some(old) = &wallet.chain
        && old.genesis_hash != record.genesis_hash
    {
        eprintln!(
            "warning: this wallet was last used on the chain with genesis {}; the node at {} is on {}",
            old.genesis_hash,
            ctx.rpc.url(),
            record.genesis_hash
        );
    }
    wallet.chain = Some(record);
    wallet.save(&ctx.wallet_path)?;
    Ok(())
}

fn encode_address(pubkey: &XOnlyPublicKey, prefix: &str) -> Result<String> {
    Ok(Address::new(*pubkey).encode(prefix)?)
}

/// Every cached wallet key with its chain and index.
fn wallet_keys(wallet: &WalletFile) -> Result<Vec<(KeyChain, u32, XOnlyPublicKey)>> {
    let mut out = Vec::new();
    for chain in [KeyChain::Receive, KeyChain::Change] {
        for (i, pk) in wallet.pubkeys(chain)?.into_iter().enumerate() {
            out.push((chain, u32::try_from(i)?, pk));
        }
    }
    Ok(out)
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn coins(v: u64) -> String {
    Amount(v).to_coin_string()
}

// ---------------------------------------------------------------- new / import

fn show_mnemonic(mnemonic: &Mnemonic) {
    let words: Vec<&str> = mnemonic.words().collect();
    eprintln!();
    eprintln!(
        "WARNING: write these {} words down, in order, and keep them secret.",
        words.len()
    );
    eprintln!("They are the only backup of this wallet and are shown only this once.");
    eprintln!("Anyone who has them can spend your coins.");
    eprintln!();
    for (row, chunk) in words.chunks(4).enumerate() {
        let line: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{:>2}. {w:<10}", row * 4 + i + 1))
            .collect();
        eprintln!("  {}", line.join(" ").trim_end());
    }
    eprintln!();
}

/// Saves a new wallet, then reports its first address (if the node is reachable).
fn finish_create(ctx: &Ctx, mut wallet: WalletFile, info: Option<BlockchainInfo>) -> Result<()> {
    if let Some(info) = &info {
        wallet.chain = Some(ChainRecord {
            genesis_hash: info.genesishash.clone(),
            address_prefix: info.addressprefix.clone(),
        });
    }
    wallet.save_new(&ctx.wallet_path)?;
    eprintln!("created wallet {}", ctx.wallet_path.display());
    let receive = wallet.pubkeys(KeyChain::Receive)?;
    let last = receive
        .last()
        .copied()
        .ok_or_else(|| anyhow!("wallet has no receive key"))?;
    let address = match &info {
        Some(i) => Some(encode_address(&last, &i.addressprefix)?),
        None => None,
    };
    if ctx.json {
        print_json(&json!({
            "wallet": ctx.wallet_path.display().to_string(),
            "derivation": wallet.derivation,
            "receive_keys": receive.len(),
            "change_keys": wallet.change_pubkeys.len(),
            "address": address,
            "pubkey": last.to_hex(),
        }))?;
    } else if let Some(a) = address {
        println!("{a}");
    }
    Ok(())
}

fn refuse_existing(path: &Path) -> Result<()> {
    if path.exists() {
        return Err(WalletError::AlreadyExists(path.into()).into());
    }
    Ok(())
}

fn cmd_new(ctx: &Ctx) -> Result<()> {
    refuse_existing(&ctx.wallet_path)?;
    let passphrase = new_passphrase()?;
    let mnemonic = generate_mnemonic()?;
    let wallet = WalletFile::create(&mnemonic, &passphrase, KdfParams::recommended()?)?;
    let info = match chain_info(ctx) {
        Ok(i) => Some(i),
        Err(e) => {
            eprintln!("hint: {e:#}; run `cairn-wallet address` once the node is up");
            None
        }
    };
    finish_create(ctx, wallet, info)?;
    show_mnemonic(&mnemonic);
    Ok(())
}

fn cmd_import(ctx: &Ctx, mnemonic_file: Option<&Path>, no_scan: bool) -> Result<()> {
    refuse_existing(&ctx.wallet_path)?;
    let mnemonic = read_mnemonic(mnemonic_file)?;
    let passphrase = new_passphrase()?;
    let mut wallet = WalletFile::create(&mnemonic, &passphrase, KdfParams::recommended()?)?;
    let info = if no_scan {
        None
    } else {
        match chain_info(ctx) {
            Ok(i) => Some(i),
            Err(e) => {
                eprintln!("warning: {e:#}; not scanning for used addresses");
                None
            }
        }
    };
    if let Some(info) = &info {
        let keychain = Keychain::from_mnemonic(&mnemonic)?;
        scan_used(ctx, &mut wallet, &keychain, &info.addressprefix)?;
    }
    finish_create(ctx, wallet, info)
}

/// Derives keys until `GAP_LIMIT` consecutive unused addresses on each chain and keeps
/// every key up to the last used one (at least one receive key).
fn scan_used(ctx: &Ctx, wallet: &mut WalletFile, keychain: &Keychain, prefix: &str) -> Result<()> {
    for chain in [KeyChain::Receive, KeyChain::Change] {
        let (mut index, mut gap, mut last_used) = (0u32, 0u32, None);
        while gap < GAP_LIMIT {
            let addr = encode_address(&keychain.public_key(chain, index)?, prefix)?;
            if ctx.rpc.address_txids(&addr)?.is_empty() {
                gap += 1;
            } else {
                last_used = Some(index);
                gap = 0;
            }
            index += 1;
        }
        let want = match (chain, last_used) {
            (_, Some(u)) => u as usize + 1,
            (KeyChain::Receive, None) => 1,
            (KeyChain::Change, None) => 0,
        };
        while wallet.pubkeys(chain)?.len() < want {
            wallet.derive_next(keychain, chain)?;
        }
        eprintln!("found {want} {} address(es) in use or cached", chain.name());
    }
    Ok(())
}

// ---------------------------------------------------------------- address / balance

fn cmd_address(ctx: &Ctx, force_new: bool) -> Result<()> {
    let mut wallet = WalletFile::load(&ctx.wallet_path)?;
    let prefix = match chain_info(ctx) {
        Ok(info) => {
            note_chain(ctx, &mut wallet, &info)?;
            info.addressprefix
        }
        Err(e) => match (&wallet.chain, force_new) {
            (Some(c), false) => {
                eprintln!("warning: {e:#}; cannot check whether the address was used");
                c.address_prefix.clone()
            }
            _ => return Err(e),
        },
    };
    let receive = wallet.pubkeys(KeyChain::Receive)?;
    let current = match receive.last() {
        Some(pk) if !force_new => {
            let addr = encode_address(pk, &prefix)?;
            let used = match ctx.rpc.address_txids(&addr) {
                Ok(t) => !t.is_empty(),
                Err(WalletError::Unreachable { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            (!used).then_some((receive.len() - 1, *pk, addr))
        }
        _ => None,
    };
    let (index, pubkey, address) = match current {
        Some(c) => c,
        None => {
            let keychain = unlock(&wallet, &ctx.wallet_path)?;
            let (index, pk) = wallet.derive_next(&keychain, KeyChain::Receive)?;
            wallet.save(&ctx.wallet_path)?;
            (index as usize, pk, encode_address(&pk, &prefix)?)
        }
    };
    if ctx.json {
        print_json(
            &json!({"address": address, "index": index, "pubkey": pubkey.to_hex(),
            "path": format!("{}/0'/{index}'", wallet.derivation)}),
        )
    } else {
        println!("{address}");
        Ok(())
    }
}

fn cmd_balance(ctx: &Ctx) -> Result<()> {
    let mut wallet = WalletFile::load(&ctx.wallet_path)?;
    let info = chain_info(ctx)?;
    note_chain(ctx, &mut wallet, &info)?;
    let (mut confirmed, mut unconfirmed, mut spendable, mut immature) = (0u64, 0i64, 0u64, 0u64);
    let keys = wallet_keys(&wallet)?;
    for (_, _, pk) in &keys {
        let addr = encode_address(pk, &info.addressprefix)?;
        let b = ctx.rpc.address_balance(&addr)?;
        confirmed = confirmed
            .checked_add(b.confirmed)
            .ok_or_else(|| anyhow!("balance overflow"))?;
        unconfirmed = unconfirmed
            .checked_add(b.unconfirmed)
            .ok_or_else(|| anyhow!("balance overflow"))?;
        for u in ctx.rpc.address_utxos(&addr)? {
            if u.spendable {
                spendable = spendable.saturating_add(u.value);
            } else if u.coinbase {
                immature = immature.saturating_add(u.value);
            }
        }
    }
    if ctx.json {
        return print_json(&json!({
            "confirmed": confirmed, "unconfirmed": unconfirmed, "spendable": spendable, "immature": immature,
            "confirmed_coins": coins(confirmed), "unconfirmed_coins": signed_coin_string(i128::from(unconfirmed)),
            "spendable_coins": coins(spendable), "immature_coins": coins(immature),
            "addresses": keys.len(),
        }));
    }
    let rows = [
        ("confirmed", coins(confirmed)),
        ("unconfirmed", signed_coin_string(i128::from(unconfirmed))),
        ("spendable", coins(spendable)),
        ("immature", coins(immature)),
    ];
    let width = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for (label, value) in rows {
        println!("{label:<12} {value:>width$}");
    }
    Ok(())
}

// ---------------------------------------------------------------- send

fn cmd_send(
    ctx: &Ctx,
    to: &str,
    amount: &str,
    fee_rate: Option<u64>,
    wait: Option<Duration>,
) -> Result<()> {
    let amount = parse_amount(amount)?;
    let mut wallet = WalletFile::load(&ctx.wallet_path)?;
    // The destination first, before anything else: offline (checksum, length and, if the chain
    // is known from the last use, prefix), then against the node's prefix.
    parse_destination(to, wallet.chain.as_ref().map(|c| c.address_prefix.as_str()))?;
    let info = chain_info(ctx)?;
    let dest = parse_destination(to, Some(&info.addressprefix))?;
    note_chain(ctx, &mut wallet, &info)?;
    let genesis = BlockHash::from_str(&info.genesishash).map_err(|e| {
        anyhow!(
            "node sent an invalid genesis hash {:?}: {e}",
            info.genesishash
        )
    })?;

    let mempool = ctx.rpc.mempool_info()?;
    let rate = match fee_rate {
        Some(r) if r < mempool.minrelaytxfee => {
            return Err(WalletError::FeeRateTooLow {
                given: r,
                minimum: mempool.minrelaytxfee,
            }
            .into());
        }
        Some(r) => r,
        None => ctx.rpc.estimate_fee()?.max(mempool.minrelaytxfee),
    };
    if amount.0 < mempool.dustthreshold {
        return Err(WalletError::AmountBelowDust {
            amount: amount.to_coin_string(),
            dust: coins(mempool.dustthreshold),
        }
        .into());
    }

    let keychain = unlock(&wallet, &ctx.wallet_path)?;
    let mut candidates = Vec::new();
    for (chain, index, pk) in wallet_keys(&wallet)? {
        let addr = encode_address(&pk, &info.addressprefix)?;
        for u in ctx.rpc.address_utxos(&addr)? {
            if !u.spendable {
                continue;
            }
            let txid = Txid::from_str(&u.txid)
                .map_err(|e| anyhow!("node sent an invalid txid {:?}: {e}", u.txid))?;
            candidates.push(Candidate {
                outpoint: OutPoint::new(txid, u.vout),
                value: Amount(u.value),
                chain,
                index,
            });
        }
    }
    let selection = select_coins(&candidates, amount, rate, mempool.dustthreshold)?;
    let keys = selection
        .inputs
        .iter()
        .map(|c| keychain.secret_key(c.chain, c.index))
        .collect::<Result<Vec<_>, _>>()?;

    let change_to = match selection.change {
        Some(_) => {
            let (_, pk) = wallet.derive_next(&keychain, KeyChain::Change)?;
            // Persist the change index before broadcasting, so the change is never missed.
            wallet.save(&ctx.wallet_path)?;
            Some(pk)
        }
        None => None,
    };
    let mut coin_flip = [0u8; 1];
    getrandom::getrandom(&mut coin_flip).map_err(|e| anyhow!("OS random source failed: {e}"))?;
    let payment = Payment {
        to: dest.pubkey,
        amount,
        change_to,
        change_first: coin_flip[0] & 1 == 1,
        lock_time: u32::try_from(info.blocks).unwrap_or(0),
    };
    let tx = build_signed(&selection, &payment, &keys, &genesis)?;
    let txid = tx.txid().to_hex();
    let sent = ctx.rpc.send_raw_transaction(&encode_hex(&tx))?;
    if sent != txid {
        eprintln!("warning: node reported txid {sent}, expected {txid}");
    }
    let size = tx.size() as u64;
    let summary = json!({
        "txid": txid, "amount": amount.0, "amount_coins": amount.to_coin_string(),
        "fee": selection.fee.0, "fee_coins": selection.fee.to_coin_string(), "feerate": rate, "size": size,
        "inputs": selection.inputs.len(), "change": selection.change.map(|c| c.0),
    });
    if !ctx.json {
        println!("{txid}");
        std::io::stdout().flush()?;
    }
    eprintln!(
        "sent {} coins to {to} (fee {} coins, {size} bytes at {rate}/byte)",
        amount.to_coin_string(),
        selection.fee.to_coin_string()
    );
    let confirmation = match wait {
        Some(timeout) => Some(wait_for_confirmation(ctx, &txid, timeout)?),
        None => None,
    };
    if ctx.json {
        let mut summary = summary;
        if let (Some((height, blockhash)), Some(obj)) = (confirmation, summary.as_object_mut()) {
            obj.insert("height".into(), json!(height));
            obj.insert("blockhash".into(), json!(blockhash));
        }
        print_json(&summary)?;
    }
    Ok(())
}

/// Polls until `txid` has a confirmation; returns (height, block hash).
fn wait_for_confirmation(
    ctx: &Ctx,
    txid: &str,
    timeout: Duration,
) -> Result<(Option<u64>, Option<String>)> {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_report = 0u64;
    loop {
        match ctx.rpc.raw_transaction(txid) {
            Ok(Some(tx)) if tx.confirmations.unwrap_or(0) >= 1 => {
                if tty {
                    eprintln!();
                }
                eprintln!(
                    "confirmed in block {} at height {}",
                    tx.blockhash.as_deref().unwrap_or("?"),
                    tx.height.map_or("?".to_string(), |h| h.to_string())
                );
                return Ok((tx.height, tx.blockhash));
            }
            Ok(_) | Err(WalletError::Unreachable { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            if tty {
                eprintln!();
            }
            bail!(
                "transaction {txid} not confirmed after {} s (it was broadcast; check with `cairn-wallet tx {txid}`)",
                timeout.as_secs()
            );
        }
        let secs = elapsed.as_secs();
        if tty {
            eprint!("\rwaiting for confirmation of {txid}... {secs} s");
        } else if secs >= last_report + 10 || last_report == 0 {
            eprintln!("waiting for confirmation of {txid}... {secs} s");
            last_report = secs.max(1);
        }
        std::thread::sleep(WAIT_POLL.min(timeout.saturating_sub(elapsed)));
    }
}

// ---------------------------------------------------------------- history / tx

fn summary_json(s: &TxSummary) -> Result<Value> {
    let mut v = serde_json::to_value(s)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "net_coins".into(),
            json!(signed_coin_string(i128::from(s.net))),
        );
        obj.insert("fee_coins".into(), json!(s.fee.map(coins)));
    }
    Ok(v)
}

fn mine_set(wallet: &WalletFile) -> Result<HashSet<String>> {
    Ok(wallet_keys(wallet)?
        .into_iter()
        .map(|(_, _, pk)| pk.to_hex())
        .collect())
}

fn cmd_history(ctx: &Ctx) -> Result<()> {
    let mut wallet = WalletFile::load(&ctx.wallet_path)?;
    let info = chain_info(ctx)?;
    note_chain(ctx, &mut wallet, &info)?;
    let mine = mine_set(&wallet)?;
    let mut txids: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for (_, _, pk) in wallet_keys(&wallet)? {
        for t in ctx
            .rpc
            .address_txids(&encode_address(&pk, &info.addressprefix)?)?
        {
            if seen.insert(t.clone()) {
                txids.push(t);
            }
        }
    }
    let mut cache = HashMap::new();
    let mut rows = Vec::new();
    for t in &txids {
        let Some(tx) = ctx.rpc.raw_transaction(t)? else {
            eprintln!("warning: node no longer knows transaction {t}");
            continue;
        };
        rows.push(summarize(&tx, &mine, &mut cache, |id| {
            ctx.rpc.raw_transaction(id)
        })?);
    }
    // Chain order, then mempool transactions.
    rows.sort_by_key(|s| s.height.unwrap_or(u64::MAX));
    if ctx.json {
        return print_json(&Value::Array(
            rows.iter().map(summary_json).collect::<Result<_>>()?,
        ));
    }
    if rows.is_empty() {
        eprintln!("no transactions");
        return Ok(());
    }
    let nets: Vec<String> = rows
        .iter()
        .map(|s| {
            let n = signed_coin_string(i128::from(s.net));
            if s.net > 0 { format!("+{n}") } else { n }
        })
        .collect();
    let fees: Vec<String> = rows
        .iter()
        .map(|s| s.fee.map_or_else(|| "-".into(), coins))
        .collect();
    let nw = nets.iter().map(String::len).max().unwrap_or(0).max(3);
    let fw = fees.iter().map(String::len).max().unwrap_or(0).max(3);
    println!(
        "{:<64}  {:>7}  {:>6}  {:>nw$}  {:>fw$}",
        "TXID", "HEIGHT", "CONFS", "NET", "FEE"
    );
    for ((s, n), f) in rows.iter().zip(&nets).zip(&fees) {
        let height = s
            .height
            .map_or_else(|| "mempool".to_string(), |h| h.to_string());
        println!(
            "{:<64}  {height:>7}  {:>6}  {n:>nw$}  {f:>fw$}",
            s.txid, s.confirmations
        );
    }
    Ok(())
}

fn cmd_tx(ctx: &Ctx, txid: &str) -> Result<()> {
    Txid::from_str(txid).map_err(|e| anyhow!("invalid txid {txid:?}: {e}"))?;
    let wallet = WalletFile::load(&ctx.wallet_path)?;
    let mine = mine_set(&wallet)?;
    let tx = ctx.rpc.raw_transaction(txid)?.ok_or_else(|| {
        anyhow!(
            "transaction {txid} not found (neither in the node's transaction index nor its mempool)"
        )
    })?;
    let mut cache = HashMap::new();
    let s = summarize(&tx, &mine, &mut cache, |id| ctx.rpc.raw_transaction(id))?;
    if ctx.json {
        return print_json(&summary_json(&s)?);
    }
    let status = match (s.height, &s.blockhash) {
        (Some(h), Some(b)) => format!(
            "confirmed ({} confirmations, height {h}, block {b})",
            s.confirmations
        ),
        _ => "unconfirmed (in the mempool)".to_string(),
    };
    let fee = match (s.coinbase, s.fee) {
        (true, _) => "none (coinbase)".to_string(),
        (false, Some(f)) => format!(
            "{} ({} per byte)",
            coins(f),
            f.checked_div(s.size).unwrap_or(0)
        ),
        (false, None) => "unknown".to_string(),
    };
    let net = signed_coin_string(i128::from(s.net));
    println!("{:<8} {}", "txid", s.txid);
    println!("{:<8} {status}", "status");
    println!("{:<8} {} bytes", "size", s.size);
    println!("{:<8} {fee}", "fee");
    println!("{:<8} {}{net}", "net", if s.net > 0 { "+" } else { "" });
    let mark = |m: bool| if m { "  (wallet)" } else { "" };
    if !s.inputs.is_empty() {
        println!("inputs");
        for i in &s.inputs {
            let value = i.value.map_or_else(|| "?".into(), coins);
            let addr = i.address.as_deref().unwrap_or("?");
            println!(
                "  {}:{:<4} {value:>20}  {addr}{}",
                i.txid,
                i.vout,
                mark(i.mine)
            );
        }
    }
    println!("outputs");
    for o in &s.outputs {
        let addr = o.address.as_deref().unwrap_or("?");
        println!(
            "  {:<4} {:>20}  {addr}{}",
            o.n,
            coins(o.value),
            mark(o.mine)
        );
    }
    Ok(())
}
