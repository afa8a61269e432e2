//! Block validation benchmark (a program, not a timed test).
//!
//! Prints the raw BIP340 verify rate of this machine (one thread and all cores) and the
//! validation rate of `connect_block` for a block of N one-input transactions on rayon pools of
//! 1 and 2 threads, each beside the verify rate measured in the same run.
//!
//! `cargo run --release -p cairn-consensus --example validation_bench [-- N]` (default 2000)

use std::time::Instant;

use cairn_consensus::subsidy::block_subsidy;
use cairn_consensus::{ChainParams, Coin, MemoryUtxoSet, Target, connect_block};
use cairn_primitives::keys::{sighash, sign_transaction, verify};
use cairn_primitives::{
    Amount, Block, BlockHeader, OutPoint, SecretKey, Signature, Transaction, TxIn, TxOut, Txid,
};
use rayon::prelude::*;

/// Repetitions of each measurement; the best is reported (least disturbed by other load).
const ROUNDS: usize = 5;

fn best_secs(mut f: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn pool(n: usize) -> rayon::ThreadPool {
    match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot build a rayon pool of {n}: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let params = ChainParams::devnet();
    let genesis = params.genesis_hash();
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);

    // N independent coins, each spent by one 1-in-1-out transaction.
    let keys: Vec<SecretKey> = (0..n)
        .map(|i| {
            SecretKey::from_bytes(cairn_primitives::sha256(&i.to_le_bytes()))
                .unwrap_or_else(|_| SecretKey::generate())
        })
        .collect();
    let mut utxos = MemoryUtxoSet::new();
    let mut txs = Vec::with_capacity(n + 1);
    txs.push(Transaction {
        version: 1,
        inputs: vec![],
        outputs: vec![TxOut {
            value: block_subsidy(&params, 1),
            pubkey: keys[0].public_key(),
        }],
        lock_time: 1,
    });
    for (i, key) in keys.iter().enumerate() {
        let op = OutPoint::new(Txid(cairn_primitives::sha256(&(i as u64).to_be_bytes())), 0);
        utxos.insert(
            op,
            Coin {
                output: TxOut {
                    value: Amount(10_000),
                    pubkey: key.public_key(),
                },
                height: 0,
                coinbase: false,
            },
        );
        let mut tx = Transaction {
            version: 1,
            inputs: vec![TxIn {
                prevout: op,
                signature: Signature::EMPTY,
            }],
            outputs: vec![TxOut {
                value: Amount(10_000),
                pubkey: key.public_key(),
            }],
            lock_time: 0,
        };
        sign_transaction(&mut tx, &genesis, &[key]);
        txs.push(tx);
    }
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_hash: genesis,
            merkle_root: Default::default(),
            time: params.genesis_time + 1,
            bits: params.pow_limit_bits,
            nonce: 0,
        },
        transactions: txs,
    };
    block.header.merkle_root = block.compute_merkle_root();
    let target = Target::from_compact(block.header.bits).unwrap_or(params.pow_limit());
    while !target.is_met_by(&block.header.hash()) {
        block.header.nonce += 1;
    }
    if let Err(e) = connect_block(&block, 1, &utxos, &params) {
        eprintln!("error: benchmark block is invalid: {e}");
        std::process::exit(1);
    }

    // Raw verify rate over the same signatures.
    let checks: Vec<_> = block.transactions[1..]
        .iter()
        .zip(&keys)
        .map(|(tx, k)| {
            (
                k.public_key(),
                sighash(&genesis, &tx.txid()),
                tx.inputs[0].signature,
            )
        })
        .collect();
    let verify_1 =
        n as f64 / best_secs(|| assert!(checks.iter().all(|(pk, m, s)| verify(pk, m, s))));
    let verify_all = n as f64
        / pool(cores).install(|| {
            best_secs(|| assert!(checks.par_iter().all(|(pk, m, s)| verify(pk, m, s))))
        });

    println!(
        "block: {n} one-input transactions, {} bytes; machine: {cores} cores",
        block.size()
    );
    println!("raw Schnorr verify, 1 thread:       {verify_1:>10.0} sig/s");
    println!("raw Schnorr verify, {cores} threads:      {verify_all:>10.0} sig/s");
    for threads in [1usize, 2] {
        let secs = pool(threads).install(|| {
            best_secs(|| {
                let _ = connect_block(&block, 1, &utxos, &params);
            })
        });
        let rate = n as f64 / secs;
        let reference = if threads == 1 { verify_1 } else { verify_all };
        println!(
            "connect_block, {threads} thread(s):       {rate:>10.0} tx/s = {:.2} of the {}-thread verify rate ({:.1} ms per block)",
            rate / reference,
            if threads == 1 { 1 } else { cores },
            secs * 1e3
        );
    }
    println!(
        "target: block connect >= 0.85 of the all-core verify rate (docs: performance targets)"
    );
}
