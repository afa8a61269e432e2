//! What every command shares: the context, the node's chain, wallet keys, output.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::Value;

use cairn_primitives::{Address, Amount, XOnlyPublicKey};
use cairn_wallet::keystore::ChainRecord;
use cairn_wallet::rpc::{BlockchainInfo, RpcClient};
use cairn_wallet::{KeyChain, WalletFile};

/// What a command runs with.
pub struct Ctx {
    pub wallet_path: PathBuf,
    pub rpc: RpcClient,
    pub json: bool,
}

pub fn chain_info(ctx: &Ctx) -> Result<BlockchainInfo> {
    Ok(ctx.rpc.blockchain_info()?)
}

/// Records the node's chain in the wallet's metadata (saved if it changed); warns when the
/// wallet was last used on another chain.
pub fn note_chain(ctx: &Ctx, wallet: &mut WalletFile, info: &BlockchainInfo) -> Result<()> {
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
