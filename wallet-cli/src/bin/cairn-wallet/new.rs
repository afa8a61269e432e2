//! `new` and `import`: create a wallet file from a fresh or a restored mnemonic.

use std::path::Path;

use anyhow::{Result, anyhow};
use serde_json::json;

use cairn_wallet::keystore::ChainRecord;
use cairn_wallet::{KeyChain, WalletFile};

use cairn_wallet::keystore::generate_mnemonic;
use cairn_wallet::{KdfParams, Keychain, Mnemonic, WalletError};

use crate::common::{Ctx, check_node_chain, encode_address, new_wallet_chain, print_json};
use crate::prompt::{new_passphrase, read_mnemonic};

/// Consecutive unused addresses after which `import` stops scanning a chain.
const GAP_LIMIT: u32 = 20;

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

/// Saves a new wallet for `chain` and prints its first address. Needs no node.
fn finish_create(ctx: &Ctx, mut wallet: WalletFile, chain: ChainRecord) -> Result<()> {
    let address_prefix = chain.address_prefix.clone();
    let genesis_hash = chain.genesis_hash.clone();
    wallet.chain = Some(chain);
    wallet.save_new(&ctx.wallet_path)?;
    eprintln!(
        "created wallet {} for the chain with genesis {genesis_hash}",
        ctx.wallet_path.display()
    );
    let receive = wallet.pubkeys(KeyChain::Receive)?;
    let last = receive
        .last()
        .copied()
        .ok_or_else(|| anyhow!("wallet has no receive key"))?;
    let address = encode_address(&last, &address_prefix)?;
    if ctx.json {
        print_json(&json!({
            "wallet": ctx.wallet_path.display().to_string(),
            "derivation": wallet.derivation,
            "receive_keys": receive.len(),
            "change_keys": wallet.change_pubkeys.len(),
            "address": address,
            "pubkey": last.to_hex(),
            "genesis_hash": genesis_hash,
            "address_prefix": address_prefix,
        }))?;
    } else {
        println!("{address}");
    }
    Ok(())
}

fn refuse_existing(path: &Path) -> Result<()> {
    if path.exists() {
        return Err(WalletError::AlreadyExists(path.into()).into());
    }
    Ok(())
}

pub fn cmd_new(ctx: &Ctx) -> Result<()> {
    refuse_existing(&ctx.wallet_path)?;
    let chain = new_wallet_chain(ctx)?;
    let passphrase = new_passphrase()?;
    let mnemonic = generate_mnemonic()?;
    let wallet = WalletFile::create(&mnemonic, &passphrase, KdfParams::recommended()?)?;
    finish_create(ctx, wallet, chain)?;
    show_mnemonic(&mnemonic);
    Ok(())
}

pub fn cmd_import(ctx: &Ctx, mnemonic_file: Option<&Path>, no_scan: bool) -> Result<()> {
    refuse_existing(&ctx.wallet_path)?;
    let chain = new_wallet_chain(ctx)?;
    let mnemonic = read_mnemonic(mnemonic_file)?;
    let passphrase = new_passphrase()?;
    let mut wallet = WalletFile::create(&mnemonic, &passphrase, KdfParams::recommended()?)?;
    if !no_scan {
        match ctx.rpc.blockchain_info() {
            Ok(info) => {
                check_node_chain(ctx, &chain, &info)?;
                let keychain = Keychain::from_mnemonic(&mnemonic)?;
                scan_used(ctx, &mut wallet, &keychain, &chain.address_prefix)?;
            }
            Err(e @ WalletError::Unreachable { .. }) => {
                eprintln!(
                    "warning: {e}; not scanning for used addresses (`balance` and `send` see only the first address until `address --new` derives more)"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    finish_create(ctx, wallet, chain)
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
