//! Which chain a wallet belongs to, known without a node: the bundled devnet genesis by default,
//! or a genesis file (the same one `cairnd --genesis` reads). Recorded in the wallet file at
//! creation; a node on another chain is refused rather than silently adopted, because an address
//! of one chain sent coins on another is a loss nobody can undo.

use std::path::Path;

use cairn_consensus::ChainParams;

use crate::keystore::ChainRecord;
use crate::rpc::BlockchainInfo;
use crate::{Result, WalletError};

impl ChainRecord {
    /// The chain a genesis defines.
    pub fn from_params(params: &ChainParams) -> ChainRecord {
        ChainRecord {
            genesis_hash: params.genesis_hash().to_hex(),
            address_prefix: params.address_prefix.clone(),
        }
    }

    /// The bundled devnet (`genesis.json` at the repository's top, as `cairnd` uses by default).
    pub fn devnet() -> ChainRecord {
        ChainRecord::from_params(&ChainParams::devnet())
    }

    /// The chain of a genesis file.
    pub fn from_genesis_file(path: &Path) -> Result<ChainRecord> {
        let text = std::fs::read_to_string(path).map_err(|source| WalletError::Io {
            action: "cannot read genesis file",
            path: path.into(),
            source,
        })?;
        let params = ChainParams::from_genesis_json(&text).map_err(|e| {
            WalletError::Other(format!("invalid genesis file {}: {e}", path.display()))
        })?;
        Ok(ChainRecord::from_params(&params))
    }

    /// The chain a node reports.
    pub fn of_node(info: &BlockchainInfo) -> ChainRecord {
        ChainRecord {
            genesis_hash: info.genesishash.clone(),
            address_prefix: info.addressprefix.clone(),
        }
    }

    /// Refuses a node (or genesis file) on another chain than the wallet's.
    pub fn check_same(&self, other: &ChainRecord, other_name: &str) -> Result<()> {
        if self.genesis_hash == other.genesis_hash {
            return Ok(());
        }
        Err(WalletError::WrongChain {
            wallet_genesis: self.genesis_hash.clone(),
            wallet_prefix: self.address_prefix.clone(),
            other: other_name.to_string(),
            other_genesis: other.genesis_hash.clone(),
            other_prefix: other.address_prefix.clone(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn devnet_record_matches_the_bundled_genesis() {
        let d = ChainRecord::devnet();
        assert_eq!(
            d.genesis_hash,
            ChainParams::devnet().genesis_hash().to_hex()
        );
        assert_eq!(d.address_prefix, ChainParams::devnet().address_prefix);
    }

    #[test]
    fn genesis_file_gives_its_chain_and_another_chain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("testnet.json");
        std::fs::write(&path, include_str!("../../docs/genesis-testnet.json")).unwrap();
        let t = ChainRecord::from_genesis_file(&path).unwrap();
        assert_ne!(t.genesis_hash, ChainRecord::devnet().genesis_hash);
        assert!(t.check_same(&t.clone(), "node").is_ok());
        let err = ChainRecord::devnet()
            .check_same(&t, "the node at x")
            .unwrap_err();
        assert!(matches!(err, WalletError::WrongChain { .. }), "{err}");
        assert!(err.to_string().contains(&t.genesis_hash), "{err}");
    }

    #[test]
    fn unreadable_or_invalid_genesis_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ChainRecord::from_genesis_file(&dir.path().join("none.json")).is_err());
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{}").unwrap();
        assert!(ChainRecord::from_genesis_file(&bad).is_err());
    }
}
