//! `send`: select coins, build, sign, broadcast, optionally wait for a confirmation.

use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::json;

use cairn_primitives::encoding::encode_hex;
use cairn_primitives::{Amount, BlockHash, OutPoint, Txid};
use cairn_wallet::{KeyChain, WalletFile};

use cairn_wallet::coin_selection::{Candidate, select_coins};
use cairn_wallet::tx_builder::{Payment, build_signed};
use cairn_wallet::{WalletError, parse_amount, parse_destination};

use crate::common::{Ctx, chain_info, coins, encode_address, note_chain, print_json, wallet_keys};
use crate::prompt::unlock;

/// Interval between confirmation polls of `send --wait`.
const WAIT_POLL: Duration = Duration::from_secs(1);

pub fn cmd_send(
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
