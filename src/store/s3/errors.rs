//! What a failed S3 request was: a [`Failure`] classified for the retry policy (by HTTP
//! status first, then the S3 error code, then the kind of connection trouble), and the final
//! message, with the fix, once the policy gives up.

use anyhow::anyhow;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::time::SystemTime;

use super::S3Store;
use crate::transport::{self, Failure, GaveUp, Kind};

/// True when the failure is a connection that could not be made (refused, no such host).
pub(super) fn is_refused(failed: &Failure) -> bool {
    failed.status.is_none()
        && [
            "refused",
            "dns error",
            "failed to lookup",
            "Name or service not known",
        ]
        .iter()
        .any(|s| failed.detail.contains(s))
}

type SdkFailure<E> = SdkError<E, aws_sdk_s3::config::http::HttpResponse>;

impl S3Store {
    /// The error a request ends with once the policy gives up: the bucket, the object, the
    /// attempts, the last error and the fix.
    pub(super) fn gave_up(&self, what: &str, gave_up: &GaveUp) -> anyhow::Error {
        let last = &gave_up.last;
        let hint = match (last.kind, last.status) {
            (Kind::Auth, _) => {
                "access denied: check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or profile= in the URL) and the key's rights on the bucket"
            }
            (_, Some(404)) => "the bucket does not exist: create it or fix the bucket name",
            _ if last.detail.contains("no providers in chain")
                || last.detail.contains("credentials") =>
            {
                "no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / profile= in the URL"
            }
            _ if is_refused(last) => {
                "could not reach the endpoint: check endpoint= in the URL and that the service is running"
            }
            (Kind::Transient, None) => {
                "could not reach the endpoint: check endpoint= in the URL and that the service is running"
            }
            (Kind::Transient, Some(_)) => {
                "the store kept failing: try again later, or give more --retries / --retry-time"
            }
            _ => "the store refused the request",
        };
        anyhow!(
            "{what} on {}: {}\n  {hint}",
            self.where_(),
            gave_up.summary()
        )
    }
}

/// Classifies one failed SDK call: by HTTP status when there was an answer (whatever its
/// body: XML, HTML or nothing), by the S3 error code (`SlowDown`), else by the kind of
/// connection trouble.
pub(super) fn failure<E>(err: &SdkFailure<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = short(&DisplayErrorContext(err).to_string());
    let raw = err.raw_response();
    let status = raw.map(|r| r.status().as_u16());
    let retry_after = raw
        .and_then(|r| r.headers().get("retry-after"))
        .and_then(|v| transport::retry_after(v, SystemTime::now()));
    let code = err.as_service_error().and_then(|e| e.code());
    let kind = match (err, status) {
        _ if matches!(
            code,
            Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
        ) =>
        {
            Kind::Transient
        }
        (SdkError::ConstructionFailure(_), _) => Kind::Fatal,
        (SdkError::DispatchFailure(d), _) if d.is_user() => Kind::Fatal,
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => Kind::Transient,
        // An answer whose body was cut short or could not be read (a dropped connection).
        (SdkError::ResponseError(_), Some(200..=299)) => Kind::Transient,
        (_, Some(status)) => transport::by_status(status),
        (SdkError::ResponseError(_), None) => Kind::Transient,
        _ => Kind::Fatal,
    };
    // The store's own words: its error code and message, else (an HTML page from a proxy,
    // which the SDK cannot parse) the start of the body, else the SDK's description.
    let words = match err.as_service_error().and_then(|e| e.code()) {
        Some(code) => {
            let message = err.as_service_error().and_then(|e| e.message());
            Some(format!("{code}: {}", message.unwrap_or_default()))
        }
        None => raw
            .and_then(|r| r.body().bytes())
            .map(|b| crate::error::one_line(&String::from_utf8_lossy(b)))
            .filter(|b| !b.is_empty())
            .map(|b| {
                format!(
                    "{detail}; the answer: {}",
                    b.chars().take(160).collect::<String>()
                )
            }),
    };
    // Without an answer the SDK says "io error: client error"; the root cause says what
    // happened (connection refused, reset, no such host).
    let detail = match (words, status) {
        (Some(words), _) => words,
        (None, None) => format!("{detail}: {}", crate::error::root_cause(err)),
        (None, Some(_)) => detail,
    };
    let detail = match status {
        Some(s) => format!("HTTP {s}: {detail}"),
        None => detail,
    };
    Failure {
        kind,
        status,
        retry_after,
        detail,
    }
}

/// The SDK's error chain ends in a `Debug` dump of the raw response: keep the readable start.
fn short(detail: &str) -> String {
    crate::error::one_line(detail.split(" (").next().unwrap_or(detail))
}

/// An answer as "found" (`Some`), "not there" (a 404: `None`) or a failure to classify.
pub(super) fn found<T, E>(
    sent: std::result::Result<T, SdkFailure<E>>,
) -> std::result::Result<Option<T>, Failure>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match sent {
        Ok(out) => Ok(Some(out)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(failure(&e)),
    }
}

/// A response body that broke off: worth another attempt.
pub(super) fn cut_short(e: &(impl std::error::Error + 'static)) -> Failure {
    Failure::transient(format!("body cut short: {}", crate::error::root_cause(e)))
}

/// True when the SDK error is a 404 (HEAD answers with no body, GET with `NoSuchKey`).
fn is_not_found<E>(err: &SdkFailure<E>) -> bool {
    err.raw_response()
        .is_some_and(|r| r.status().as_u16() == 404)
}
