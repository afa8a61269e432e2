//! Keys and BIP340 Schnorr signatures, on the `secp256k1` crate (libsecp256k1).
//!
//! Outputs pay to a 32-byte x-only key; an input carries one 64-byte signature over
//! [`sighash`]`(genesis, txid)`. The message commits to the genesis hash, so a signature made
//! for one chain is never valid on another.

use std::sync::LazyLock;

use crate::PrimitivesError;
use crate::hash::{BlockHash, Tag, Txid};

static SECP: LazyLock<secp256k1::Secp256k1<secp256k1::All>> =
    LazyLock::new(secp256k1::Secp256k1::new);

/// Tag of the signature message hash.
pub const SIGHASH_TAG: &str = "cairn/sighash";

/// The message every input of `txid` signs on the chain that starts at `genesis`.
pub fn sighash(genesis: &BlockHash, txid: &Txid) -> [u8; 32] {
    static SIGHASH: Tag = Tag::new(SIGHASH_TAG);
    SIGHASH.hash(&[&genesis.0, &txid.0])
}

/// A 32-byte x-only public key as it appears in an output. The bytes are kept raw: whether they
/// are a valid curve point is checked when a spend is verified.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, bincode::Encode, bincode::Decode)]
pub struct XOnlyPublicKey(pub [u8; 32]);

impl XOnlyPublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether the bytes are the x coordinate of a point on the curve.
    pub fn is_valid(&self) -> bool {
        secp256k1::XOnlyPublicKey::from_byte_array(self.0).is_ok()
    }
}

impl std::fmt::Debug for XOnlyPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XOnlyPublicKey({})", hex::encode(self.0))
    }
}

/// A 64-byte BIP340 Schnorr signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Placeholder before signing; never valid.
    pub const EMPTY: Signature = Signature([0u8; 64]);
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// A secret key. Debug output never shows it.
#[derive(Clone)]
pub struct SecretKey {
    keypair: secp256k1::Keypair,
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        loop {
            let mut b = [0u8; 32];
            getrandom::getrandom(&mut b).expect("the OS random source is available");
            if let Ok(k) = Self::from_bytes(b) {
                return k;
            }
        }
    }

    pub fn from_bytes(b: [u8; 32]) -> Result<Self, PrimitivesError> {
        let sk = secp256k1::SecretKey::from_byte_array(b)
            .map_err(|_| PrimitivesError::InvalidSecretKey)?;
        Ok(Self {
            keypair: secp256k1::Keypair::from_secret_key(&SECP, &sk),
        })
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.keypair.secret_bytes()
    }

    pub fn public_key(&self) -> XOnlyPublicKey {
        XOnlyPublicKey(self.keypair.x_only_public_key().0.serialize())
    }

    /// BIP340 signature of `msg` (any length, as BIP340 allows) with the given auxiliary
    /// randomness.
    pub fn sign_with_aux(&self, msg: &[u8], aux: &[u8; 32]) -> Signature {
        Signature(
            SECP.sign_schnorr_with_aux_rand(msg, &self.keypair, aux)
                .to_byte_array(),
        )
    }

    /// BIP340 signature with fresh auxiliary randomness (recommended by BIP340 against
    /// side channels; the signature stays valid whatever the randomness).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        let mut aux = [0u8; 32];
        getrandom::getrandom(&mut aux).expect("the OS random source is available");
        self.sign_with_aux(msg, &aux)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretKey(<redacted>, pubkey {})",
            self.public_key().to_hex()
        )
    }
}

/// Verifies a BIP340 signature of `msg` (any length, as BIP340 allows) by `pubkey`.
pub fn verify(pubkey: &XOnlyPublicKey, msg: &[u8], sig: &Signature) -> bool {
    let Ok(pk) = secp256k1::XOnlyPublicKey::from_byte_array(pubkey.0) else {
        return false;
    };
    let sig = secp256k1::schnorr::Signature::from_byte_array(sig.0);
    SECP.verify_schnorr(&sig, msg, &pk).is_ok()
}

/// A version-1 transaction spending `inputs` (every one owned by `key`) to one output per
/// value, each paid back to `key`, signed for the chain whose genesis is `genesis`. The
/// shape tests, benchmarks and the testnet harness build their load from.
pub fn signed_spend(
    inputs: &[crate::OutPoint],
    outputs: &[u64],
    key: &SecretKey,
    genesis: &BlockHash,
) -> crate::Transaction {
    let mut tx = crate::Transaction {
        version: crate::Transaction::VERSION,
        inputs: inputs
            .iter()
            .map(|op| crate::TxIn {
                prevout: *op,
                signature: Signature::EMPTY,
            })
            .collect(),
        outputs: outputs
            .iter()
            .map(|v| crate::TxOut {
                value: crate::Amount(*v),
                pubkey: key.public_key(),
            })
            .collect(),
        lock_time: 0,
    };
    let keys: Vec<&SecretKey> = inputs.iter().map(|_| key).collect();
    sign_transaction(&mut tx, genesis, &keys);
    tx
}

/// Signs every input of `tx` with the key that owns the output it spends.
/// `keys[i]` signs input `i`.
pub fn sign_transaction(tx: &mut crate::Transaction, genesis: &BlockHash, keys: &[&SecretKey]) {
    assert_eq!(keys.len(), tx.inputs.len(), "one key per input");
    let msg = sighash(genesis, &tx.txid());
    for (input, key) in tx.inputs.iter_mut().zip(keys) {
        input.signature = key.sign(&msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_spend_signs_every_input_for_its_chain() {
        let key = SecretKey::from_bytes([9; 32]).unwrap();
        let genesis = BlockHash([1; 32]);
        let inputs = [
            crate::OutPoint::new(Txid([2; 32]), 0),
            crate::OutPoint::new(Txid([3; 32]), 5),
        ];
        let tx = signed_spend(&inputs, &[10, 20, 30], &key, &genesis);
        assert_eq!(
            tx.inputs.iter().map(|i| i.prevout).collect::<Vec<_>>(),
            inputs
        );
        assert_eq!(
            tx.outputs.iter().map(|o| o.value.0).collect::<Vec<_>>(),
            [10, 20, 30]
        );
        assert!(tx.outputs.iter().all(|o| o.pubkey == key.public_key()));
        let msg = sighash(&genesis, &tx.txid());
        assert!(
            tx.inputs
                .iter()
                .all(|i| verify(&key.public_key(), &msg, &i.signature))
        );
        let other_chain = sighash(&BlockHash([4; 32]), &tx.txid());
        assert!(!verify(
            &key.public_key(),
            &other_chain,
            &tx.inputs[0].signature
        ));
    }

    /// BIP340's published vectors (tests/vectors/bip340-test-vectors.csv, copied from
    /// github.com/bitcoin/bips bip-0340/test-vectors.csv at 7fe0b034ec967b52a5a28276419117326df93263)
    /// through our wrappers: signing reproduces the signature byte for byte, verification gives
    /// the published result.
    #[test]
    fn bip340_vectors() {
        let csv = include_str!("../tests/vectors/bip340-test-vectors.csv");
        let mut rows = 0;
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
            let (idx, sk, pk, aux, msg, sig, ok) = (f[0], f[1], f[2], f[3], f[4], f[5], f[6]);
            let pk = XOnlyPublicKey(hex::decode(pk).unwrap().try_into().unwrap_or([0xff; 32]));
            let msg = hex::decode(msg).unwrap();
            let sig = Signature(hex::decode(sig).unwrap().try_into().unwrap());
            if !sk.is_empty() {
                let key =
                    SecretKey::from_bytes(hex::decode(sk).unwrap().try_into().unwrap()).unwrap();
                assert_eq!(key.public_key(), pk, "vector {idx}: public key");
                let aux: [u8; 32] = hex::decode(aux).unwrap().try_into().unwrap();
                assert_eq!(
                    key.sign_with_aux(&msg, &aux),
                    sig,
                    "vector {idx}: signature"
                );
            }
            assert_eq!(
                verify(&pk, &msg, &sig),
                ok == "TRUE",
                "vector {idx}: verification"
            );
            rows += 1;
        }
        assert_eq!(rows, 19);
    }

    #[test]
    fn signature_is_bound_to_genesis() {
        let key = SecretKey::generate();
        let txid = Txid([3; 32]);
        let sig = key.sign(&sighash(&BlockHash([1; 32]), &txid));
        assert!(verify(
            &key.public_key(),
            &sighash(&BlockHash([1; 32]), &txid),
            &sig
        ));
        assert!(!verify(
            &key.public_key(),
            &sighash(&BlockHash([2; 32]), &txid),
            &sig
        ));
    }

    #[test]
    fn debug_never_prints_secret() {
        let key = SecretKey::from_bytes([7; 32]).unwrap();
        assert!(!format!("{key:?}").contains(&hex::encode([7u8; 32])));
    }
}
