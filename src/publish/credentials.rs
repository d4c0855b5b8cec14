//! Registry credentials: where alba finds them, in this order.
//!
//! 1. `--registry-user USER` with `--registry-password-stdin` (the password read from stdin
//!    once per run, never from argv);
//! 2. the Docker config, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: `auths`,
//!    `credHelpers` and `credsStore`, through the `docker_credential` crate (Docker Hub is
//!    looked up under its historical key `https://index.docker.io/v1/`);
//! 3. anonymous.
//!
//! A password never reaches a log line or an error message: [`Secret`] prints as `***`, and
//! errors name where credentials came from ([`Credentials::source`]), never what they are.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

use crate::bail_input;
use crate::error;

/// Docker Hub's key in `config.json` (what `docker login` writes for docker.io).
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The most a password read from stdin may be: more is surely not a password.
const MAX_STDIN_PASSWORD: u64 = 64 * 1024;

/// A password or token: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Credentials for one registry and a description of where they came from.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// What to send.
    pub auth: Auth,
    /// Where they came from, for messages: `--registry-user alice`, `/home/u/.docker/config.json`,
    /// `anonymous`. Never contains a secret.
    pub source: String,
}

/// What to authenticate with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    Anonymous,
    /// User name and password (HTTP basic, or exchanged for a bearer token).
    Basic(String, Secret),
    /// An identity token from the Docker config, used as a bearer token.
    Token(Secret),
}

impl Credentials {
    /// The oci-client form.
    pub fn registry_auth(&self) -> RegistryAuth {
        match &self.auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic(user, password) => {
                RegistryAuth::Basic(user.clone(), password.expose().to_string())
            }
            Auth::Token(token) => RegistryAuth::Bearer(token.expose().to_string()),
        }
    }

    /// The secret, if any, so messages built from registry answers can be scrubbed of it.
    pub fn secret(&self) -> Option<&str> {
        match &self.auth {
            Auth::Anonymous => None,
            Auth::Basic(_, s) | Auth::Token(s) => Some(s.expose()),
        }
    }

    /// True when no credentials are sent.
    pub fn is_anonymous(&self) -> bool {
        self.auth == Auth::Anonymous
    }

    /// `text` without the secret in it, for messages built from what a registry answered
    /// (registries may echo what they were sent).
    pub fn redact(&self, text: &str) -> String {
        match self.secret() {
            // Very short secrets would blank out ordinary words; they are not echoed whole anyway.
            Some(secret) if secret.len() >= 4 => text.replace(secret, "***"),
            _ => text.to_string(),
        }
    }
}

/// The credentials the command line gave: `--registry-user` and `--registry-password-stdin`.
#[derive(Debug, Clone, Default)]
pub struct CliCredentials {
    /// `--registry-user USER`.
    pub user: Option<String>,
    /// `--registry-password-stdin`.
    pub password_stdin: bool,
}

/// Finds the credentials for `host` (as in the `docker://` URL, e.g. `docker.io` or
/// `127.0.0.1:5000`) in the order of this module's documentation.
pub fn resolve(host: &str, cli: &CliCredentials) -> Result<Credentials> {
    if let Some(credentials) = from_cli(cli)? {
        return Ok(credentials);
    }
    resolve_from_config(host, docker_config_dir().as_deref())
}

/// The command-line credentials, reading the password from stdin (once per run).
fn from_cli(cli: &CliCredentials) -> Result<Option<Credentials>> {
    match (&cli.user, cli.password_stdin) {
        (None, false) => Ok(None),
        (None, true) => bail_input!("--registry-password-stdin needs --registry-user USER"),
        (Some(_), false) => bail_input!(
            "--registry-user needs --registry-password-stdin: pipe the password in, e.g. \
             `printenv REGISTRY_PASSWORD | alba --registry-user USER --registry-password-stdin …`"
        ),
        (Some(user), true) => {
            if user.is_empty() || user.contains(':') {
                bail_input!("--registry-user {user:?}: a user name is not empty and has no `:`");
            }
            let password = stdin_password()?;
            Ok(Some(Credentials {
                auth: Auth::Basic(user.clone(), password),
                source: format!("--registry-user {user}"),
            }))
        }
    }
}

/// The password on stdin, read to its end the first time and kept for later targets (stdin
/// can only be read once).
fn stdin_password() -> Result<Secret> {
    static READ: Mutex<Option<Secret>> = Mutex::new(None);
    let mut read = READ.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(secret) = read.as_ref() {
        return Ok(secret.clone());
    }
    let secret = parse_password(std::io::stdin().lock(), "--registry-password-stdin")?;
    *read = Some(secret.clone());
    Ok(secret)
}

/// A secret read from stdin for `flag` (e.g. `--sign-password-stdin`).
pub fn stdin_secret(flag: &str) -> Result<Secret> {
    parse_password(std::io::stdin().lock(), flag)
}

/// Reads a password: everything up to end of input, without the final line break.
fn parse_password(input: impl Read, flag: &str) -> Result<Secret> {
    let mut bytes = Vec::new();
    input
        .take(MAX_STDIN_PASSWORD + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error::input(format!("{flag}: cannot read stdin: {e}")))?;
    if bytes.len() as u64 > MAX_STDIN_PASSWORD {
        bail_input!("{flag}: stdin holds more than 64 KiB; pipe in the password alone");
    }
    let Ok(mut text) = String::from_utf8(bytes) else {
        bail_input!("{flag}: the password on stdin is not UTF-8");
    };
    // `echo "$PASSWORD" |` adds a line break that is not part of the password.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        bail_input!("{flag}: stdin is empty; pipe the password in");
    }
    Ok(Secret::new(text))
}

/// `$DOCKER_CONFIG`, else `~/.docker` (what the Docker CLI reads).
fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// The keys `host` may have in `config.json`, most specific first.
fn config_keys(host: &str) -> Vec<String> {
    match host {
        // `docker login` stores Docker Hub under its v1 URL; other tools use the bare names.
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec![
                DOCKER_HUB_KEY.to_string(),
                "docker.io".to_string(),
                "index.docker.io".to_string(),
            ]
        }
        _ => vec![host.to_string()],
    }
}

/// The credentials for `host` in `config_dir/config.json`, anonymous when it has none.
pub fn resolve_from_config(host: &str, config_dir: Option<&Path>) -> Result<Credentials> {
    let anonymous = Credentials {
        auth: Auth::Anonymous,
        source: "anonymous (no credentials configured)".into(),
    };
    let Some(path) = config_dir.map(|d| d.join("config.json")) else {
        return Ok(anonymous);
    };
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(anonymous),
        Err(e) => bail_input!("cannot read the Docker config {}: {e}", path.display()),
    };
    for key in config_keys(host) {
        match docker_credential::get_credential_from_reader(text.as_slice(), &key) {
            Ok(credential) => return Ok(from_docker(credential, &path, &key)),
            Err(CredentialRetrievalError::NoCredentialConfigured) => continue,
            // A credsStore holding nothing for this registry: the Docker CLI goes anonymous too.
            Err(CredentialRetrievalError::HelperFailure { stdout, .. })
                if stdout.contains("credentials not found") =>
            {
                continue;
            }
            Err(e) => return Err(config_error(e, &path, &key)),
        }
    }
    Ok(anonymous)
}

/// A Docker credential as [`Credentials`], naming the file and key it came from.
fn from_docker(credential: DockerCredential, path: &Path, key: &str) -> Credentials {
    let source = format!("{} ({key})", path.display());
    match credential {
        DockerCredential::UsernamePassword(user, password) => Credentials {
            auth: Auth::Basic(user, Secret::new(password)),
            source,
        },
        DockerCredential::IdentityToken(token) => Credentials {
            auth: Auth::Token(Secret::new(token)),
            source,
        },
    }
}

/// An input error for a Docker config problem. A failing helper's stdout is left out: it
/// may hold half a credential.
fn config_error(e: CredentialRetrievalError, path: &Path, key: &str) -> anyhow::Error {
    let shown = path.display();
    let why = match e {
        CredentialRetrievalError::HelperFailure { helper, stderr, .. } => {
            let stderr = stderr.lines().next().unwrap_or_default().trim().to_string();
            format!(
                "the credential helper `{helper}` failed ({stderr}); log in again, e.g. `docker login {key}`"
            )
        }
        CredentialRetrievalError::HelperCommunicationError => {
            "its credential helper could not be run; is docker-credential-<name> on PATH?"
                .to_string()
        }
        CredentialRetrievalError::MalformedHelperResponse => {
            "its credential helper answered something unreadable".to_string()
        }
        CredentialRetrievalError::ConfigReadError => "it is not valid JSON".to_string(),
        CredentialRetrievalError::CredentialDecodingError => {
            format!("the `auth` entry of {key:?} is not base64 of user:password")
        }
        CredentialRetrievalError::CredentialMismatchError => {
            format!("the `auth` entry of {key:?} disagrees with its username/password")
        }
        other => other.to_string(),
    };
    error::input(format!(
        "cannot use the Docker config {shown} for {key}: {why}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(dir: &Path, json: &str) {
        std::fs::write(dir.join("config.json"), json).unwrap();
    }

    #[test]
    fn password_from_stdin_loses_its_line_break_only() {
        assert_eq!(
            parse_password(&b"s3cret\n"[..], "--registry-password-stdin")
                .unwrap()
                .expose(),
            "s3cret"
        );
        assert_eq!(
            parse_password(&b"s3cret\r\n"[..], "--registry-password-stdin")
                .unwrap()
                .expose(),
            "s3cret"
        );
        assert_eq!(
            parse_password(&b" a b \n\n"[..], "--registry-password-stdin")
                .unwrap()
                .expose(),
            " a b \n"
        );
        assert!(parse_password(&b"\n"[..], "--registry-password-stdin").is_err());
        let long = vec![b'x'; MAX_STDIN_PASSWORD as usize + 1];
        assert!(parse_password(long.as_slice(), "--registry-password-stdin").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials {
            auth: Auth::Basic("u".into(), Secret::new("hunter2")),
            source: "x".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.secret(), Some("hunter2"));
        assert_eq!(c.redact("echo hunter2!"), "echo ***!");
        let short = Credentials {
            auth: Auth::Token(Secret::new("ab")),
            source: "x".into(),
        };
        assert_eq!(short.redact("a tab"), "a tab");
    }

    #[test]
    fn cli_flags_must_come_together() {
        let only_stdin = CliCredentials {
            user: None,
            password_stdin: true,
        };
        let only_user = CliCredentials {
            user: Some("u".into()),
            password_stdin: false,
        };
        for cli in [only_stdin, only_user] {
            assert_eq!(error::exit_code(&from_cli(&cli).unwrap_err()), 2);
        }
        assert!(from_cli(&CliCredentials::default()).unwrap().is_none());
    }

    #[test]
    fn config_auths_by_host_and_port() {
        let dir = tempfile::tempdir().unwrap();
        // base64("alice:pw:with:colons")
        write_config(
            dir.path(),
            r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6cHc6d2l0aDpjb2xvbnM="}}}"#,
        );
        let c = resolve_from_config("127.0.0.1:5000", Some(dir.path())).unwrap();
        assert_eq!(
            c.auth,
            Auth::Basic("alice".into(), Secret::new("pw:with:colons"))
        );
        assert!(c.source.contains("config.json") && !c.source.contains("pw:with:colons"));
        // Another port is another registry.
        assert!(
            resolve_from_config("127.0.0.1:5001", Some(dir.path()))
                .unwrap()
                .is_anonymous()
        );
    }

    #[test]
    fn docker_hub_uses_the_v1_key() {
        let dir = tempfile::tempdir().unwrap();
        write_config(
            dir.path(),
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}"#,
        );
        let c = resolve_from_config("docker.io", Some(dir.path())).unwrap();
        assert_eq!(c.auth, Auth::Basic("bob".into(), Secret::new("pw")));
    }

    #[test]
    fn identity_tokens_and_missing_config() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            resolve_from_config("h", Some(dir.path()))
                .unwrap()
                .is_anonymous(),
            "no config.json"
        );
        assert!(
            resolve_from_config("h", None).unwrap().is_anonymous(),
            "no HOME"
        );
        write_config(dir.path(), r#"{"auths":{"h":{"identitytoken":"tok"}}}"#);
        assert_eq!(
            resolve_from_config("h", Some(dir.path())).unwrap().auth,
            Auth::Token(Secret::new("tok"))
        );
    }

    #[test]
    fn broken_configs_are_input_errors_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "{not json");
        let e = resolve_from_config("h", Some(dir.path())).unwrap_err();
        assert_eq!(error::exit_code(&e), 2);
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        write_config(
            dir.path(),
            r#"{"credHelpers":{"h":"alba-test-missing-helper"}}"#,
        );
        let e = resolve_from_config("h", Some(dir.path())).unwrap_err();
        assert_eq!(error::exit_code(&e), 2);
        assert!(e.to_string().contains("credential helper"), "{e}");
    }
}
