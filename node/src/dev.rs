//! `cairnd --dev`: the dev wallet the miner pays, so a new user has coins without set-up.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_consensus::ChainParams;
use cairn_primitives::XOnlyPublicKey;
use cairn_wallet::ChainRecord;

/// Dev wallet file name in the data dir.
pub const DEV_WALLET_FILE: &str = "dev-wallet.json";

pub struct DevWallet {
    pub path: PathBuf,
    pub pubkey: XOnlyPublicKey,
}

/// Loads the dev wallet, creating it (fresh mnemonic, empty passphrase, the node's chain) on
/// first start.
pub fn ensure_dev_wallet(datadir: &Path, params: &ChainParams) -> anyhow::Result<DevWallet> {
    let path = datadir.join(DEV_WALLET_FILE);
    let wallet = if path.exists() {
        cairn_wallet::load_wallet_file(&path)
            .with_context(|| format!("cannot read the dev wallet {}", path.display()))?
    } else {
        let (w, _mnemonic) =
            cairn_wallet::create_wallet_file(&path, None, "", ChainRecord::from_params(params))
                .with_context(|| format!("cannot create the dev wallet {}", path.display()))?;
        w
    };
    let pubkey = cairn_wallet::first_address_pubkey(&wallet)?;
    Ok(DevWallet { path, pubkey })
}
