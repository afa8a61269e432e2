//! `cairn_wallet`: the wallet's keys, wallet file and transaction building, as a library so
//! that `cairnd --dev` can create the funded dev wallet with the same code the CLI uses.
//!
//! Owns: BIP39 mnemonics and BIP32 hardened derivation ([`hd`]), the encrypted wallet file
//! ([`keystore`]), coin selection ([`coin_selection`]), signing ([`tx_builder`]), the node's
//! JSON-RPC client ([`rpc`]) and the wallet's view of transactions ([`history`]).
//! Never: prompts, prints, or reads environment variables (that is `main.rs`'s job).
//!
//! The node creates its dev wallet with:
//! ```no_run
//! # fn main() -> Result<(), cairn_wallet::WalletError> {
//! let path = std::path::Path::new("/tmp/datadir/dev-wallet.json");
//! let chain = cairn_wallet::ChainRecord::devnet();
//! let (wallet, _mnemonic) = cairn_wallet::create_wallet_file(path, None, "", chain)?;
//! let pubkey = cairn_wallet::first_address_pubkey(&wallet)?;
//! // mine to cairn_primitives::Address::new(pubkey).encode(prefix)
//! # Ok(()) }
//! ```

mod chain;
pub mod coin_selection;
mod error;
pub mod hd;
pub mod history;
pub mod keystore;
pub mod rpc;
pub mod tx_builder;
pub mod verify;

use std::path::Path;

use cairn_primitives::address::decode_bech32m;
use cairn_primitives::{Address, Amount, Bech32mError, XOnlyPublicKey};

pub use bip39::Mnemonic;
pub use error::{Result, WalletError};
pub use hd::{KeyChain, Keychain};
pub use keystore::{ChainRecord, KdfParams, WalletFile};

/// Creates a wallet file at `path` (refusing to overwrite one) from `mnemonic`, or from a fresh
/// 24-word mnemonic when `None`, encrypted under `passphrase` (may be empty, as the dev
/// wallet's is). Returns the file and the mnemonic (show it to the user once, or drop it).
pub fn create_wallet_file(
    path: &Path,
    mnemonic: Option<Mnemonic>,
    passphrase: &str,
    chain: ChainRecord,
) -> Result<(WalletFile, Mnemonic)> {
    create_wallet_file_with_kdf(path, mnemonic, passphrase, KdfParams::recommended()?, chain)
}

/// [`create_wallet_file`] with explicit Argon2id parameters.
pub fn create_wallet_file_with_kdf(
    path: &Path,
    mnemonic: Option<Mnemonic>,
    passphrase: &str,
    kdf: KdfParams,
    chain: ChainRecord,
) -> Result<(WalletFile, Mnemonic)> {
    if path.exists() {
        return Err(WalletError::AlreadyExists(path.into()));
    }
    let mnemonic = match mnemonic {
        Some(m) => m,
        None => keystore::generate_mnemonic()?,
    };
    let mut wallet = WalletFile::create(&mnemonic, passphrase, kdf)?;
    wallet.chain = Some(chain);
    wallet.save_new(path)?;
    Ok((wallet, mnemonic))
}

/// Reads a wallet file (no passphrase needed).
pub fn load_wallet_file(path: &Path) -> Result<WalletFile> {
    WalletFile::load(path)
}

/// The key of the wallet's first receive address (`m/44'/9645'/0'/0'/0'`), from the file's
/// public-key cache: no passphrase needed. Encode it with the chain's prefix to get the address.
pub fn first_address_pubkey(wallet: &WalletFile) -> Result<XOnlyPublicKey> {
    wallet
        .pubkeys(KeyChain::Receive)?
        .first()
        .copied()
        .ok_or_else(|| WalletError::Other("wallet file has no receive key".into()))
}

/// Validates a destination address. Checksum, characters and length are checked first, without
/// a prefix, so a typo is reported as such even when the chain is not known; then the network
/// prefix, if `prefix` is given. Each failure is a distinct [`Bech32mError`].
pub fn parse_destination(s: &str, prefix: Option<&str>) -> Result<Address> {
    let invalid = |kind| WalletError::InvalidAddress {
        address: s.to_string(),
        kind,
    };
    let (_, data) = decode_bech32m(s).map_err(invalid)?;
    if data.len() != 32 {
        return Err(invalid(Bech32mError::WrongLength {
            expected: 32,
            got: data.len(),
        }));
    }
    match prefix {
        Some(p) => Address::parse(s, p).map_err(invalid),
        None => Ok(Address::new(XOnlyPublicKey(data.try_into().map_err(
            |_| {
                invalid(Bech32mError::WrongLength {
                    expected: 32,
                    got: 0,
                })
            },
        )?))),
    }
}

/// Parses a user amount in whole coins (up to 8 decimals); zero is refused.
pub fn parse_amount(s: &str) -> Result<Amount> {
    let a = Amount::parse_coins(s.trim()).map_err(|e| WalletError::InvalidAmount(e.to_string()))?;
    if a == Amount::ZERO {
        return Err(WalletError::InvalidAmount(
            "amount must be above zero".into(),
        ));
    }
    Ok(a)
}

/// Formats a signed base-unit quantity as coins (`-0.50000000`).
pub fn signed_coin_string(v: i128) -> String {
    let abs = u64::try_from(v.unsigned_abs()).unwrap_or(u64::MAX);
    let s = Amount(abs).to_coin_string();
    if v < 0 { format!("-{s}") } else { s }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn create_and_first_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev-wallet.json");
        let (w, mn) = create_wallet_file_with_kdf(
            &path,
            None,
            "",
            KdfParams::insecure_for_tests().unwrap(),
            ChainRecord::devnet(),
        )
        .unwrap();
        assert_eq!(mn.word_count(), 24);
        let loaded = load_wallet_file(&path).unwrap();
        assert_eq!(loaded, w);
        assert_eq!(loaded.chain, Some(ChainRecord::devnet()));
        let pk = first_address_pubkey(&loaded).unwrap();
        let k = loaded.unlock("").unwrap();
        assert_eq!(k.public_key(KeyChain::Receive, 0).unwrap(), pk);
        assert!(matches!(
            create_wallet_file_with_kdf(
                &path,
                None,
                "",
                KdfParams::insecure_for_tests().unwrap(),
                ChainRecord::devnet(),
            ),
            Err(WalletError::AlreadyExists(_))
        ));
    }

    #[test]
    fn address_error_kinds_are_distinct() {
        let good = Address::new(XOnlyPublicKey([0x42; 32]))
            .encode("cairn")
            .unwrap();
        assert!(parse_destination(&good, Some("cairn")).is_ok());
        assert!(parse_destination(&good, None).is_ok());
        let kind = |r: Result<Address>| match r {
            Err(WalletError::InvalidAddress { kind, .. }) => kind,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            kind(parse_destination(&good, Some("tcairn"))),
            Bech32mError::WrongPrefix { .. }
        ));
        let mut typo: Vec<char> = good.chars().collect();
        typo[12] = if typo[12] == 'q' { 'p' } else { 'q' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(
            kind(parse_destination(&typo, Some("cairn"))),
            Bech32mError::BadChecksum
        );
        // Checksum is checked before the prefix, even without knowing the chain.
        assert_eq!(
            kind(parse_destination(&typo, None)),
            Bech32mError::BadChecksum
        );
        let short = bech32::encode_lower::<bech32::Bech32m>(
            bech32::Hrp::parse("cairn").unwrap(),
            &[1u8; 20],
        )
        .unwrap();
        assert_eq!(
            kind(parse_destination(&short, Some("cairn"))),
            Bech32mError::WrongLength {
                expected: 32,
                got: 20
            }
        );
        assert!(matches!(
            kind(parse_destination("not an address", None)),
            Bech32mError::Malformed(_)
        ));
        // Messages differ.
        let msgs: Vec<String> = [
            parse_destination(&good, Some("tcairn")),
            parse_destination(&typo, Some("cairn")),
            parse_destination(&short, Some("cairn")),
        ]
        .into_iter()
        .map(|r| r.unwrap_err().to_string())
        .collect();
        assert!(
            msgs[0].contains("another network")
                && msgs[1].contains("checksum")
                && msgs[2].contains("length")
        );
    }

    #[test]
    fn amount_parsing() {
        assert_eq!(parse_amount("1.5").unwrap(), Amount(150_000_000));
        assert_eq!(parse_amount("0.00000001").unwrap(), Amount(1));
        assert_eq!(parse_amount("21").unwrap(), Amount(2_100_000_000));
        for bad in ["0", "0.0", "-1", "1.123456789", "abc", "", "1e3", "1,5"] {
            assert!(
                matches!(parse_amount(bad), Err(WalletError::InvalidAmount(_))),
                "{bad:?}"
            );
        }
        assert_eq!(signed_coin_string(-50_000_000), "-0.50000000");
        assert_eq!(signed_coin_string(150_000_000), "1.50000000");
    }
}
