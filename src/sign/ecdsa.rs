//! ECDSA P-256 keys: they sign images (cosign "simple signing") and attestations (DSSE).
//!
//! Accepted secret keys: PKCS#8 PEM (`openssl genpkey -algorithm EC -pkeyopt
//! ec_paramgen_curve:P-256`), SEC1 PEM (`openssl ecparam -genkey`), and cosign's encrypted
//! `cosign.key` ([`super::cosign_key`]). Signatures are ASN.1 DER over SHA-256 of the payload,
//! as cosign and containers/image expect, and deterministic (RFC 6979): the same payload gives
//! the same bytes, so a re-run of the same release finds its signatures already published.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};

use crate::publish::credentials::Secret;

/// A loaded ECDSA P-256 secret key. No `Debug` or error ever shows the key itself.
pub struct EcdsaKey {
    key: SigningKey,
    file: PathBuf,
}

impl fmt::Debug for EcdsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcdsaKey({})", self.file.display())
    }
}

/// The PEM labels of the secret keys this module reads.
pub(super) const PEM_LABELS: [&str; 4] = [
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    super::cosign_key::SIGSTORE_LABEL,
    super::cosign_key::COSIGN_LABEL,
];

impl EcdsaKey {
    /// Reads an ECDSA P-256 secret key from `text` (the content of `file`); cosign's encrypted
    /// key needs `password`.
    pub fn from_pem(file: &Path, text: &str, password: Option<&Secret>) -> Result<EcdsaKey> {
        let shown = file.display();
        let key = if super::cosign_key::is_encrypted(text) {
            // cosign's keys are often made with an empty password (`COSIGN_PASSWORD=`):
            // without --sign-password-stdin, that is the one tried.
            let empty = Secret::new("");
            let der = super::cosign_key::decrypt(file, text, password.unwrap_or(&empty))?;
            let Some(der) = der else {
                match password {
                    Some(_) => crate::bail_input!(
                        "--sign-key {shown}: wrong password, the cosign key does not decrypt with it (check what --sign-password-stdin reads)"
                    ),
                    None => crate::bail_input!(
                        "--sign-key {shown} is an encrypted cosign key: give its password on stdin with --sign-password-stdin"
                    ),
                }
            };
            SigningKey::from_pkcs8_der(&der).map_err(|e| not_p256(file, &e.to_string()))?
        } else if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            p256::SecretKey::from_sec1_pem(text)
                .map(SigningKey::from)
                .map_err(|e| not_p256(file, &e.to_string()))?
        } else {
            SigningKey::from_pkcs8_pem(text).map_err(|e| not_p256(file, &e.to_string()))?
        };
        Ok(EcdsaKey {
            key,
            file: file.to_path_buf(),
        })
    }

    /// The ASN.1 DER ECDSA signature of SHA-256(`payload`), deterministic (RFC 6979).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let signature: Signature = self.key.sign(payload);
        signature.to_der().as_bytes().to_vec()
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo), the form
    /// `cosign verify --key` and a containers `policy.json` `keyPath` read.
    pub fn public_pem(&self) -> String {
        self.public()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The public half.
    pub fn public(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// The key file, for messages.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// Reads an ECDSA P-256 public key (PEM `PUBLIC KEY`, as `openssl pkey -pubout` and `cosign
/// generate-key-pair` write it), for `alba verify`.
pub fn load_public_ecdsa(file: &Path) -> Result<VerifyingKey> {
    let shown = file.display();
    let text = std::fs::read_to_string(file)
        .map_err(|e| crate::error::input(format!("{shown}: cannot read the public key: {e}")))?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| {
        crate::error::input(format!(
            "{shown} is not an ECDSA P-256 public key in PEM ({e}); make one with `openssl pkey -in KEY -pubout`"
        ))
    })
}

/// True when `signature` (ASN.1 DER) is `public`'s valid ECDSA signature of SHA-256(`payload`).
pub fn verify(public: &VerifyingKey, payload: &[u8], signature: &[u8]) -> bool {
    Signature::from_der(signature).is_ok_and(|sig| public.verify(payload, &sig).is_ok())
}

fn not_p256(file: &Path, problem: &str) -> anyhow::Error {
    crate::error::input(format!(
        "--sign-key {}: not an ECDSA P-256 secret key ({problem}); make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out cosign.pem`",
        file.display()
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::pkcs8::EncodePrivateKey;

    /// A fresh key's PKCS#8 PEM.
    pub(crate) fn pkcs8_pem() -> String {
        let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    #[test]
    fn signs_deterministically_and_verifies() {
        let file = Path::new("k.pem");
        let key = EcdsaKey::from_pem(file, &pkcs8_pem(), None).unwrap();
        let (a, b) = (key.sign(b"payload"), key.sign(b"payload"));
        assert_eq!(a, b, "RFC 6979: same payload, same signature");
        assert_eq!(a[0], 0x30, "DER SEQUENCE");
        let public = VerifyingKey::from_public_key_pem(&key.public_pem()).unwrap();
        assert!(verify(&public, b"payload", &a));
        assert!(!verify(&public, b"other", &a));
        assert!(!verify(&public, b"payload", b"junk"));
        assert_eq!(format!("{key:?}"), "EcdsaKey(k.pem)");
    }

    #[test]
    fn reads_sec1_keys_too() {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pem = secret.to_sec1_pem(LineEnding::LF).unwrap();
        let key = EcdsaKey::from_pem(Path::new("ec.pem"), &pem, None).unwrap();
        assert_eq!(key.public(), *SigningKey::from(&secret).verifying_key());
    }

    #[test]
    fn refuses_what_is_not_a_p256_key() {
        let e = EcdsaKey::from_pem(Path::new("k"), "-----BEGIN PRIVATE KEY-----\nAAAA\n", None)
            .unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("openssl genpkey"), "{e}");
    }
}
