//! The keys of one release (`--sign-key FILE`, repeatable, or the description's `sign.keys`):
//! each file's kind is read from its content.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use super::Signer;
use super::ecdsa::{EcdsaKey, PEM_LABELS};
use crate::bail_input;
use crate::publish::credentials::Secret;

/// The signing keys of a release, at most one of each kind.
#[derive(Debug, Clone, Default)]
pub struct SigningKeys {
    /// A minisign secret key: signs each static tag's `SHA256SUMS`.
    pub minisign: Option<Arc<Signer>>,
    /// An ECDSA P-256 key: signs images (cosign signatures) and attestations.
    pub ecdsa: Option<Arc<EcdsaKey>>,
}

/// What a key file holds, told from its content.
#[derive(Debug, PartialEq, Eq)]
enum KeyKind {
    Minisign,
    Ecdsa,
}

impl SigningKeys {
    /// Loads every key file; an encrypted key (minisign or cosign) takes `password`. Any
    /// unreadable key, wrong password or two keys of one kind is an input error (exit 2).
    pub fn load(files: &[PathBuf], password: Option<&Secret>) -> Result<SigningKeys> {
        let mut keys = SigningKeys::default();
        let mut seen: Vec<(KeyKind, &Path)> = Vec::new();
        for file in files {
            let text = read(file)?;
            let kind = kind_of(file, &text)?;
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == kind) {
                bail_input!(
                    "--sign-key {} and {} are both {} keys; give one key of each kind",
                    first.display(),
                    file.display(),
                    match kind {
                        KeyKind::Minisign => "minisign",
                        KeyKind::Ecdsa => "ECDSA",
                    }
                );
            }
            match kind {
                KeyKind::Minisign => keys.minisign = Some(Arc::new(Signer::load(file, password)?)),
                KeyKind::Ecdsa => {
                    keys.ecdsa = Some(Arc::new(EcdsaKey::from_pem(file, &text, password)?))
                }
            }
            seen.push((kind, file));
        }
        Ok(keys)
    }

    /// True when no key was given.
    pub fn is_empty(&self) -> bool {
        self.minisign.is_none() && self.ecdsa.is_none()
    }
}

fn read(file: &Path) -> Result<String> {
    let bytes = std::fs::read(file).map_err(|e| {
        crate::error::input(format!(
            "--sign-key {}: cannot read the key file: {e}",
            file.display()
        ))
    })?;
    String::from_utf8(bytes).map_err(|_| unknown_kind(file))
}

fn kind_of(file: &Path, text: &str) -> Result<KeyKind> {
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        bail_input!(
            "--sign-key {}: an encrypted PKCS#8 key is not read; decrypt it (`openssl pkey -in KEY -out KEY.pem`) or use cosign's `cosign.key`",
            file.display()
        );
    }
    if PEM_LABELS
        .iter()
        .any(|label| text.contains(&format!("-----BEGIN {label}-----")))
    {
        return Ok(KeyKind::Ecdsa);
    }
    if text.starts_with("untrusted comment:") {
        return Ok(KeyKind::Minisign);
    }
    Err(unknown_kind(file))
}

fn unknown_kind(file: &Path) -> anyhow::Error {
    crate::error::input(format!(
        "--sign-key {}: neither a minisign secret key (`minisign -G`) nor an ECDSA P-256 key (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`, or cosign's cosign.key)",
        file.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        file
    }

    #[test]
    fn tells_the_kinds_apart() {
        let dir = tempfile::tempdir().unwrap();
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let mini = write(
            dir.path(),
            "m.key",
            &pair.sk.to_box(None).unwrap().into_string(),
        );
        let pem = write(
            dir.path(),
            "k.pem",
            &super::super::ecdsa::tests::pkcs8_pem(),
        );
        let cosign = super::super::cosign_key::tests::cosign_key("pw");
        let cosign = write(dir.path(), "cosign.key", &cosign);
        let keys = SigningKeys::load(&[mini.clone(), pem.clone()], None).unwrap();
        assert!(keys.minisign.is_some() && keys.ecdsa.is_some());
        let keys =
            SigningKeys::load(std::slice::from_ref(&cosign), Some(&Secret::new("pw"))).unwrap();
        assert!(keys.minisign.is_none() && keys.ecdsa.is_some());
        for (files, needle) in [
            (vec![pem.clone(), cosign.clone()], "both ECDSA"),
            (vec![cosign.clone()], "--sign-password-stdin"),
            (vec![cosign.clone()], "wrong password"),
            (vec![write(dir.path(), "x", "hello")], "neither"),
        ] {
            let password = needle.starts_with("wrong").then(|| Secret::new("nope"));
            let e = SigningKeys::load(&files, password.as_ref()).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2);
            assert!(e.to_string().contains(needle), "{e}");
        }
        assert!(SigningKeys::load(&[], None).unwrap().is_empty());
        // cosign allows an empty password: such a key needs no --sign-password-stdin.
        let empty = write(
            dir.path(),
            "empty.key",
            &super::super::cosign_key::tests::cosign_key(""),
        );
        assert!(SigningKeys::load(&[empty], None).unwrap().ecdsa.is_some());
    }
}
