//! `address`: the next unused receive address.

use anyhow::Result;
use serde_json::json;

use cairn_wallet::{KeyChain, WalletFile};

use cairn_wallet::WalletError;

use crate::common::{Ctx, chain_info, encode_address, note_chain, print_json};
use crate::prompt::unlock;

pub fn cmd_address(ctx: &Ctx, force_new: bool) -> Result<()> {
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
