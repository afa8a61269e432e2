//! `address`: the next unused receive address.

use anyhow::Result;
use serde_json::json;

use cairn_wallet::KeyChain;

use cairn_wallet::WalletError;

use crate::common::{Ctx, check_node_chain, encode_address, load_wallet, print_json};
use crate::prompt::unlock;

pub fn cmd_address(ctx: &Ctx, force_new: bool) -> Result<()> {
    let (mut wallet, chain) = load_wallet(ctx)?;
    let prefix = chain.address_prefix.clone();
    // The node, when there is one, says whether the current address was used; without one the
    // current address is printed (the chain comes from the wallet file, not the node).
    let node_up = match ctx.rpc.blockchain_info() {
        Ok(info) => {
            check_node_chain(ctx, &chain, &info)?;
            true
        }
        Err(WalletError::Unreachable { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    let receive = wallet.pubkeys(KeyChain::Receive)?;
    let current = match receive.last() {
        Some(pk) if !force_new => {
            let addr = encode_address(pk, &prefix)?;
            let used = node_up
                && match ctx.rpc.address_txids(&addr) {
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
