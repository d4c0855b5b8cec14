//! Talking to a registry: signing in (oci-client's tokens for pull and push, the registry's
//! bearer challenge for delete, basic auth or an identity token otherwise), sending requests,
//! retrying them under the run's [`crate::transport`] policy and wording what failed — with
//! the secret scrubbed out ([`Credentials::redact`]).
//!
//! A failed attempt is a [`crate::transport::Failure`] like every sink's ([`super::failure`]
//! reads one from what the registry or the connection said).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;

use anyhow::{Result, anyhow};
use oci_client::RegistryOperation;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{RequestBuilder, Response, StatusCode};

use super::RegistrySink;
use super::failure::{Failed, looks_like_plain_http};
use crate::publish::credentials::{Auth, Credentials};
use crate::transport::Kind;

impl RegistrySink {
    /// The token of the last sign-in for `operation`, signing in if there was none.
    async fn token(&self, operation: RegistryOperation) -> Result<Option<String>, Failed> {
        if let Some(token) = &self.tokens.lock().await[slot(operation)] {
            return Ok(token.clone());
        }
        self.renew_token(operation, None).await
    }

    /// Signs in for `operation` again and keeps what it gives. With `used` (the token a
    /// request was refused with), a token another request renewed since is taken instead.
    pub(super) async fn renew_token(
        &self,
        operation: RegistryOperation,
        used: Option<&Option<String>>,
    ) -> Result<Option<String>, Failed> {
        let mut tokens = self.tokens.lock().await;
        let slot = &mut tokens[slot(operation)];
        if let (Some(cached), Some(used)) = (&*slot, used)
            && cached != used
        {
            return Ok(cached.clone());
        }
        let token = self
            .client
            .auth(&self.base, &self.auth, operation)
            .await
            .map_err(|e| Failed::oci(&e))?;
        *slot = Some(token.clone());
        Ok(token)
    }

    /// Sends the request `build` makes, authorized for `operation`; after a 401 (an expired
    /// token), signs in again once and sends a new one.
    pub(super) async fn send(
        &self,
        operation: RegistryOperation,
        build: impl Fn() -> Result<RequestBuilder, Failed>,
    ) -> Result<Response, Failed> {
        let token = self.token(operation).await?;
        let response = authorize(build()?, token.as_deref(), &self.credentials)
            .send()
            .await
            .map_err(|e| Failed::transport(&e))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let token = self.renew_token(operation, Some(&token)).await?;
        authorize(build()?, token.as_deref(), &self.credentials)
            .send()
            .await
            .map_err(|e| Failed::transport(&e))
    }

    /// Sends the request `build` makes with the `delete` action's authorization: the token a
    /// DELETE got before, else the credentials as they are. oci-client cannot sign in for
    /// deleting, so a 401 with a bearer challenge is answered here: a token from the
    /// challenge's realm, kept for the next DELETE, and the request sent again.
    pub(super) async fn send_for_delete(
        &self,
        build: impl Fn() -> Result<RequestBuilder, Failed>,
    ) -> Result<Response, Failed> {
        let cached = self.delete_token.lock().await.clone();
        let first = authorize(build()?, cached.as_deref(), &self.credentials)
            .send()
            .await
            .map_err(|e| Failed::transport(&e))?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let challenge = first
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_bearer_challenge);
        let Some(challenge) = challenge else {
            return Ok(first);
        };
        let default_scope = format!("repository:{}:delete", self.repository);
        let Some(token) = self.challenge_token(&challenge, default_scope).await? else {
            // The token service refused: the 401 speaks for itself.
            return Ok(first);
        };
        *self.delete_token.lock().await = Some(token.clone());
        authorize(build()?, Some(&token), &self.credentials)
            .send()
            .await
            .map_err(|e| Failed::transport(&e))
    }

    /// A token from a bearer challenge's realm for its scope (`default_scope` when it names
    /// none); `None` when the token service refuses.
    async fn challenge_token(
        &self,
        challenge: &BTreeMap<String, String>,
        default_scope: String,
    ) -> Result<Option<String>, Failed> {
        let Some(realm) = challenge.get("realm") else {
            return Ok(None);
        };
        let scope = challenge.get("scope").cloned().unwrap_or(default_scope);
        let mut query = vec![("scope", scope)];
        if let Some(service) = challenge.get("service") {
            query.push(("service", service.clone()));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Auth::Basic(user, password) = &self.credentials.auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request.send().await.map_err(|e| Failed::transport(&e))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Ok(body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .map(str::to_string))
    }

    /// Runs `op` until it succeeds, fails for good, or the retry policy's attempts or total
    /// time are spent; waits what the answer's `Retry-After` asks, else the policy's backoff.
    pub(super) async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failed>>,
    {
        let label = format!("{}: {what}", self.host);
        let policy = crate::transport::policy();
        let result = crate::transport::run(&policy, &self.retries, &label, || {
            let attempt = op();
            async move {
                attempt.await.map_err(|mut failed| {
                    // Redacted before it reaches a log line.
                    failed.detail = self.credentials.redact(&failed.detail);
                    failed
                })
            }
        })
        .await;
        result.map_err(|gave_up| self.failure(what, &gave_up.last, gave_up.attempts))
    }

    /// Requests retried so far (transient faults ridden out), for the report.
    pub fn retry_count(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// [`RegistrySink::retrying`] for an oci-client call.
    pub(super) async fn with_retries<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = oci_client::errors::Result<T>>,
    {
        self.retrying(what, || {
            let attempt = op();
            async move { attempt.await.map_err(|e| Failed::oci(&e)) }
        })
        .await
    }

    /// The final error of `what`: names the registry, the object and the last status.
    fn failure(&self, what: &str, failed: &Failed, attempts: u32) -> anyhow::Error {
        let detail = self.credentials.redact(&failed.detail);
        let host = &self.host;
        if failed.kind == Kind::Auth {
            let fix = self.auth_fix();
            return anyhow!(
                "authentication failed at registry {host}: {what} was refused ({detail}); {fix}"
            );
        }
        let mut message = if attempts > 1 {
            format!(
                "registry {host}: {what} failed after {attempts} attempts; last error: {detail}"
            )
        } else {
            format!("registry {host}: {what} failed: {detail}")
        };
        if !self.insecure && failed.status.is_none() && looks_like_plain_http(&detail) {
            message.push_str(
                "; if this registry speaks plain HTTP, add ?insecure=true to the target URL",
            );
        }
        anyhow!(message)
    }

    /// What to do about refused credentials.
    pub(super) fn auth_fix(&self) -> String {
        let host = &self.host;
        if self.credentials.is_anonymous() {
            return format!(
                "no credentials were found for {host}: give --registry-user USER --registry-password-stdin, or run `docker login {host}`"
            );
        }
        format!(
            "check the credentials from {} (or `docker login {host}`) and that they grant access to {}",
            self.credentials.source, self.repository
        )
    }
}

/// Adds the bearer `token` sign-in gave, or else the credentials as they are (basic auth,
/// an identity token, or nothing when anonymous).
fn authorize(
    request: RequestBuilder,
    token: Option<&str>,
    credentials: &Credentials,
) -> RequestBuilder {
    match (token, &credentials.auth) {
        (Some(token), _) => request.bearer_auth(token),
        (None, Auth::Basic(user, password)) => request.basic_auth(user, Some(password.expose())),
        (None, Auth::Token(token)) => request.bearer_auth(token.expose()),
        (None, Auth::Anonymous) => request,
    }
}

/// The index of `operation` in [`RegistrySink::tokens`].
fn slot(operation: RegistryOperation) -> usize {
    match operation {
        RegistryOperation::Pull => 0,
        RegistryOperation::Push => 1,
    }
}

/// The parameters of a `Bearer realm="…",service="…",scope="…"` challenge.
fn parse_bearer_challenge(header: &str) -> Option<BTreeMap<String, String>> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, r)| (v, r)),
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start_matches([',', ' ']);
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::credentials::Secret;
    use crate::publish::registry::failure::status_detail;
    use crate::publish::registry::failure::tests::server_error;
    use crate::target::RegistryTarget;

    #[test]
    fn failures_name_registry_object_and_status_without_secrets() {
        let target = RegistryTarget {
            host: "reg.example.org".into(),
            repository: "a/b".into(),
            tag: None,
            insecure: false,
        };
        let credentials = Credentials {
            auth: Auth::Basic("u".into(), Secret::new("hunter22")),
            source: "--registry-user u".into(),
        };
        let sink = RegistrySink::new(&target, credentials).unwrap();
        let e = Failed {
            kind: Kind::Transient,
            status: Some(503),
            detail: status_detail(503, "no hunter22 here"),
            retry_after: None,
        };
        let text = sink.failure("upload of blob sha256:ab", &e, 5).to_string();
        assert!(
            text.contains("reg.example.org") && text.contains("sha256:ab") && text.contains("503"),
            "{text}"
        );
        assert!(
            text.contains("after 5 attempts") && !text.contains("hunter22"),
            "{text}"
        );
        let auth = sink
            .failure("HEAD of blob x", &Failed::oci(&server_error(401)), 1)
            .to_string();
        assert!(
            auth.starts_with("authentication failed at registry reg.example.org"),
            "{auth}"
        );
        assert!(auth.contains("--registry-user u"), "{auth}");
        assert!(auth.contains("(status 401 Unauthorized"), "{auth}");
    }

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_bearer_challenge(r#"Bearer realm="https://auth.example.org/token",service="reg",scope="repository:a/b:delete,pull""#).unwrap();
        assert_eq!(c["realm"], "https://auth.example.org/token");
        assert_eq!(c["service"], "reg");
        assert_eq!(c["scope"], "repository:a/b:delete,pull");
        assert!(parse_bearer_challenge(r#"Basic realm="x""#).is_none());
        assert_eq!(
            parse_bearer_challenge("Bearer realm=x, service=y").unwrap()["service"],
            "y"
        );
    }
}
