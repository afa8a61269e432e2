//! `cairn-wallet`: the command-line wallet. Talks to `cairnd` only through its JSON-RPC API.
//!
//! Scriptable by design: results on stdout (bare address / txid, or JSON with `--json`),
//! progress, hints and warnings on stderr, exit status 0 on success, 1 on any failure (with one
//! `error: ...` line on stderr), 2 on a usage error. No prompt is ever shown when
//! `CAIRN_WALLET_PASSPHRASE` (and, for `import`, `CAIRN_WALLET_MNEMONIC` or piped stdin) is set.

mod address;
mod balance;
mod common;
mod history;
mod new;
mod prompt;
mod send;
mod tx;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand};

use cairn_wallet::parse_amount;
use cairn_wallet::rpc::RpcClient;
use cairn_wallet::verify::FeeCaps;

use crate::common::Ctx;

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
    /// Genesis file of the chain for `new` and `import` [default: the bundled devnet genesis];
    /// checked against the wallet's chain by every other command
    #[arg(long, global = true, env = "CAIRN_GENESIS", value_name = "FILE")]
    genesis: Option<PathBuf>,
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
        #[arg(long, value_name = "AMOUNT", required_unless_present = "all")]
        amount: Option<String>,
        /// Send every spendable coin, less the fee, with no change (consolidates small coins)
        #[arg(long, conflicts_with = "amount")]
        all: bool,
        /// Fee rate in base units per byte [default: the node's estimatefee]
        #[arg(long, value_name = "N")]
        fee_rate: Option<u64>,
        /// Refuse a fee rate above N base units per byte [default: 10000 = 0.10 coins/kB]
        #[arg(long, value_name = "N")]
        max_fee_rate: Option<u64>,
        /// Refuse a fee above AMOUNT coins [default: 0.1]
        #[arg(long, value_name = "AMOUNT")]
        max_fee: Option<String>,
        /// Wait until the transaction has one confirmation
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait before failing
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        wait_timeout: u64,
    },
    /// Transactions touching wallet addresses, newest first
    History {
        /// Show at most N transactions (0: all)
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Skip the N newest (the next page starts where the last one ended)
        #[arg(long, value_name = "N", default_value_t = 0)]
        skip: usize,
    },
    /// Details of one transaction
    Tx {
        /// Transaction id (hex)
        txid: String,
    },
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
        genesis: cli.genesis,
    };
    match cli.command {
        Command::New => new::cmd_new(&ctx),
        Command::Import {
            mnemonic_file,
            no_scan,
        } => new::cmd_import(&ctx, mnemonic_file.as_deref(), no_scan),
        Command::Address { new } => address::cmd_address(&ctx, new),
        Command::Balance => balance::cmd_balance(&ctx),
        Command::Send {
            to,
            amount,
            all,
            fee_rate,
            max_fee_rate,
            max_fee,
            wait,
            wait_timeout,
        } => {
            let defaults = FeeCaps::default();
            let caps = FeeCaps {
                max_rate: max_fee_rate.unwrap_or(defaults.max_rate),
                max_fee: match max_fee {
                    Some(f) => parse_amount(&f)?.0,
                    None => defaults.max_fee,
                },
            };
            send::cmd_send(
                &ctx,
                &send::SendArgs {
                    to: &to,
                    amount: amount.as_deref(),
                    all,
                    fee_rate,
                    caps,
                    wait: wait.then_some(Duration::from_secs(wait_timeout)),
                },
            )
        }
        Command::History { limit, skip } => history::cmd_history(&ctx, limit, skip),
        Command::Tx { txid } => tx::cmd_tx(&ctx, &txid),
    }
}
