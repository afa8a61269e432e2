//! Chain parameters, loaded from a genesis file (`genesis.json`), and the genesis block they
//! define. Every field is documented in `docs/genesis.md`.

use cairn_primitives::{Address, Amount, Block, BlockHash, BlockHeader, Transaction, TxOut};
use serde::Deserialize;

use crate::ConsensusError;
use crate::pow::{ChainWork, Target};

/// The chain's difficulty algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DifficultyAlgorithm {
    /// Every block carries the easiest target (dev chains, like Bitcoin's regtest).
    None,
    /// aserti3-2d anchored at genesis, with the given half-life.
    Asert { halflife_secs: u64 },
}

/// One initial allocation in the genesis block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub address: Address,
    pub amount: Amount,
}

/// Everything that makes one Cairn chain differ from another.
#[derive(Clone, Debug)]
pub struct ChainParams {
    pub chain_id: String,
    pub address_prefix: String,
    pub genesis_time: u64,
    pub block_time_secs: u64,
    pub pow_limit_bits: u32,
    pub difficulty: DifficultyAlgorithm,
    pub initial_subsidy: Amount,
    pub halving_interval: u64,
    pub coinbase_maturity: u64,
    pub max_block_size: usize,
    pub allocations: Vec<Allocation>,
    /// Anti-denial-of-service floor (not a consensus rule): side-branch headers and unrequested
    /// blocks whose chain work is below it are not kept. Zero (the default) on dev chains.
    pub min_chain_work: ChainWork,
    /// Derived: allocations plus every subsidy the schedule can ever pay.
    pub max_supply: Amount,
    genesis: Block,
    genesis_hash: BlockHash,
}

/// The JSON form; every field required except `min_chain_work`, unknown fields rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    chain_id: String,
    address_prefix: String,
    genesis_time: u64,
    block_time_secs: u64,
    pow_limit_bits: String,
    difficulty: DifficultyFile,
    initial_subsidy: u64,
    halving_interval: u64,
    coinbase_maturity: u64,
    max_block_size: u64,
    allocations: Vec<AllocationFile>,
    #[serde(default)]
    min_chain_work: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "algorithm", rename_all = "lowercase")]
enum DifficultyFile {
    None,
    Asert { halflife_secs: u64 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocationFile {
    address: String,
    amount: u64,
}

/// Smallest block size limit a genesis may set: room for a header, a coinbase and a few spends.
pub const MIN_MAX_BLOCK_SIZE: u64 = 1_000;
/// Largest block size limit a genesis may set (below the encoding's allocation ceiling).
pub const MAX_MAX_BLOCK_SIZE: u64 = 4_000_000;
/// Most allocations a genesis may list.
pub const MAX_ALLOCATIONS: usize = 10_000;

fn invalid(field: &'static str, reason: impl Into<String>) -> ConsensusError {
    ConsensusError::InvalidParams {
        field,
        reason: reason.into(),
    }
}

impl ChainParams {
    /// Parses and validates a genesis file; every problem names its field.
    pub fn from_genesis_json(json: &str) -> Result<ChainParams, ConsensusError> {
        let f: GenesisFile =
            serde_json::from_str(json).map_err(|e| ConsensusError::GenesisJson(e.to_string()))?;

        if f.chain_id.is_empty()
            || f.chain_id.len() > 64
            || !f.chain_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "chain_id",
                "must be 1-64 printable ASCII characters",
            ));
        }
        let prefix_ok = !f.address_prefix.is_empty()
            && f.address_prefix.len() <= 16
            && f.address_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !prefix_ok {
            return Err(invalid(
                "address_prefix",
                "must be 1-16 lower-case letters or digits",
            ));
        }
        if f.block_time_secs == 0 || f.block_time_secs > 86_400 {
            return Err(invalid("block_time_secs", "must be between 1 and 86400"));
        }
        let bits =
            u32::from_str_radix(f.pow_limit_bits.trim_start_matches("0x"), 16).map_err(|_| {
                invalid(
                    "pow_limit_bits",
                    "must be a hex compact target like \"0x207fffff\"",
                )
            })?;
        let limit = Target::from_compact(bits)
            .ok_or_else(|| invalid("pow_limit_bits", "not a valid positive compact target"))?;
        if limit.to_compact() != bits {
            return Err(invalid("pow_limit_bits", "not in canonical compact form"));
        }
        let difficulty = match f.difficulty {
            DifficultyFile::None => DifficultyAlgorithm::None,
            DifficultyFile::Asert { halflife_secs } => {
                if halflife_secs == 0 || halflife_secs > 365 * 86_400 {
                    return Err(invalid(
                        "difficulty.halflife_secs",
                        "must be between 1 and 31536000",
                    ));
                }
                DifficultyAlgorithm::Asert { halflife_secs }
            }
        };
        if f.halving_interval == 0 {
            return Err(invalid("halving_interval", "must be at least 1"));
        }
        if f.coinbase_maturity > 10_000 {
            return Err(invalid("coinbase_maturity", "must be at most 10000"));
        }
        if !(MIN_MAX_BLOCK_SIZE..=MAX_MAX_BLOCK_SIZE).contains(&f.max_block_size) {
            return Err(invalid(
                "max_block_size",
                format!("must be between {MIN_MAX_BLOCK_SIZE} and {MAX_MAX_BLOCK_SIZE}"),
            ));
        }
        if f.allocations.len() > MAX_ALLOCATIONS {
            return Err(invalid(
                "allocations",
                format!("at most {MAX_ALLOCATIONS} entries"),
            ));
        }
        let mut allocations = Vec::with_capacity(f.allocations.len());
        for a in &f.allocations {
            let address = Address::parse(&a.address, &f.address_prefix)
                .map_err(|e| invalid("allocations.address", format!("{}: {e}", a.address)))?;
            if a.amount == 0 {
                return Err(invalid("allocations.amount", "must be positive"));
            }
            allocations.push(Allocation {
                address,
                amount: Amount(a.amount),
            });
        }
        let min_chain_work = match &f.min_chain_work {
            None => ChainWork::ZERO,
            Some(hex) => parse_work(hex).ok_or_else(|| {
                invalid(
                    "min_chain_work",
                    "must be a hex number of at most 64 digits like \"0x1000\"",
                )
            })?,
        };
        let max_supply = total_supply(f.initial_subsidy, f.halving_interval, &allocations)
            .ok_or_else(|| {
                invalid(
                    "initial_subsidy",
                    "allocations plus all subsidies exceed 2^64-1 base units",
                )
            })?;

        let mut params = ChainParams {
            chain_id: f.chain_id,
            address_prefix: f.address_prefix,
            genesis_time: f.genesis_time,
            block_time_secs: f.block_time_secs,
            pow_limit_bits: bits,
            difficulty,
            initial_subsidy: Amount(f.initial_subsidy),
            halving_interval: f.halving_interval,
            coinbase_maturity: f.coinbase_maturity,
            max_block_size: f.max_block_size as usize,
            allocations,
            min_chain_work,
            max_supply,
            genesis: Block {
                header: BlockHeader {
                    version: 0,
                    prev_hash: BlockHash::ZERO,
                    merkle_root: Default::default(),
                    time: 0,
                    bits: 0,
                    nonce: 0,
                },
                transactions: vec![],
            },
            genesis_hash: BlockHash::ZERO,
        };
        params.genesis = params.build_genesis();
        params.genesis_hash = params.genesis.hash();
        if params.genesis.size() > params.max_block_size {
            return Err(invalid(
                "allocations",
                "the genesis block would exceed max_block_size",
            ));
        }
        Ok(params)
    }

    /// Loads the repository's default devnet (`genesis.json`, compiled in).
    pub fn devnet() -> ChainParams {
        Self::from_genesis_json(DEVNET_GENESIS).expect("the bundled genesis.json is valid")
    }

    /// The genesis block: one coinbase-shaped transaction paying the allocations, the easiest
    /// target, a zero parent. Deterministic from the parameters; its proof of work is not checked.
    fn build_genesis(&self) -> Block {
        let coinbase = Transaction {
            version: Transaction::VERSION,
            inputs: vec![],
            outputs: self
                .allocations
                .iter()
                .map(|a| TxOut {
                    value: a.amount,
                    pubkey: a.address.pubkey,
                })
                .collect(),
            lock_time: 0,
        };
        let mut block = Block {
            header: BlockHeader {
                version: BlockHeader::VERSION,
                // Commits the chain id, so two chains with equal allocations still differ.
                prev_hash: BlockHash(cairn_primitives::tagged_hash(
                    "cairn/chain-id",
                    &[self.chain_id.as_bytes()],
                )),
                merkle_root: Default::default(),
                time: self.genesis_time,
                bits: self.pow_limit_bits,
                nonce: 0,
            },
            transactions: vec![coinbase],
        };
        block.header.merkle_root = block.compute_merkle_root();
        block
    }

    pub fn genesis_block(&self) -> &Block {
        &self.genesis
    }
    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_hash
    }
    /// The easiest allowed target.
    pub fn pow_limit(&self) -> Target {
        Target::from_compact(self.pow_limit_bits).expect("validated at load")
    }
    /// Whether blocks can be mined on demand (`generatetoaddress`): no retargeting.
    pub fn is_dev_chain(&self) -> bool {
        self.difficulty == DifficultyAlgorithm::None
    }
}

/// The devnet genesis shipped at the repository root.
pub const DEVNET_GENESIS: &str = include_str!("../../../genesis.json");

/// A 256-bit number from hex (`0x` prefix optional, at most 64 digits).
fn parse_work(hex: &str) -> Option<ChainWork> {
    let digits = hex.strip_prefix("0x").unwrap_or(hex);
    if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{digits:0>64}");
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(ChainWork::from_be_bytes(bytes))
}

fn total_supply(initial: u64, interval: u64, allocations: &[Allocation]) -> Option<Amount> {
    let mut total: u128 = allocations.iter().map(|a| u128::from(a.amount.0)).sum();
    let mut subsidy = u128::from(initial);
    while subsidy > 0 {
        total += subsidy * u128::from(interval);
        subsidy >>= 1;
    }
    u64::try_from(total).ok().map(Amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::from_str(DEVNET_GENESIS).unwrap()
    }

    fn load(v: &serde_json::Value) -> Result<ChainParams, ConsensusError> {
        ChainParams::from_genesis_json(&v.to_string())
    }

    #[test]
    fn devnet_loads_and_is_deterministic() {
        let a = ChainParams::devnet();
        let b = ChainParams::devnet();
        assert_eq!(a.genesis_hash(), b.genesis_hash());
        assert!(a.is_dev_chain());
        assert_eq!(
            a.genesis_block().compute_merkle_root(),
            a.genesis_block().header.merkle_root
        );
    }

    #[test]
    fn real_network_genesis_loads_with_asert() {
        let p = ChainParams::from_genesis_json(include_str!("../../../docs/genesis-testnet.json"))
            .unwrap();
        assert!(matches!(p.difficulty, DifficultyAlgorithm::Asert { .. }));
        assert_ne!(p.genesis_hash(), ChainParams::devnet().genesis_hash());
    }

    #[test]
    fn unknown_field_rejected() {
        let mut v = base();
        v["surprise"] = 1.into();
        assert!(matches!(load(&v), Err(ConsensusError::GenesisJson(m)) if m.contains("surprise")));
    }

    #[test]
    fn each_bad_value_names_its_field() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("chain_id", "".into(), "chain_id"),
            ("address_prefix", "Bad!".into(), "address_prefix"),
            ("block_time_secs", 0.into(), "block_time_secs"),
            ("pow_limit_bits", "0xzz".into(), "pow_limit_bits"),
            ("pow_limit_bits", "0x04923456".into(), "pow_limit_bits"),
            ("halving_interval", 0.into(), "halving_interval"),
            ("max_block_size", 10.into(), "max_block_size"),
            ("initial_subsidy", u64::MAX.into(), "initial_subsidy"),
        ];
        for (key, value, field) in cases {
            let mut v = base();
            v[key] = value;
            match load(&v) {
                Err(ConsensusError::InvalidParams { field: f, .. }) => {
                    assert_eq!(f, field, "{key}")
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        let mut v = base();
        v["allocations"] = serde_json::json!([{"address": "cairn1qqqq", "amount": 5}]);
        assert!(matches!(
            load(&v),
            Err(ConsensusError::InvalidParams {
                field: "allocations.address",
                ..
            })
        ));
    }

    #[test]
    fn min_chain_work_is_optional_and_parsed() {
        assert_eq!(ChainParams::devnet().min_chain_work, ChainWork::ZERO);
        let mut v = base();
        v["min_chain_work"] = "0x1000".into();
        let mut expected = [0u8; 32];
        expected[30] = 0x10;
        assert_eq!(
            load(&v).unwrap().min_chain_work,
            ChainWork::from_be_bytes(expected)
        );
        for bad in ["", "0x", "zz", &"f".repeat(65)] {
            v["min_chain_work"] = bad.into();
            assert!(
                matches!(
                    load(&v),
                    Err(ConsensusError::InvalidParams {
                        field: "min_chain_work",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn chain_id_changes_genesis() {
        let mut v = base();
        v["chain_id"] = "other".into();
        assert_ne!(
            load(&v).unwrap().genesis_hash(),
            ChainParams::devnet().genesis_hash()
        );
    }
}
