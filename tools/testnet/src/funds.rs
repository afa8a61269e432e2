//! Coins for the load: the devnet faucet's genesis allocation fanned out into many confirmed
//! outputs, then spent one per transaction (independent transactions: none waits for another,
//! so every one can be relayed at once). Signed here with the primitives crate, as a wallet does.

use anyhow::{Context, Result, bail};
use cairn_primitives::encoding::encode_hex;
use cairn_primitives::{Address, BlockHash, OutPoint, SecretKey, Transaction};
use serde_json::json;

use crate::host::Host;

/// Outputs of one fan-out transaction: 2,000 x 40 bytes is about 80 kB, under the 100 kB relay
/// limit of the mempool.
pub const FANOUT: usize = 2_000;
/// Fee of a one-in-one-out payment (about 150 bytes; the minimum relay rate is 1 unit/byte).
const PAYMENT_FEE: u64 = 1_000;
/// Fee rate of the large transactions (units per byte), above the minimum.
const BULK_FEE_RATE: u64 = 2;
/// Bytes of one output (8 value + 32 key) and a generous bound on the rest of a transaction.
const OUTPUT_BYTES: u64 = 40;
const TX_OVERHEAD_BYTES: u64 = 200;
/// Smallest output of a filler transaction: above the 546-unit dust threshold.
const MIN_FILLER_OUTPUT_VALUE: u64 = 1_000;
/// Blocks mined at most to confirm the funding transactions.
const MAX_FUNDING_BLOCKS: usize = 50;

/// The published devnet faucet key (docs/genesis.md): holds the genesis allocation.
pub fn faucet_key() -> Result<SecretKey> {
    let bytes: [u8; 32] = cairn_primitives::sha256(b"cairn devnet faucet");
    SecretKey::from_bytes(bytes).context("faucet key")
}

pub struct Wallet {
    key: SecretKey,
    genesis: BlockHash,
    pub address: String,
    coins: Vec<(OutPoint, u64)>,
}

/// A signed transaction and its hex encoding.
pub struct SignedTx {
    pub txid: String,
    pub hex: String,
}

impl Wallet {
    /// The faucet wallet on the chain `host` runs.
    pub fn faucet(host: &Host) -> Result<Wallet> {
        let info = host.rpc.call("getblockchaininfo", json!([]))?;
        let prefix = info["addressprefix"].as_str().context("addressprefix")?;
        let genesis: BlockHash = info["genesishash"]
            .as_str()
            .context("genesishash")?
            .parse()
            .context("genesishash")?;
        let key = faucet_key()?;
        let address = Address::new(key.public_key())
            .encode(prefix)
            .context("address")?;
        Ok(Wallet {
            key,
            genesis,
            address,
            coins: Vec::new(),
        })
    }

    pub fn coins_left(&self) -> usize {
        self.coins.len()
    }

    fn sign(&self, inputs: &[OutPoint], outputs: Vec<u64>) -> Transaction {
        cairn_primitives::keys::signed_spend(inputs, &outputs, &self.key, &self.genesis)
    }

    fn signed(tx: &Transaction) -> SignedTx {
        SignedTx {
            txid: tx.txid().to_string(),
            hex: encode_hex(tx),
        }
    }

    /// Turns the genesis allocation into at least `wanted` confirmed coins, mining at `host`.
    pub fn fund(&mut self, host: &Host, wanted: usize) -> Result<()> {
        let utxos = host.rpc.call("getaddressutxos", json!([self.address]))?;
        let alloc = utxos
            .as_array()
            .context("getaddressutxos is an array")?
            .iter()
            .find(|u| u["height"] == json!(0))
            .context("the faucet's genesis allocation is spent: use a fresh chain")?;
        let prevout = OutPoint::new(
            alloc["txid"].as_str().context("txid")?.parse()?,
            u32::try_from(alloc["vout"].as_u64().context("vout")?)?,
        );
        let value = alloc["value"].as_u64().context("value")?;
        let branches = wanted.div_ceil(FANOUT).clamp(1, FANOUT);
        let bulk_fee =
            |outputs: usize| (TX_OVERHEAD_BYTES + OUTPUT_BYTES * outputs as u64) * BULK_FEE_RATE;
        let branch_value = value
            .checked_sub(bulk_fee(branches))
            .context("allocation too small")?
            / branches as u64;
        let trunk = self.sign(&[prevout], vec![branch_value; branches]);
        send(host, &[Self::signed(&trunk)])?;
        // Confirmed before its children: together they would pass the descendant limits.
        mine_until_empty(host, &self.address)?;
        let leaf_value = branch_value
            .checked_sub(bulk_fee(FANOUT))
            .context("branch too small")?
            / FANOUT as u64;
        let mut leaves = Vec::new();
        for vout in 0..branches {
            let op = OutPoint::new(trunk.txid(), u32::try_from(vout)?);
            let tx = self.sign(&[op], vec![leaf_value; FANOUT]);
            self.coins
                .extend((0..FANOUT as u32).map(|v| (OutPoint::new(tx.txid(), v), leaf_value)));
            leaves.push(Self::signed(&tx));
        }
        send(host, &leaves)?;
        mine_until_empty(host, &self.address)?;
        Ok(())
    }

    /// A one-in-one-out payment spending one coin (to the same key).
    pub fn payment(&mut self) -> Result<SignedTx> {
        let (op, value) = self.coins.pop().context("out of coins: fund more")?;
        let tx = self.sign(&[op], vec![value.saturating_sub(PAYMENT_FEE)]);
        Ok(Self::signed(&tx))
    }

    /// A large transaction of [`FANOUT`] small outputs (about 80 kB): fills blocks with bytes
    /// at the cost of one signature, so a chain of full blocks is cheap to build.
    pub fn filler(&mut self) -> Result<SignedTx> {
        let (op, value) = self.coins.pop().context("out of coins: fund more")?;
        let fee = (TX_OVERHEAD_BYTES + OUTPUT_BYTES * FANOUT as u64) * BULK_FEE_RATE;
        // The whole coin is paid out: a fee far above the rate would trip `sendrawtransaction`'s
        // `maxfeerate` guard.
        let each = value.saturating_sub(fee) / FANOUT as u64;
        if each < MIN_FILLER_OUTPUT_VALUE {
            bail!("a coin of {value} units is too small for a filler transaction");
        }
        let tx = self.sign(&[op], vec![each; FANOUT]);
        Ok(Self::signed(&tx))
    }
}

/// Sends transactions to `host` in one batch; every one must be accepted.
pub fn send(host: &Host, txs: &[SignedTx]) -> Result<()> {
    let params: Vec<_> = txs.iter().map(|t| json!([t.hex])).collect();
    for (r, t) in host
        .rpc
        .batch("sendrawtransaction", &params)?
        .into_iter()
        .zip(txs)
    {
        r.with_context(|| format!("host {} refused {}", host.slot.index, t.txid))?;
    }
    Ok(())
}

/// Mines at `host` until its mempool is empty; returns the block hashes.
pub fn mine_until_empty(host: &Host, address: &str) -> Result<Vec<String>> {
    let mut hashes = Vec::new();
    for _ in 0..MAX_FUNDING_BLOCKS {
        let size = host.rpc.call("getmempoolinfo", json!([]))?["size"]
            .as_u64()
            .context("getmempoolinfo size")?;
        if size == 0 {
            return Ok(hashes);
        }
        hashes.extend(generate(host, address)?);
    }
    bail!(
        "the mempool of host {} did not empty in {MAX_FUNDING_BLOCKS} blocks",
        host.slot.index
    )
}

/// Mines one block at `host`; returns its hash.
pub fn generate(host: &Host, address: &str) -> Result<Vec<String>> {
    let v = host.rpc.call("generatetoaddress", json!([1, address]))?;
    Ok(v.as_array()
        .context("generatetoaddress answers an array")?
        .iter()
        .filter_map(|h| h.as_str().map(String::from))
        .collect())
}
