//! How a registry request failed: the registry's readings of a failed attempt (an
//! oci-client error, a request without an answer, an answer with an unexpected status and
//! the registry's error envelope) as the shared [`crate::transport::Failure`], and their
//! classification into transient, auth and fatal.

use std::time::{Duration, SystemTime};

use oci_client::errors::{OciDistributionError, OciErrorCode};
use reqwest::Response;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::{one_line, root_cause};
use crate::transport::{Failure, Kind, by_status};

/// One failed attempt of a registry request: the shared policy's failure (kind, status,
/// `Retry-After`, detail). Its detail is not yet redacted; [`super::RegistrySink::retrying`] does
/// that.
pub(super) type Failed = Failure;

impl Failed {
    /// A failure of an oci-client call.
    pub(super) fn oci(error: &OciDistributionError) -> Failed {
        let (kind, status) = classify(error);
        Failed {
            kind,
            status,
            detail: describe(error, status),
            retry_after: None,
        }
    }

    /// A request that got no answer (or could not be built).
    pub(super) fn transport(error: &reqwest::Error) -> Failed {
        // Building the request or following redirects fails the same way every time;
        // connection refused or reset, timeouts and bodies cut short are worth another try.
        let kind = if error.is_builder() || error.is_redirect() {
            Kind::Fatal
        } else {
            Kind::Transient
        };
        Failed {
            kind,
            status: None,
            detail: transport_detail(error),
            retry_after: None,
        }
    }

    /// An answer with an unexpected status.
    pub(super) async fn answer(response: Response) -> Failed {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let body = response.text().await.unwrap_or_default();
        Failed {
            kind: by_status(status),
            status: Some(status),
            detail: status_detail(status, &body),
            retry_after,
        }
    }
}

/// The wait a `Retry-After` header asks for (delta-seconds or an HTTP-date, relative to
/// `now`), capped by the retry policy; `None` without a readable one.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    crate::transport::retry_after(value, now)
}

/// The kind of an oci-client error and the HTTP status behind it, when known.
fn classify(error: &OciDistributionError) -> (Kind, Option<u16>) {
    match error {
        OciDistributionError::RequestError(e) => match e.status() {
            Some(status) => (by_status(status.as_u16()), Some(status.as_u16())),
            // Building the request or following redirects fails the same way every time.
            None if e.is_builder() || e.is_redirect() => (Kind::Fatal, None),
            // Connection refused or reset, timeouts, a body cut short.
            None => (Kind::Transient, None),
        },
        OciDistributionError::ServerError { code, .. } => (by_status(*code), Some(*code)),
        OciDistributionError::UnauthorizedError { .. } => (Kind::Auth, Some(401)),
        OciDistributionError::AuthenticationFailure(_) => (Kind::Auth, None),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                (Kind::Auth, None)
            } else if codes.contains(&&OciErrorCode::Toomanyrequests) {
                (Kind::Transient, Some(429))
            } else {
                (Kind::Fatal, None)
            }
        }
        _ => (Kind::Fatal, None),
    }
}

/// True when the error says the manifest, blob or repository does not exist.
pub(super) fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RequestError(e) => e.status().is_some_and(|s| s.as_u16() == 404),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => {
            !envelope.errors.is_empty()
                && envelope.errors.iter().all(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                })
        }
        _ => false,
    }
}

/// A short description of an error: the status and the registry's words, or the root cause
/// of a connection failure. URLs are left out (upload URLs carry long session states).
fn describe(error: &OciDistributionError, status: Option<u16>) -> String {
    let status_text = status.map(|s| format!("status {s}{}", reason(s)));
    let text = match error {
        OciDistributionError::RequestError(e) => match &status_text {
            Some(_) => String::new(),
            None => transport_detail(e),
        },
        OciDistributionError::ServerError { message, .. } => one_line(message),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .map(|e| format!("{:?}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        OciDistributionError::UnauthorizedError { .. } => String::new(),
        OciDistributionError::AuthenticationFailure(reason) => {
            format!("the token service said: {}", one_line(reason))
        }
        other => one_line(&other.to_string()),
    };
    match (status_text, text.is_empty()) {
        (Some(s), true) => s,
        (Some(s), false) => format!("{s}: {text}"),
        (None, _) => text,
    }
}

/// What went wrong with a request that got no answer: the root cause of the failure.
fn transport_detail(error: &reqwest::Error) -> String {
    let cause = root_cause(error);
    if error.is_connect() {
        format!("cannot connect: {cause}")
    } else if error.is_timeout() {
        format!("timed out: {cause}")
    } else {
        format!("connection failed: {cause}")
    }
}

/// `status 503 Service Unavailable`, then what the registry said in its body, if anything:
/// the codes and messages of an OCI error envelope, or the text on one line.
pub(super) fn status_detail(status: u16, body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let words = match serde_json::from_str::<Envelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => envelope
            .errors
            .iter()
            .map(|e| one_line(&format!("{}: {}", e.code, e.message)))
            .collect::<Vec<_>>()
            .join("; "),
        _ => one_line(body),
    };
    let status_text = format!("status {status}{}", reason(status));
    if words.is_empty() {
        status_text
    } else {
        format!("{status_text}: {words}")
    }
}

/// ` Unauthorized` for 401 and friends, empty for statuses without a well-known name here.
fn reason(status: u16) -> &'static str {
    match status {
        400 => " Bad Request",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        405 => " Method Not Allowed",
        413 => " Payload Too Large",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    }
}

/// True when a TLS failure looks like an HTTPS request to a plain-HTTP server.
pub(super) fn looks_like_plain_http(detail: &str) -> bool {
    [
        "InvalidContentType",
        "corrupt message",
        "wrong version number",
    ]
    .iter()
    .any(|s| detail.contains(s))
}

#[cfg(test)]
pub(in crate::publish::registry) mod tests {
    use super::*;

    pub(in crate::publish::registry) fn server_error(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://h/v2/x/blobs/uploads/?_state=abc".into(),
            message: "busy".into(),
        }
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(classify(&server_error(503)), (Kind::Transient, Some(503)));
        assert_eq!(classify(&server_error(429)), (Kind::Transient, Some(429)));
        assert_eq!(classify(&server_error(401)), (Kind::Auth, Some(401)));
        assert_eq!(classify(&server_error(400)), (Kind::Fatal, Some(400)));
        assert_eq!(
            classify(&OciDistributionError::UnauthorizedError { url: "u".into() }).0,
            Kind::Auth
        );
        assert_eq!(
            classify(&OciDistributionError::SpecViolationError("x".into())).0,
            Kind::Fatal
        );
    }

    #[test]
    fn not_found_envelopes() {
        let envelope = |code: &str| {
            let json = format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#);
            OciDistributionError::RegistryError {
                envelope: serde_json::from_str(&json).unwrap(),
                url: "u".into(),
            }
        };
        assert!(is_not_found(&envelope("MANIFEST_UNKNOWN")));
        assert!(is_not_found(&envelope("NAME_UNKNOWN")));
        assert!(!is_not_found(&envelope("DENIED")));
        assert_eq!(classify(&envelope("DENIED")).0, Kind::Auth);
        assert_eq!(
            classify(&envelope("TOOMANYREQUESTS")),
            (Kind::Transient, Some(429))
        );
        assert!(is_not_found(&server_error(404)));
    }

    #[test]
    fn status_details_name_the_status_and_the_registry_words() {
        assert_eq!(status_detail(503, ""), "status 503 Service Unavailable");
        assert_eq!(
            status_detail(
                400,
                r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match"}]}"#
            ),
            "status 400 Bad Request: DIGEST_INVALID: provided digest did not match"
        );
        assert_eq!(
            status_detail(502, "<html>\n  bad\n gateway</html>"),
            "status 502 Bad Gateway: <html> bad gateway</html>"
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_dates_capped() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            headers
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(
            retry_after(&headers("2"), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers("3600"), now),
            Some(crate::transport::Policy::default().max_retry_after)
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers("Sat, 05 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::ZERO),
            "a date in the past: go now"
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
