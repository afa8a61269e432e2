//! The wallet file: one JSON document holding the encrypted seed and non-secret metadata.
//!
//! ```json
//! {
//!   "version": 1,
//!   "kdf": {"algorithm": "argon2id", "m_cost_kib": 65536, "t_cost": 3, "p_cost": 1, "salt": "<hex 16>"},
//!   "cipher": {"algorithm": "chacha20poly1305", "nonce": "<hex 12>", "ciphertext": "<hex>"},
//!   "derivation": "m/44'/9645'/0'",
//!   "receive_pubkeys": ["<hex x-only key>", ...],
//!   "change_pubkeys": ["<hex x-only key>", ...],
//!   "chain": {"genesis_hash": "<hex>", "address_prefix": "cairn"}
//! }
//! ```
//!
//! The ciphertext is ChaCha20-Poly1305 (associated data `cairn-wallet/1`) of the 32-byte BIP39
//! entropy (the mnemonic), under the 32-byte key Argon2id derives from the passphrase and salt.
//! The key lists are a cache of derived public keys (index = position; the next index of a chain
//! is its length) so that `balance` and `history` need no passphrase; whenever the wallet is
//! unlocked the cache is checked against the seed. The file is written atomically (temporary
//! file in the same directory, fsync, rename, fsync of the directory) with mode 0600, and never
//! holds a plaintext key.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use cairn_primitives::XOnlyPublicKey;

use crate::error::{Result, WalletError};
use crate::hd::{ACCOUNT_PATH, KeyChain, Keychain};

/// Version of the file format this code reads and writes.
pub const FILE_VERSION: u32 = 1;
/// Associated data of the AEAD: binds the ciphertext to this format.
const AEAD_AD: &[u8] = b"cairn-wallet/1";
/// A wallet file larger than this is refused before parsing.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most Argon2 memory a file may ask for (2 GiB), so a hostile file cannot exhaust memory.
pub const MAX_M_COST_KIB: u32 = 2 * 1024 * 1024;
/// Most Argon2 passes a file may ask for.
pub const MAX_T_COST: u32 = 64;
/// Most Argon2 lanes a file may ask for.
pub const MAX_P_COST: u32 = 16;
/// Most derived keys per chain a file may cache.
pub const MAX_KEYS_PER_CHAIN: usize = 100_000;

/// Argon2id parameters and salt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: String,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// Hex.
    pub salt: String,
}

impl KdfParams {
    /// The parameters new wallets use: 64 MiB, 3 passes, 1 lane (OWASP's Argon2id guidance
    /// is at least 19 MiB / 2 passes), with a fresh 16-byte salt.
    pub fn recommended() -> Result<Self> {
        Self::with_cost(64 * 1024, 3, 1)
    }

    /// Cheap parameters for tests only.
    pub fn insecure_for_tests() -> Result<Self> {
        Self::with_cost(64, 1, 1)
    }

    pub fn with_cost(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self> {
        Ok(Self {
            algorithm: "argon2id".into(),
            m_cost_kib,
            t_cost,
            p_cost,
            salt: hex::encode(random_bytes::<16>()?),
        })
    }

    fn derive_key(&self, passphrase: &str) -> Result<[u8; 32]> {
        if self.algorithm != "argon2id" {
            return Err(WalletError::Kdf(format!(
                "unknown algorithm {:?}",
                self.algorithm
            )));
        }
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.p_cost > MAX_P_COST
        {
            return Err(WalletError::Kdf(format!(
                "costs m={} KiB t={} p={} above the limits {MAX_M_COST_KIB}/{MAX_T_COST}/{MAX_P_COST}",
                self.m_cost_kib, self.t_cost, self.p_cost
            )));
        }
        let salt = hex::decode(&self.salt).map_err(|e| WalletError::Kdf(format!("salt: {e}")))?;
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| WalletError::Kdf(e.to_string()))?;
        let mut key = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
            .map_err(|e| WalletError::Kdf(e.to_string()))?;
        Ok(key)
    }
}

/// The AEAD box around the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CipherBox {
    pub algorithm: String,
    /// Hex, 12 bytes.
    pub nonce: String,
    /// Hex.
    pub ciphertext: String,
}

/// The chain the wallet belongs to (non-secret): fixed at creation, checked against every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainRecord {
    pub genesis_hash: String,
    pub address_prefix: String,
}

/// A wallet file as stored on disk. Holds no plaintext secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletFile {
    pub version: u32,
    pub kdf: KdfParams,
    pub cipher: CipherBox,
    pub derivation: String,
    pub receive_pubkeys: Vec<String>,
    pub change_pubkeys: Vec<String>,
    #[serde(default)]
    pub chain: Option<ChainRecord>,
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| WalletError::Other(format!("OS random source failed: {e}")))?;
    Ok(b)
}

/// A fresh 24-word BIP39 mnemonic from 32 bytes of OS randomness.
pub fn generate_mnemonic() -> Result<bip39::Mnemonic> {
    bip39::Mnemonic::from_entropy(&random_bytes::<32>()?)
        .map_err(|e| WalletError::Mnemonic(e.to_string()))
}

/// Parses a mnemonic typed or pasted by a user: any whitespace, any case.
pub fn parse_mnemonic(text: &str) -> Result<bip39::Mnemonic> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    if words.is_empty() {
        return Err(WalletError::Mnemonic("no words given".into()));
    }
    bip39::Mnemonic::parse_normalized(&words.join(" "))
        .map_err(|e| WalletError::Mnemonic(e.to_string()))
}

fn parse_pubkey(hex_key: &str, path: &Path) -> Result<XOnlyPublicKey> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut b).map_err(|e| WalletError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("cached public key {hex_key:?}: {e}"),
    })?;
    Ok(XOnlyPublicKey(b))
}

impl WalletFile {
    /// Encrypts `mnemonic` under `passphrase` and caches the first receive key.
    pub fn create(mnemonic: &bip39::Mnemonic, passphrase: &str, kdf: KdfParams) -> Result<Self> {
        let key = kdf.derive_key(passphrase)?;
        let nonce = random_bytes::<12>()?;
        let (entropy, len) = mnemonic.to_entropy_array();
        let ciphertext = ChaCha20Poly1305::new(Key::from_slice(&key))
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &entropy[..len],
                    aad: AEAD_AD,
                },
            )
            .map_err(|_| WalletError::Other("encryption failed".into()))?;
        let keychain = Keychain::from_mnemonic(mnemonic)?;
        let first = keychain.public_key(KeyChain::Receive, 0)?;
        Ok(Self {
            version: FILE_VERSION,
            kdf,
            cipher: CipherBox {
                algorithm: "chacha20poly1305".into(),
                nonce: hex::encode(nonce),
                ciphertext: hex::encode(ciphertext),
            },
            derivation: ACCOUNT_PATH.into(),
            receive_pubkeys: vec![first.to_hex()],
            change_pubkeys: Vec::new(),
            chain: None,
        })
    }

    /// Decrypts the mnemonic. A wrong passphrase gives [`WalletError::WrongPassphrase`].
    pub fn decrypt_mnemonic(&self, passphrase: &str) -> Result<bip39::Mnemonic> {
        let corrupt = |detail: String| WalletError::Corrupt {
            path: PathBuf::from("(wallet)"),
            detail,
        };
        if self.cipher.algorithm != "chacha20poly1305" {
            return Err(corrupt(format!(
                "unknown cipher {:?}",
                self.cipher.algorithm
            )));
        }
        let nonce = hex::decode(&self.cipher.nonce).map_err(|e| corrupt(format!("nonce: {e}")))?;
        if nonce.len() != 12 {
            return Err(corrupt(format!(
                "nonce is {} bytes, expected 12",
                nonce.len()
            )));
        }
        let ciphertext = hex::decode(&self.cipher.ciphertext)
            .map_err(|e| corrupt(format!("ciphertext: {e}")))?;
        let key = self.kdf.derive_key(passphrase)?;
        let entropy = ChaCha20Poly1305::new(Key::from_slice(&key))
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: AEAD_AD,
                },
            )
            .map_err(|_| WalletError::WrongPassphrase)?;
        bip39::Mnemonic::from_entropy(&entropy).map_err(|e| corrupt(format!("decrypted seed: {e}")))
    }

    /// Decrypts and checks the public-key cache against the seed.
    pub fn unlock(&self, passphrase: &str) -> Result<Keychain> {
        let keychain = Keychain::from_mnemonic(&self.decrypt_mnemonic(passphrase)?)?;
        for (chain, list) in [
            (KeyChain::Receive, &self.receive_pubkeys),
            (KeyChain::Change, &self.change_pubkeys),
        ] {
            for (i, cached) in list.iter().enumerate() {
                let index =
                    u32::try_from(i).map_err(|_| WalletError::Other("too many keys".into()))?;
                if keychain.public_key(chain, index)?.to_hex() != *cached {
                    return Err(WalletError::CacheMismatch {
                        chain: chain.name(),
                        index,
                    });
                }
            }
        }
        Ok(keychain)
    }

    /// Cached public keys of one chain, index = position.
    pub fn pubkeys(&self, chain: KeyChain) -> Result<Vec<XOnlyPublicKey>> {
        let list = match chain {
            KeyChain::Receive => &self.receive_pubkeys,
            KeyChain::Change => &self.change_pubkeys,
        };
        list.iter()
            .map(|h| parse_pubkey(h, Path::new("(wallet)")))
            .collect()
    }

    /// Derives the next key of `chain` and appends it to the cache; returns (index, key).
    /// The caller persists the file.
    pub fn derive_next(
        &mut self,
        keychain: &Keychain,
        chain: KeyChain,
    ) -> Result<(u32, XOnlyPublicKey)> {
        let list = match chain {
            KeyChain::Receive => &mut self.receive_pubkeys,
            KeyChain::Change => &mut self.change_pubkeys,
        };
        if list.len() >= MAX_KEYS_PER_CHAIN {
            return Err(WalletError::Other(format!(
                "more than {MAX_KEYS_PER_CHAIN} {} keys",
                chain.name()
            )));
        }
        let index =
            u32::try_from(list.len()).map_err(|_| WalletError::Other("too many keys".into()))?;
        let key = keychain.public_key(chain, index)?;
        list.push(key.to_hex());
        Ok((index, key))
    }

    /// Reads and checks a wallet file (no passphrase needed).
    pub fn load(path: &Path) -> Result<Self> {
        let file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalletError::NotFound(path.into()));
            }
            Err(e) => return Err(WalletError::io("cannot open", path, e)),
        };
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| WalletError::io("cannot read", path, e))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(WalletError::Corrupt {
                path: path.into(),
                detail: format!("larger than {MAX_FILE_BYTES} bytes"),
            });
        }
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| WalletError::Corrupt {
                path: path.into(),
                detail: e.to_string(),
            })?
            .get("version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(FILE_VERSION)) {
            return Err(WalletError::UnsupportedVersion {
                path: path.into(),
                found: version.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
                supported: FILE_VERSION,
            });
        }
        let wallet: WalletFile = serde_json::from_str(&text).map_err(|e| WalletError::Corrupt {
            path: path.into(),
            detail: e.to_string(),
        })?;
        if wallet.receive_pubkeys.len() > MAX_KEYS_PER_CHAIN
            || wallet.change_pubkeys.len() > MAX_KEYS_PER_CHAIN
        {
            return Err(WalletError::Corrupt {
                path: path.into(),
                detail: "too many cached keys".into(),
            });
        }
        for k in wallet.receive_pubkeys.iter().chain(&wallet.change_pubkeys) {
            parse_pubkey(k, path)?;
        }
        Ok(wallet)
    }

    /// Writes a new file; fails with [`WalletError::AlreadyExists`] if `path` exists.
    pub fn save_new(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?, true)
    }

    /// Replaces the file at `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?, false)
    }

    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v =
            serde_json::to_vec_pretty(self).map_err(|e| WalletError::Other(e.to_string()))?;
        v.push(b'\n');
        Ok(v)
    }
}

/// Temp file in the same directory, fsync, rename (or hard link for a new file, which refuses
/// to replace an existing one), fsync of the directory. Mode 0600.
fn write_atomic(path: &Path, bytes: &[u8], create_new: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir)
            .map_err(|e| WalletError::io("cannot create directory", &dir, e))?;
    }
    if create_new && path.exists() {
        return Err(WalletError::AlreadyExists(path.into()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "wallet".into());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        hex::encode(random_bytes::<4>()?)
    ));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .map_err(|e| WalletError::io("cannot create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| WalletError::io("cannot write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| WalletError::io("cannot sync", &tmp, e))?;
        drop(f);
        if create_new {
            match fs::hard_link(&tmp, path) {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(WalletError::AlreadyExists(path.into()));
                }
                // Filesystems without hard links: the exists() check above has to do.
                Err(_) => fs::rename(&tmp, path)
                    .map_err(|e| WalletError::io("cannot rename into", path, e))?,
            }
        } else {
            fs::rename(&tmp, path).map_err(|e| WalletError::io("cannot rename into", path, e))?;
        }
        if let Ok(d) = fs::File::open(&dir) {
            d.sync_all()
                .map_err(|e| WalletError::io("cannot sync directory", &dir, e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    fn mnemonic() -> bip39::Mnemonic {
        bip39::Mnemonic::from_entropy(&[0x5a; 32]).unwrap()
    }

    #[test]
    fn encrypt_decrypt_round_trip() {
        let mn = mnemonic();
        let w = WalletFile::create(
            &mn,
            "correct horse",
            KdfParams::insecure_for_tests().unwrap(),
        )
        .unwrap();
        assert_eq!(w.decrypt_mnemonic("correct horse").unwrap(), mn);
        assert_eq!(w.pubkeys(KeyChain::Receive).unwrap().len(), 1);
        assert!(w.unlock("correct horse").is_ok());
        // Empty passphrase (the dev wallet's) works too.
        let w = WalletFile::create(&mn, "", KdfParams::insecure_for_tests().unwrap()).unwrap();
        assert_eq!(w.decrypt_mnemonic("").unwrap(), mn);
    }

    #[test]
    fn wrong_passphrase_is_reported_and_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let w = WalletFile::create(
            &mnemonic(),
            "right",
            KdfParams::insecure_for_tests().unwrap(),
        )
        .unwrap();
        w.save_new(&path).unwrap();
        let before = fs::read(&path).unwrap();
        let loaded = WalletFile::load(&path).unwrap();
        let err = loaded.unlock("wrong").unwrap_err();
        assert!(matches!(err, WalletError::WrongPassphrase));
        assert_eq!(err.to_string(), "wrong passphrase");
        assert_eq!(fs::read(&path).unwrap(), before);
        // No stray temp files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn file_holds_no_plaintext_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let mn = mnemonic();
        let w = WalletFile::create(&mn, "pw", KdfParams::insecure_for_tests().unwrap()).unwrap();
        w.save_new(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let k = Keychain::from_mnemonic(&mn).unwrap();
        let sk0 = hex::encode(k.secret_key(KeyChain::Receive, 0).unwrap().to_bytes());
        for secret in [
            mn.to_string(),
            hex::encode(mn.to_entropy()),
            hex::encode(mn.to_seed("")),
            sk0,
        ] {
            assert!(!text.contains(&secret), "file contains a secret");
        }
        for word in mn.words().filter(|w| w.len() >= 5) {
            assert!(!text.contains(word), "file contains mnemonic word {word}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn save_new_refuses_to_overwrite_and_save_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("w.json");
        let mut w = WalletFile::create(&mnemonic(), "pw", KdfParams::insecure_for_tests().unwrap())
            .unwrap();
        w.save_new(&path).unwrap();
        assert!(matches!(
            w.save_new(&path),
            Err(WalletError::AlreadyExists(_))
        ));
        let k = w.unlock("pw").unwrap();
        w.derive_next(&k, KeyChain::Change).unwrap();
        w.save(&path).unwrap();
        assert_eq!(WalletFile::load(&path).unwrap(), w);
    }

    #[test]
    fn tampered_cache_is_detected_on_unlock() {
        let mut w = WalletFile::create(&mnemonic(), "pw", KdfParams::insecure_for_tests().unwrap())
            .unwrap();
        w.receive_pubkeys[0] = hex::encode([0x42u8; 32]);
        assert!(matches!(
            w.unlock("pw"),
            Err(WalletError::CacheMismatch { .. })
        ));
    }

    #[test]
    fn hostile_kdf_params_are_refused() {
        let mut w = WalletFile::create(&mnemonic(), "pw", KdfParams::insecure_for_tests().unwrap())
            .unwrap();
        w.kdf.m_cost_kib = u32::MAX;
        assert!(matches!(w.unlock("pw"), Err(WalletError::Kdf(_))));
    }

    #[test]
    fn mnemonic_parsing_is_forgiving_about_whitespace_and_case() {
        let mn = mnemonic();
        let messy = format!("  {}\n", mn.to_string().to_uppercase().replace(' ', "\t "));
        assert_eq!(parse_mnemonic(&messy).unwrap(), mn);
        assert!(parse_mnemonic("abandon abandon").is_err());
        assert!(parse_mnemonic("").is_err());
    }
}
