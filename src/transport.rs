//! The one retry policy every network sink shares (S3 buckets and OCI registries).
//!
//! Faults are normal: a reverse proxy restarts (30 s of 502s), a store sheds load (503
//! `SlowDown`, 429 with `Retry-After`), a connection drops mid-request. A request that fails
//! transiently is tried again after a wait — the answer's `Retry-After` (delta-seconds or an
//! HTTP-date, at most [`Policy::max_retry_after`]) when it has one, else exponential backoff
//! with jitter — until it succeeds, fails for good, or the policy's attempts or total time
//! are spent. The defaults ride out a 30 s restart: 10 attempts within 3 minutes, waits
//! 0.5 s, 1 s, 2 s, … capped at 15 s (about 75 s of waiting in all).
//!
//! The policy is set once per run from the command line ([`configure`]) and read by every
//! sink ([`policy`]); each sink counts its own retries for the report.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Longest time one request may take, its retries and waits included.
    pub total: Duration,
    /// The first wait (doubling after each failure).
    pub backoff: Duration,
    /// The longest wait between attempts without a `Retry-After`.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; longer asks are cut to this.
    pub max_retry_after: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            attempts: 10,
            total: Duration::from_secs(180),
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// Sets the run's policy (once, from the command line; later calls are ignored).
pub fn configure(policy: Policy) {
    let _ = POLICY.set(policy);
}

/// The run's policy ([`Policy::default`] unless [`configure`]d).
pub fn policy() -> Policy {
    POLICY.get().copied().unwrap_or_default()
}

/// How a failed attempt is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Worth another attempt: connection trouble, timeouts, 429, 5xx, `SlowDown`.
    Transient,
    /// The credentials were refused (401, 403).
    Auth,
    /// Anything else: trying again will not help.
    Fatal,
}

/// The kind of an HTTP error status.
pub fn by_status(status: u16) -> Kind {
    match status {
        408 | 429 | 500..=599 => Kind::Transient,
        401 | 403 => Kind::Auth,
        _ => Kind::Fatal,
    }
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Whether to try again.
    pub kind: Kind,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The answer's `Retry-After`, already capped.
    pub retry_after: Option<Duration>,
    /// What went wrong, on one line.
    pub detail: String,
}

impl Failure {
    /// A failure that will not get better by trying again.
    pub fn fatal(detail: impl Into<String>) -> Failure {
        Failure {
            kind: Kind::Fatal,
            status: None,
            retry_after: None,
            detail: detail.into(),
        }
    }

    /// A failure worth another attempt (no answer, or an answer cut short).
    pub fn transient(detail: impl Into<String>) -> Failure {
        Failure {
            kind: Kind::Transient,
            ..Failure::fatal(detail)
        }
    }
}

/// The last failure of a request and how many attempts it took.
#[derive(Debug, Clone)]
pub struct GaveUp {
    /// The last attempt's failure.
    pub last: Failure,
    /// Attempts made.
    pub attempts: u32,
}

impl GaveUp {
    /// `failed after 4 attempts; last error: …`, or the one error for a single attempt.
    pub fn summary(&self) -> String {
        if self.attempts > 1 {
            format!(
                "failed after {} attempts; last error: {}",
                self.attempts, self.last.detail
            )
        } else {
            format!("failed: {}", self.last.detail)
        }
    }
}

/// Runs `op` under `policy` until it succeeds or fails for good; every retry is counted in
/// `retries`. `what` names the request in debug logs.
pub async fn run<T, F, Fut>(
    policy: &Policy,
    retries: &AtomicU64,
    what: &str,
    mut op: F,
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let failed = match op().await {
            Ok(value) => return Ok(value),
            Err(failed) => failed,
        };
        let wait = failed
            .retry_after
            .map(|w| w.min(policy.max_retry_after))
            .unwrap_or_else(|| backoff(policy, attempt, failed.status));
        let out_of_time = started.elapsed() + wait > policy.total;
        if failed.kind != Kind::Transient || attempt >= policy.attempts.max(1) || out_of_time {
            return Err(GaveUp {
                last: failed,
                attempts: attempt,
            });
        }
        tracing::debug!("{what} failed ({}), retrying in {wait:?}", failed.detail);
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// The wait before attempt `attempt + 1` without a `Retry-After`: exponential from the
/// policy's first wait (4 times that after a 429), capped, with the upper half jittered so
/// concurrent uploads do not retry in lockstep.
pub fn backoff(policy: &Policy, attempt: u32, status: Option<u16>) -> Duration {
    let base = policy.backoff.as_millis() as u64 * if status == Some(429) { 4 } else { 1 };
    let full = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(policy.max_backoff.as_millis() as u64);
    Duration::from_millis(full / 2 + jitter(full / 2 + 1))
}

/// A pseudo-random number below `bound`, from the clock and a counter (no RNG crate needed
/// for spreading retries).
pub fn jitter(bound: u64) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 finalizer: spreads nearby inputs over the whole range.
    let mut x = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) % bound.max(1)
}

/// The wait a `Retry-After` value asks for (delta-seconds or an HTTP-date, relative to
/// `now`), at most the policy's cap; `None` when it cannot be read.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(parse_http_date(value)?);
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(policy().max_retry_after))
}

/// Seconds since the epoch of an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, the IMF-fixdate
/// servers send, which is RFC 2822's date form).
fn parse_http_date(text: &str) -> Option<u64> {
    use time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(text, &Rfc2822).ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

/// Parses a duration as the command line takes it: `90` (a bare number is seconds), or
/// humantime's forms: `500ms`, `30s`, `5m`, `1h`, `2d`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|e| format!("{text:?}: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (e.g. 30s, 5m, 1h): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Policy {
        Policy {
            attempts: 4,
            total: Duration::from_secs(5),
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            max_retry_after: Duration::from_millis(5),
        }
    }

    #[test]
    fn backoff_grows_jittered_and_bounded() {
        let policy = Policy::default();
        let mut last_cap = 0;
        for attempt in 1..8 {
            let wait = backoff(&policy, attempt, Some(503)).as_millis() as u64;
            let cap = (500u64 << (attempt - 1)).min(15_000);
            assert!(wait >= cap / 2 && wait <= cap, "{attempt}: {wait} of {cap}");
            assert!(cap >= last_cap);
            last_cap = cap;
        }
        assert!(backoff(&policy, 1, Some(429)) >= Duration::from_secs(1));
        assert!(backoff(&policy, 40, None) <= Duration::from_secs(15));
    }

    #[test]
    fn default_policy_rides_out_a_30_second_restart() {
        let policy = Policy::default();
        // The least the jitter can make of the waits before the last attempt.
        let least: u64 = (1..policy.attempts)
            .map(|a| {
                let full = (500u64 << (a - 1).min(16)).min(15_000);
                full / 2
            })
            .sum();
        assert!(least >= 30_000, "{least} ms");
        assert!(policy.total >= Duration::from_millis(least * 2));
    }

    #[test]
    fn retry_after_takes_seconds_or_dates_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after("3600", now),
            Some(Policy::default().max_retry_after)
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_duration("3 weeks"),
            Ok(Duration::from_secs(21 * 86_400))
        );
        assert!(parse_duration("3 fortnights").is_err());
    }

    #[tokio::test]
    async fn retries_transient_failures_then_gives_up_naming_the_attempts() {
        let retries = AtomicU64::new(0);
        let mut calls = 0;
        let result = run(&fast(), &retries, "x", || {
            calls += 1;
            let ok = calls >= 3;
            async move {
                if ok {
                    Ok(7)
                } else {
                    Err(Failure::transient("reset"))
                }
            }
        })
        .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(retries.load(Ordering::Relaxed), 2);
        let gave_up = run(&fast(), &retries, "x", || async {
            Err::<(), _>(Failure::transient("status 503"))
        })
        .await
        .unwrap_err();
        assert_eq!(gave_up.attempts, 4);
        assert!(
            gave_up
                .summary()
                .contains("after 4 attempts; last error: status 503")
        );
        let fatal = run(&fast(), &retries, "x", || async {
            Err::<(), _>(Failure::fatal("status 400"))
        })
        .await
        .unwrap_err();
        assert_eq!(fatal.attempts, 1);
    }
}
