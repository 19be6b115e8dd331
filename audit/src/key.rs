//! SM2 keys: the writer's signing key, kept in a file only its owner reads, and public keys as
//! hex, named by a short SM3 fingerprint.

use std::{io::Write, path::Path};

use anyhow::{Context, Result, anyhow, bail};
use sm2::{
    dsa::{
        Signature, SigningKey, VerifyingKey,
        signature::{Signer as _, Verifier as _},
    },
    elliptic_curve::Generate,
};

use crate::{hex, sm3_hex, unhex};

/// The signer's distinguishing identifier that SM2 hashes into every signature (GB/T 35276's
/// default, so that other SM2 tools verify these signatures as they are).
const DIST_ID: &str = "1234567812345678";

/// A public key: SEC1 bytes as hex, and its fingerprint (the first 16 hex digits of their
/// SM3), which each line names.
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub id: String,
    pub sec1: String,
    key: VerifyingKey,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.sec1 == other.sec1
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    pub fn from_hex(sec1: &str) -> Result<PublicKey> {
        let bytes = unhex(sec1.trim()).ok_or_else(|| anyhow!("an SM2 public key is hex"))?;
        let key =
            VerifyingKey::from_sec1_bytes(DIST_ID, &bytes).map_err(|_| anyhow!("not an SM2 public key"))?;
        Ok(PublicKey { id: sm3_hex(&bytes)[..16].to_string(), sec1: hex(&bytes), key })
    }

    /// Whether `sig` (hex) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], sig: &str) -> bool {
        let Some(bytes) = unhex(sig) else { return false };
        let Ok(sig) = Signature::from_slice(&bytes) else { return false };
        self.key.verify(message, &sig).is_ok()
    }
}

/// A writer's signing key.
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
}

impl Signer {
    pub fn generate() -> Result<Signer> {
        let secret = sm2::SecretKey::try_generate().map_err(|e| anyhow!("no randomness for a key: {e}"))?;
        Signer::from_secret(&secret)
    }

    fn from_secret(secret: &sm2::SecretKey) -> Result<Signer> {
        let key = SigningKey::new(DIST_ID, secret).map_err(|_| anyhow!("not an SM2 key"))?;
        let public = PublicKey::from_hex(&hex(&key.verifying_key().to_sec1_bytes()))?;
        Ok(Signer { key, public })
    }

    /// Reads a key written by [`Signer::save`].
    pub fn load(path: &Path) -> Result<Signer> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = unhex(text.trim()).filter(|b| b.len() == 32);
        let Some(bytes) = bytes else { bail!("{}: not an SM2 secret key (64 hex digits)", path.display()) };
        let secret =
            sm2::SecretKey::from_slice(&bytes).map_err(|_| anyhow!("{}: not an SM2 key", path.display()))?;
        Signer::from_secret(&secret)
    }

    /// Writes the secret key, readable by its owner only; refuses to overwrite a key.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(f, "{}", hex(&self.key.to_bytes()))?;
        f.sync_all()?;
        Ok(())
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The signature of `message`, as hex.
    pub fn sign(&self, message: &[u8]) -> String {
        let sig: Signature = self.key.sign(message);
        hex(&sig.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_signs_what_its_public_key_verifies_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::generate().unwrap();
        let sig = s.sign(b"push 7");
        assert!(s.public().verifies(b"push 7", &sig));
        assert!(!s.public().verifies(b"push 8", &sig));
        assert!(!s.public().verifies(b"push 7", "00"));
        // Saved and loaded: the same key.
        let path = dir.path().join("audit.key");
        s.save(&path).unwrap();
        assert!(s.save(&path).is_err(), "a key is never overwritten");
        let again = Signer::load(&path).unwrap();
        assert_eq!(again.public(), s.public());
        let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&path).unwrap());
        assert_eq!(mode & 0o777, 0o600);
        // Another key does not verify it; a public key read back from hex does.
        assert!(!Signer::generate().unwrap().public().verifies(b"push 7", &sig));
        assert!(PublicKey::from_hex(&s.public().sec1).unwrap().verifies(b"push 7", &sig));
        assert!(PublicKey::from_hex("04ab").is_err());
    }
}
