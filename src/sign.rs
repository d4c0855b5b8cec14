//! Signing keys: minisign signatures of a tag's `SHA256SUMS`, with the user's secret key;
//! ECDSA P-256 keys ([`ecdsa`]) for image signatures and attestations; and the keys of one
//! release, told apart by content ([`SigningKeys`]).
//!
//! The keys and their password never leave this module: no `Debug` shows them, errors name the
//! key file and the problem only, and no child process ever sees them.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::Result;
use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use crate::bail_input;
use crate::publish::credentials::Secret;

mod cosign_key;
pub mod ecdsa;
mod keys;

pub use ecdsa::{EcdsaKey, load_public_ecdsa};
pub use keys::SigningKeys;

/// A loaded minisign secret key (and its public half, to check signatures already published).
pub struct Signer {
    secret: SecretKey,
    public: PublicKey,
    file: PathBuf,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.file.display())
    }
}

impl Signer {
    /// Loads a minisign secret key file; an encrypted key needs its `password`.
    pub fn load(file: &Path, password: Option<&Secret>) -> Result<Signer> {
        let shown = file.display();
        let text = std::fs::read_to_string(file).map_err(|e| {
            crate::error::input(format!("--sign-key {shown}: cannot read the key file: {e}"))
        })?;
        let boxed = || SecretKeyBox::from_string(&text);
        let unencrypted = boxed()
            .and_then(SecretKeyBox::into_unencrypted_secret_key)
            .or_else(|e| zero_checksum_key(&text).ok_or(e));
        let secret = match (unencrypted, password) {
            (Ok(key), _) => key,
            (Err(_), Some(password)) => boxed()
                .and_then(|b| b.into_secret_key(Some(password.expose().to_string())))
                .map_err(|e| key_error(file, &e.to_string()))?,
            (Err(e), None) if e.to_string().contains("encrypted") => bail_input!(
                "--sign-key {shown} is encrypted: give its password on stdin with --sign-password-stdin"
            ),
            (Err(e), None) => return Err(key_error(file, &e.to_string())),
        };
        let public =
            PublicKey::from_secret_key(&secret).map_err(|e| key_error(file, &e.to_string()))?;
        Ok(Signer {
            secret,
            public,
            file: file.to_path_buf(),
        })
    }

    /// The detached signature (`.minisig` text) of `data`, with `trusted` as trusted comment.
    pub fn sign(&self, data: &[u8], trusted: &str) -> Result<String> {
        let signature = minisign::sign(
            Some(&self.public),
            &self.secret,
            Cursor::new(data),
            Some(trusted),
            Some("signature from alba (minisign)"),
        )
        .map_err(|e| anyhow::anyhow!("signing with {} failed: {e}", self.file.display()))?;
        Ok(signature.into_string())
    }

    /// True when `signature` (`.minisig` text) is this key's valid signature of `data` with
    /// the trusted comment `trusted`: then a re-run keeps it (signatures are randomized).
    pub fn verifies(&self, data: &[u8], signature: &str, trusted: &str) -> bool {
        verify(&self.public, data, signature, trusted)
    }
}

/// True when `signature` is `public`'s valid signature of `data` with trusted comment `trusted`.
fn verify(public: &PublicKey, data: &[u8], signature: &str, trusted: &str) -> bool {
    let Ok(sig) = SignatureBox::from_string(signature) else {
        return false;
    };
    let comment_ok = sig.trusted_comment().is_ok_and(|c| c == trusted);
    comment_ok && minisign::verify(public, &sig, Cursor::new(data), true, false, false).is_ok()
}

/// An unencrypted key as minisign 0.11 (Debian 12) writes with `-W`: its checksum field is
/// left zero, which the minisign crate reads as corruption. Accepted when the key signs and
/// its own public half verifies that signature, which a corrupted key would not.
fn zero_checksum_key(text: &str) -> Option<SecretKey> {
    use base64::Engine;
    let encoded = text.lines().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let key = SecretKey::from_bytes(&bytes).ok()?;
    if key.is_encrypted() || !bytes.ends_with(&[0u8; 32]) {
        return None;
    }
    let public = PublicKey::from_secret_key(&key).ok()?;
    let probe = minisign::sign(Some(&public), &key, Cursor::new(b"probe"), None, None).ok()?;
    minisign::verify(&public, &probe, Cursor::new(b"probe"), true, false, false).ok()?;
    Some(key)
}

/// Reads a minisign public key file (`alba verify --sign-pub`).
pub fn load_public(file: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        crate::error::input(format!("--sign-pub {}: cannot read: {e}", file.display()))
    })?;
    PublicKeyBox::from_string(&text)
        .and_then(PublicKeyBox::into_public_key)
        .map_err(|e| {
            crate::error::input(format!(
                "--sign-pub {} is not a minisign public key: {e}",
                file.display()
            ))
        })
}

/// True when `signature` is `public`'s valid signature of `data` (any trusted comment).
pub fn verify_with(public: &PublicKey, data: &[u8], signature: &str) -> bool {
    let Ok(sig) = SignatureBox::from_string(signature) else {
        return false;
    };
    minisign::verify(public, &sig, Cursor::new(data), true, false, false).is_ok()
}

fn key_error(file: &Path, problem: &str) -> anyhow::Error {
    let hint = if problem.contains("password") {
        " (wrong password: check what --sign-password-stdin reads)"
    } else {
        " (expected a minisign secret key, as `minisign -G` writes)"
    };
    crate::error::input(format!("--sign-key {}: {problem}{hint}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_key(dir: &Path, password: Option<&str>) -> PathBuf {
        let pair = match password {
            Some(p) => minisign::KeyPair::generate_encrypted_keypair(Some(p.to_string())),
            None => minisign::KeyPair::generate_unencrypted_keypair(),
        }
        .unwrap();
        let file = dir.join("alba.key");
        std::fs::write(&file, pair.sk.to_box(None).unwrap().into_string()).unwrap();
        file
    }

    #[test]
    fn signs_and_keeps_what_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::load(&write_key(dir.path(), None), None).unwrap();
        let sig = signer.sign(b"sums", "alba t 1").unwrap();
        assert!(signer.verifies(b"sums", &sig, "alba t 1"));
        assert!(!signer.verifies(b"other", &sig, "alba t 1"));
        assert!(!signer.verifies(b"sums", &sig, "alba t 2"));
        assert!(!format!("{signer:?}").contains("sk"), "Debug shows no key");
    }

    #[test]
    fn encrypted_keys_need_the_right_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_key(dir.path(), Some("pw"));
        let e = Signer::load(&file, None).unwrap_err().to_string();
        assert!(e.contains("--sign-password-stdin"), "{e}");
        let e = Signer::load(&file, Some(&Secret::new("nope")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("password") && !e.contains("nope"), "{e}");
        assert!(Signer::load(&file, Some(&Secret::new("pw"))).is_ok());
        std::fs::write(&file, "not a key").unwrap();
        assert!(Signer::load(&file, None).is_err());
    }
}
