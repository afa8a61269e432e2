//! `send`: select coins, build, sign, broadcast, optionally wait for a confirmation.

use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::json;

use cairn_primitives::encoding::encode_hex;
use cairn_primitives::{Amount, BlockHash, COIN, OutPoint, Txid};
use cairn_wallet::KeyChain;

use std::collections::HashMap;

use cairn_wallet::coin_selection::{Candidate, select_coins, sweep};
use cairn_wallet::rpc::AddressUtxo;
use cairn_wallet::tx_builder::{Payment, build_signed};
use cairn_wallet::verify::{DEFAULT_MAX_FEE_RATE, FeeCaps, check_reported_coin};
use cairn_wallet::{WalletError, parse_amount, parse_destination};

use crate::common::{
    Ctx, coins, encode_address, load_wallet, node_on_wallet_chain, print_json, wallet_keys,
};
use crate::prompt::unlock;

/// Interval between confirmation polls of `send --wait`.
const WAIT_POLL: Duration = Duration::from_secs(1);

/// What `send` was asked to do.
pub struct SendArgs<'a> {
    pub to: &'a str,
    /// `None` with `all`.
    pub amount: Option<&'a str>,
    /// Send every spendable coin (no change): consolidation.
    pub all: bool,
    pub fee_rate: Option<u64>,
    pub caps: FeeCaps,
    pub wait: Option<Duration>,
}

/// A coin the wallet may spend now: confirmed and mature, or unconfirmed change of its own (only
/// this wallet knows its change addresses, so an unconfirmed coin there came from itself; an
/// unconfirmed payment from someone else may never confirm).
pub fn spendable_now(u: &AddressUtxo, chain: KeyChain) -> bool {
    if u.confirmations >= 1 {
        u.spendable
    } else {
        chain == KeyChain::Change
    }
}

pub fn cmd_send(ctx: &Ctx, args: &SendArgs<'_>) -> Result<()> {
    let to = args.to;
    let amount = match (args.amount, args.all) {
        (Some(a), false) => Some(parse_amount(a)?),
        (None, true) => None,
        _ => bail!("give either --amount AMOUNT or --all"),
    };
    let (mut wallet, chain) = load_wallet(ctx)?;
    // The destination first, before anything else, offline: checksum, length, and the prefix
    // of the wallet's chain.
    let dest = parse_destination(to, Some(&chain.address_prefix))?;
    let info = node_on_wallet_chain(ctx, &chain)?;
    let genesis = BlockHash::from_str(&info.genesishash).map_err(|e| {
        anyhow!(
            "node sent an invalid genesis hash {:?}: {e}",
            info.genesishash
        )
    })?;

    let mempool = ctx.rpc.mempool_info()?;
    let rate = match args.fee_rate {
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
    // The node's estimate is advice: above the cap it is refused like a typed rate.
    args.caps.check_rate(rate)?;
    if let Some(a) = amount
        && a.0 < mempool.dustthreshold
    {
        return Err(WalletError::AmountBelowDust {
            amount: a.to_coin_string(),
            dust: coins(mempool.dustthreshold),
        }
        .into());
    }

    let keychain = unlock(&wallet, &ctx.wallet_path)?;
    let mut candidates = Vec::new();
    let mut owner = HashMap::new();
    for (key_chain, index, pk) in wallet_keys(&wallet)? {
        let addr = encode_address(&pk, &info.addressprefix)?;
        for u in ctx.rpc.address_utxos(&addr)? {
            if !spendable_now(&u, key_chain) {
                continue;
            }
            let txid = Txid::from_str(&u.txid)
                .map_err(|e| anyhow!("node sent an invalid txid {:?}: {e}", u.txid))?;
            let outpoint = OutPoint::new(txid, u.vout);
            owner.insert(outpoint, pk);
            candidates.push(Candidate {
                outpoint,
                value: Amount(u.value),
                chain: key_chain,
                index,
            });
        }
    }
    let (selection, amount) = match amount {
        Some(a) => (
            select_coins(&candidates, a, rate, mempool.dustthreshold)?,
            a,
        ),
        None => sweep(&candidates, rate, mempool.dustthreshold)?,
    };
    // Before signing: every input's value and key as its parent transaction says.
    for c in &selection.inputs {
        let txid = c.outpoint.txid.to_hex();
        let parent = ctx
            .rpc
            .raw_transaction_hex(&txid)?
            .ok_or_else(|| WalletError::NodeLied {
                outpoint: format!("{txid}:{}", c.outpoint.vout),
                detail: "the node reported it but does not know its transaction".into(),
            })?;
        let key = owner
            .get(&c.outpoint)
            .ok_or_else(|| anyhow!("selected a coin the wallet did not list"))?;
        check_reported_coin(&c.outpoint, c.value, key, &parent)?;
    }
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
    let size = tx.size() as u64;
    args.caps.check_fee(selection.fee, size)?;
    let txid = tx.txid().to_hex();
    // The node's own `maxfeerate` backs the wallet's cap; a raised cap is passed along.
    let node_cap = (args.caps.max_rate != DEFAULT_MAX_FEE_RATE)
        .then(|| args.caps.max_rate as f64 * 1000.0 / COIN as f64);
    let sent = ctx.rpc.send_raw_transaction(&encode_hex(&tx), node_cap)?;
    if sent != txid {
        eprintln!("warning: node reported txid {sent}, expected {txid}");
    }
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
        "sent {} coins to {to}, fee {} coins ({size} bytes at {rate} per byte, {} inputs)",
        amount.to_coin_string(),
        selection.fee.to_coin_string(),
        selection.inputs.len()
    );
    let confirmation = match args.wait {
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
