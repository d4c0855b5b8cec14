//! cosign's encrypted secret key (`cosign generate-key-pair` writes `cosign.key`).
//!
//! The PEM block (`ENCRYPTED SIGSTORE PRIVATE KEY`, older cosign `ENCRYPTED COSIGN PRIVATE
//! KEY`) holds JSON, as go-securesystemslib's `encrypted` package writes it:
//! `{"kdf":{"name":"scrypt","params":{"N":…,"r":…,"p":…},"salt":B64},
//! "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}`. The key is
//! scrypt(password, salt, N, r, p, 32 bytes); the ciphertext is NaCl secretbox
//! (XSalsa20-Poly1305) over the key's PKCS#8 DER.

use std::path::Path;

use anyhow::Result;
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use p256::elliptic_curve::zeroize::Zeroizing;
use serde::Deserialize;

use crate::publish::credentials::Secret;

/// The PEM label cosign writes today.
pub(super) const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label older cosign releases wrote.
pub(super) const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// The scrypt parameters go-securesystemslib accepts (legacy, standard, OWASP): anything
/// else is refused there too, and bounds the memory a key file can make alba spend.
const SCRYPT_PARAMS: [(u64, u32, u32); 3] = [(1 << 15, 8, 1), (1 << 16, 8, 1), (1 << 17, 8, 1)];

#[derive(Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// True when `text` is a cosign encrypted key.
pub(super) fn is_encrypted(text: &str) -> bool {
    [SIGSTORE_LABEL, COSIGN_LABEL]
        .iter()
        .any(|label| text.contains(&format!("-----BEGIN {label}-----")))
}

/// The PKCS#8 DER inside a cosign encrypted key, decrypted with `password`; `None` when the
/// password is wrong.
pub(super) fn decrypt(
    file: &Path,
    text: &str,
    password: &Secret,
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let bad = |problem: &str| {
        crate::error::input(format!(
            "--sign-key {}: not a readable cosign key ({problem}); `cosign generate-key-pair` writes one",
            file.display()
        ))
    };
    let (_, json) = p256::pkcs8::der::pem::decode_vec(text.trim().as_bytes())
        .map_err(|e| bad(&e.to_string()))?;
    let data: Encrypted = serde_json::from_slice(&json).map_err(|e| bad(&e.to_string()))?;
    if data.kdf.name != "scrypt" || data.cipher.name != "nacl/secretbox" {
        return Err(bad(&format!(
            "kdf {:?} and cipher {:?}, expected scrypt and nacl/secretbox",
            data.kdf.name, data.cipher.name
        )));
    }
    let ScryptParams { n, r, p } = data.kdf.params;
    if !SCRYPT_PARAMS.contains(&(n, r, p)) {
        return Err(bad(&format!(
            "unsupported scrypt parameters N={n} r={r} p={p}"
        )));
    }
    let b64 = |field: &str, value: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| bad(&format!("{field}: {e}")))
    };
    let (salt, nonce) = (
        b64("salt", &data.kdf.salt)?,
        b64("nonce", &data.cipher.nonce)?,
    );
    let ciphertext = b64("ciphertext", &data.ciphertext)?;
    if nonce.len() != 24 {
        return Err(bad("the nonce is not 24 bytes"));
    }
    let params =
        scrypt::Params::new(n.trailing_zeros() as u8, r, p, 32).map_err(|e| bad(&e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password.expose().as_bytes(), &salt, &params, key.as_mut())
        .map_err(|e| bad(&e.to_string()))?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(key.as_ref()));
    let der = cipher.decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice());
    Ok(der.ok().map(Zeroizing::new))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::pkcs8::EncodePrivateKey;

    /// A cosign encrypted key of a fresh P-256 key, as cosign writes it (legacy parameters,
    /// which keep the test quick).
    pub(crate) fn cosign_key(password: &str) -> String {
        let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = key.to_pkcs8_der().unwrap();
        let salt = [7u8; 32];
        let params = scrypt::Params::new(15, 8, 1, 32).unwrap();
        let mut box_key = [0u8; 32];
        scrypt::scrypt(password.as_bytes(), &salt, &params, &mut box_key).unwrap();
        let nonce = *Nonce::from_slice(&[9u8; 24]);
        let sealed = XSalsa20Poly1305::new(Key::from_slice(&box_key))
            .encrypt(&nonce, der.as_bytes())
            .unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let json = serde_json::json!({
            "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(&salt)},
            "cipher": {"name": "nacl/secretbox", "nonce": b64(&nonce)},
            "ciphertext": b64(&sealed),
        });
        p256::pkcs8::der::pem::encode_string(
            SIGSTORE_LABEL,
            p256::pkcs8::LineEnding::LF,
            json.to_string().as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn decrypts_with_the_right_password_only() {
        let text = cosign_key("s3cret");
        let file = Path::new("cosign.key");
        let der = decrypt(file, &text, &Secret::new("s3cret"))
            .unwrap()
            .unwrap();
        assert!(der.starts_with(&[0x30]), "PKCS#8 DER");
        assert!(
            decrypt(file, &text, &Secret::new("wrong"))
                .unwrap()
                .is_none()
        );
        let e = decrypt(file, "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nbm90IGEga2V5\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n", &Secret::new("x")).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("not a readable cosign key"), "{e}");
    }
}
