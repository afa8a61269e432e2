//! What every command shares: the context, the node's chain, wallet keys, output.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

use cairn_primitives::{Address, Amount, XOnlyPublicKey};
use cairn_wallet::rpc::{BlockchainInfo, RpcClient};
use cairn_wallet::{ChainRecord, KeyChain, WalletFile};

/// What a command runs with.
pub struct Ctx {
    pub wallet_path: PathBuf,
    pub rpc: RpcClient,
    pub json: bool,
    /// `--genesis FILE`: the chain for a new wallet (default: the bundled devnet).
    pub genesis: Option<PathBuf>,
}

pub fn chain_info(ctx: &Ctx) -> Result<BlockchainInfo> {
    Ok(ctx.rpc.blockchain_info()?)
}

/// The chain named with `--genesis`, if any.
fn requested_chain(ctx: &Ctx) -> Result<Option<ChainRecord>> {
    Ok(match &ctx.genesis {
        Some(path) => Some(ChainRecord::from_genesis_file(path)?),
        None => None,
    })
}

/// The chain of a new wallet: `--genesis FILE`, else the bundled devnet. No node is needed.
pub fn new_wallet_chain(ctx: &Ctx) -> Result<ChainRecord> {
    Ok(requested_chain(ctx)?.unwrap_or_else(ChainRecord::devnet))
}

/// Loads the wallet file and makes sure it knows its chain: the one recorded at creation
/// (refusing a `--genesis` of another chain), or, for a file written before chains were
/// recorded, `--genesis` or the devnet, recorded now.
pub fn load_wallet(ctx: &Ctx) -> Result<(WalletFile, ChainRecord)> {
    let mut wallet = WalletFile::load(&ctx.wallet_path)?;
    let requested = requested_chain(ctx)?;
    let chain = match (&wallet.chain, requested) {
        (Some(c), Some(r)) => {
            let name = format!(
                "--genesis {}",
                ctx.genesis.as_deref().unwrap_or(Path::new("")).display()
            );
            c.check_same(&r, &name)?;
            c.clone()
        }
        (Some(c), None) => c.clone(),
        (None, r) => {
            let c = r.unwrap_or_else(ChainRecord::devnet);
            wallet.chain = Some(c.clone());
            wallet.save(&ctx.wallet_path)?;
            c
        }
    };
    Ok((wallet, chain))
}

/// Refuses a node on another chain than the wallet's; nothing is changed either way.
pub fn check_node_chain(ctx: &Ctx, chain: &ChainRecord, info: &BlockchainInfo) -> Result<()> {
    let name = format!("the node at {}", ctx.rpc.url());
    chain.check_same(&ChainRecord::of_node(info), &name)?;
    Ok(())
}

/// The node's chain info, checked against the wallet's chain.
pub fn node_on_wallet_chain(ctx: &Ctx, chain: &ChainRecord) -> Result<BlockchainInfo> {
    let info = chain_info(ctx)?;
    check_node_chain(ctx, chain, &info)?;
    Ok(info)
}

pub fn encode_address(pubkey: &XOnlyPublicKey, prefix: &str) -> Result<String> {
    Ok(Address::new(*pubkey).encode(prefix)?)
}

/// Every cached wallet key with its chain and index.
pub fn wallet_keys(wallet: &WalletFile) -> Result<Vec<(KeyChain, u32, XOnlyPublicKey)>> {
    let mut out = Vec::new();
    for chain in [KeyChain::Receive, KeyChain::Change] {
        for (i, pk) in wallet.pubkeys(chain)?.into_iter().enumerate() {
            out.push((chain, u32::try_from(i)?, pk));
        }
    }
    Ok(out)
}

pub fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn coins(v: u64) -> String {
    Amount(v).to_coin_string()
}
