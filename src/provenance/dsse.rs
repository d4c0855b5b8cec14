//! DSSE envelopes (Dead Simple Signing Envelope v1, the in-toto attestation envelope):
//! `{"payloadType", "payload": base64, "signatures": [{"keyid", "sig": base64}]}`, the
//! signature made over `PAE(payloadType, payload)`:
//! `"DSSEv1" SP len(type) SP type SP len(payload) SP payload` (lengths in ASCII decimal).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};

/// The payload type of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The media type of a DSSE envelope (cosign's attestation layers).
pub const MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// What checks envelopes: an ECDSA P-256 public key (DER signatures over SHA-256).
pub trait EnvelopeVerifier: Send + Sync {
    /// True when `signature` is this key's valid signature of `message`.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool;
}

/// What signs envelopes: an ECDSA P-256 secret key.
pub trait EnvelopeKey: EnvelopeVerifier {
    /// The signature of `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}

impl EnvelopeVerifier for crate::sign::ecdsa::EcdsaKey {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        crate::sign::ecdsa::verify(&self.public(), message, signature)
    }
}

impl EnvelopeKey for crate::sign::ecdsa::EcdsaKey {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        crate::sign::ecdsa::EcdsaKey::sign(self, message)
    }
}

impl EnvelopeVerifier for p256::ecdsa::VerifyingKey {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        crate::sign::ecdsa::verify(self, message, signature)
    }
}

/// The pre-authentication encoding the signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The envelope of `statement`, signed by `key` (its bytes: one line of JSON).
pub fn seal(key: &dyn EnvelopeKey, statement: &[u8]) -> Bytes {
    let sig = key.sign(&pae(PAYLOAD_TYPE, statement));
    let envelope = json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": STANDARD.encode(statement),
        "signatures": [ { "keyid": "", "sig": STANDARD.encode(sig) } ],
    });
    Bytes::from(envelope.to_string())
}

/// Why an envelope does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// Not a DSSE envelope of an in-toto statement (the reason).
    Malformed(String),
    /// No signature of the envelope verifies with the key.
    Unsigned,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Malformed(why) => {
                write!(f, "not a DSSE envelope of an in-toto statement: {why}")
            }
            Broken::Unsigned => f.write_str("no signature verifies with the public key"),
        }
    }
}

/// The statement inside `envelope`, if one of its signatures verifies with `key`.
pub fn open(envelope: &[u8], key: &dyn EnvelopeVerifier) -> Result<Value, Broken> {
    let (payload, signatures) = parts(envelope)?;
    let message = pae(PAYLOAD_TYPE, &payload);
    if !signatures.iter().any(|sig| key.verifies(&message, sig)) {
        return Err(Broken::Unsigned);
    }
    serde_json::from_slice(&payload).map_err(|e| Broken::Malformed(format!("payload: {e}")))
}

/// The statement inside `envelope`, unverified (to report what it claims).
pub fn peek(envelope: &[u8]) -> Result<Value, Broken> {
    let (payload, _) = parts(envelope)?;
    serde_json::from_slice(&payload).map_err(|e| Broken::Malformed(format!("payload: {e}")))
}

fn parts(envelope: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), Broken> {
    let bad = |why: &str| Broken::Malformed(why.to_string());
    let doc: Value = serde_json::from_slice(envelope).map_err(|e| bad(&e.to_string()))?;
    if doc["payloadType"] != PAYLOAD_TYPE {
        return Err(bad("payloadType is not application/vnd.in-toto+json"));
    }
    let payload = doc["payload"]
        .as_str()
        .and_then(|p| STANDARD.decode(p).ok())
        .ok_or_else(|| bad("payload is not base64"))?;
    let signatures = doc["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| STANDARD.decode(s["sig"].as_str()?).ok())
        .collect();
    Ok((payload, signatures))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A stand-in key for envelope-shape tests: "signs" with a keyed hash. Real keys are
    /// ECDSA; the integration tests verify those with PyPI's `cryptography`.
    pub(crate) struct TestKey(pub u8);

    impl EnvelopeKey for TestKey {
        fn sign(&self, message: &[u8]) -> Vec<u8> {
            let mut h = Sha256::new();
            h.update([self.0]);
            h.update(message);
            h.finalize().to_vec()
        }
    }

    impl EnvelopeVerifier for TestKey {
        fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
            self.sign(message) == signature
        }
    }

    #[test]
    fn pae_is_the_spec_s_and_envelopes_open_with_their_key_only() {
        // The example of the DSSE spec (protocol.md).
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        let statement = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
        let sealed = seal(&TestKey(1), statement);
        let doc: Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(doc["payloadType"], PAYLOAD_TYPE);
        assert_eq!(doc["signatures"][0]["keyid"], "");
        assert_eq!(
            open(&sealed, &TestKey(1)).unwrap()["_type"],
            "https://in-toto.io/Statement/v1"
        );
        assert_eq!(open(&sealed, &TestKey(2)), Err(Broken::Unsigned));
        assert!(matches!(
            open(b"{}", &TestKey(1)),
            Err(Broken::Malformed(_))
        ));
        assert!(peek(&sealed).is_ok());
    }
}
