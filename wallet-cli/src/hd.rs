//! Deterministic keys: BIP39 seed -> BIP32 hardened derivation (HMAC-SHA512) -> x-only key.
//!
//! Path: `m/44'/9645'/0'/c'/i'`, every step hardened, where `c` is 0 for receive and 1 for
//! change addresses and `i` the address index. 9645 is Cairn's (unregistered) coin type, the
//! same number as its default P2P port. Only hardened steps are used, so a leaked child key
//! together with public data never reveals a parent.
//!
//! An output pays the x-only public key of the derived secret key itself (no taproot tweak).

use hmac::{Hmac, Mac};
use sha2::Sha512;

use cairn_primitives::{SecretKey, XOnlyPublicKey};

use crate::error::{Result, WalletError};

type HmacSha512 = Hmac<Sha512>;

/// Bit that marks a hardened BIP32 index.
pub const HARDENED: u32 = 0x8000_0000;
/// BIP44 purpose.
pub const PURPOSE: u32 = 44;
/// Cairn's coin type in the BIP44 path.
pub const COIN_TYPE: u32 = 9645;
/// The one account a wallet file uses.
pub const ACCOUNT: u32 = 0;
/// The account path, as written in the wallet file.
pub const ACCOUNT_PATH: &str = "m/44'/9645'/0'";

/// The two address chains under the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyChain {
    Receive,
    Change,
}

impl KeyChain {
    pub fn index(self) -> u32 {
        match self {
            KeyChain::Receive => 0,
            KeyChain::Change => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            KeyChain::Receive => "receive",
            KeyChain::Change => "change",
        }
    }
}

/// A BIP32 extended private key (secret key + chain code). Debug never shows the secret.
#[derive(Clone)]
pub struct ExtendedPrivKey {
    secret: [u8; 32],
    chain_code: [u8; 32],
}

impl std::fmt::Debug for ExtendedPrivKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtendedPrivKey(<redacted>)")
    }
}

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 64]> {
    let mut mac =
        HmacSha512::new_from_slice(key).map_err(|e| WalletError::Derivation(e.to_string()))?;
    for p in parts {
        mac.update(p);
    }
    Ok(mac.finalize().into_bytes().into())
}

fn split(i: [u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut l = [0u8; 32];
    let mut r = [0u8; 32];
    l.copy_from_slice(&i[..32]);
    r.copy_from_slice(&i[32..]);
    (l, r)
}

impl ExtendedPrivKey {
    /// BIP32 master key: `HMAC-SHA512(key = "Bitcoin seed", seed)`.
    pub fn master(seed: &[u8]) -> Result<Self> {
        let (il, ir) = split(hmac_sha512(b"Bitcoin seed", &[seed])?);
        secp256k1::SecretKey::from_byte_array(il).map_err(|_| {
            WalletError::Derivation("master key out of range (use another seed)".into())
        })?;
        Ok(Self {
            secret: il,
            chain_code: ir,
        })
    }

    /// BIP32 hardened child `index'` (`index` below 2^31).
    pub fn derive_hardened(&self, index: u32) -> Result<Self> {
        if index >= HARDENED {
            return Err(WalletError::Derivation(format!(
                "index {index} is not below 2^31"
            )));
        }
        let n = (index | HARDENED).to_be_bytes();
        let (il, ir) = split(hmac_sha512(&self.chain_code, &[&[0u8], &self.secret, &n])?);
        let out_of_range = || {
            WalletError::Derivation(format!(
                "child {index}' is invalid (BIP32: use the next index)"
            ))
        };
        let tweak = secp256k1::Scalar::from_be_bytes(il).map_err(|_| out_of_range())?;
        let parent =
            secp256k1::SecretKey::from_byte_array(self.secret).map_err(|_| out_of_range())?;
        let child = parent.add_tweak(&tweak).map_err(|_| out_of_range())?;
        Ok(Self {
            secret: child.secret_bytes(),
            chain_code: ir,
        })
    }

    /// Derives a path of hardened indexes.
    pub fn derive_path(&self, path: &[u32]) -> Result<Self> {
        path.iter()
            .try_fold(self.clone(), |k, &i| k.derive_hardened(i))
    }

    pub fn secret_key(&self) -> Result<SecretKey> {
        SecretKey::from_bytes(self.secret).map_err(|e| WalletError::Derivation(e.to_string()))
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret
    }

    pub fn chain_code(&self) -> [u8; 32] {
        self.chain_code
    }
}

/// The unlocked keys of a wallet: the account node `m/44'/9645'/0'` of a BIP39 seed.
#[derive(Debug, Clone)]
pub struct Keychain {
    account: ExtendedPrivKey,
}

impl Keychain {
    /// From a BIP39 mnemonic (no BIP39 passphrase: the wallet file's passphrase protects the
    /// file, it does not change the keys).
    pub fn from_mnemonic(mnemonic: &bip39::Mnemonic) -> Result<Self> {
        let seed = mnemonic.to_seed("");
        let master = ExtendedPrivKey::master(&seed)?;
        Ok(Self {
            account: master.derive_path(&[PURPOSE, COIN_TYPE, ACCOUNT])?,
        })
    }

    /// The secret key at `m/44'/9645'/0'/chain'/index'`.
    pub fn secret_key(&self, chain: KeyChain, index: u32) -> Result<SecretKey> {
        self.account
            .derive_path(&[chain.index(), index])?
            .secret_key()
    }

    /// The x-only public key (what an output pays) at `m/44'/9645'/0'/chain'/index'`.
    pub fn public_key(&self, chain: KeyChain, index: u32) -> Result<XOnlyPublicKey> {
        Ok(self.secret_key(chain, index)?.public_key())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    /// BIP32 test vector 1 (seed 000102...0f): chain m and m/0H, published private keys and
    /// chain codes.
    #[test]
    fn bip32_test_vector_1_hardened() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let m = ExtendedPrivKey::master(&seed).unwrap();
        assert_eq!(
            hex::encode(m.secret_bytes()),
            "e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35"
        );
        assert_eq!(
            hex::encode(m.chain_code()),
            "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508"
        );
        let m0h = m.derive_hardened(0).unwrap();
        assert_eq!(
            hex::encode(m0h.secret_bytes()),
            "edb2e14f9ee77d26dd93b4ecede8d16ed408ce149b6cd80b0715a2d911a0afea"
        );
        assert_eq!(
            hex::encode(m0h.chain_code()),
            "47fdacbd0f1097043b78c63c20c34ef4ed9a111d980047ad16282c7ae6236141"
        );
    }

    #[test]
    fn rejects_non_hardenable_index() {
        let m = ExtendedPrivKey::master(&[1u8; 32]).unwrap();
        assert!(m.derive_hardened(HARDENED).is_err());
    }

    #[test]
    fn chains_and_indexes_give_distinct_keys() {
        let mn = bip39::Mnemonic::from_entropy(&[7u8; 32]).unwrap();
        let k = Keychain::from_mnemonic(&mn).unwrap();
        let a = k.public_key(KeyChain::Receive, 0).unwrap();
        let b = k.public_key(KeyChain::Receive, 1).unwrap();
        let c = k.public_key(KeyChain::Change, 0).unwrap();
        assert!(a != b && a != c && b != c);
        // Deterministic.
        assert_eq!(
            Keychain::from_mnemonic(&mn)
                .unwrap()
                .public_key(KeyChain::Receive, 0)
                .unwrap(),
            a
        );
    }
}
