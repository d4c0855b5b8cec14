//! Target URLs: `s3://`, `file:` and `docker://`, parsed into a [`Target`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use anyhow::Result;

use crate::bail_input;

/// Where alba publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An S3 bucket (Garage, MinIO, AWS).
    S3(S3Target),
    /// A local folder laid out like a bucket.
    Folder(FolderTarget),
    /// An OCI registry reached through its HTTP API.
    Registry(RegistryTarget),
}

/// An S3 bucket, with the Go CDK URL parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Endpoint URL with scheme (`https://` unless given or `disableSSL=true`), `None` for AWS.
    pub endpoint: Option<String>,
    /// Region, used verbatim (Garage checks it).
    pub region: Option<String>,
    /// Path-style addressing (`s3ForcePathStyle=true`), what Garage needs.
    pub force_path_style: bool,
    /// AWS profile to read credentials from.
    pub profile: Option<String>,
    /// The bucket's public web address (`web=`), see [`Target::web`].
    pub web: Option<String>,
}

/// A local folder laid out like a bucket (`file:PATH[?web=URL]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderTarget {
    /// The folder.
    pub path: PathBuf,
    /// The public web address of the web server that serves the folder, see [`Target::web`].
    pub web: Option<String>,
}

/// An OCI registry repository, `docker://HOST/REPO[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTarget {
    /// Registry host with optional port (`docker.io` is Docker Hub).
    pub host: String,
    /// Repository path (`library/` added for one-segment Docker Hub names).
    pub repository: String,
    /// Tag from the URL, overriding `-t` and the release version.
    pub tag: Option<String>,
    /// Plain HTTP allowed (`localhost`, `127.*`, `[::1]` or `?insecure=true`).
    pub insecure: bool,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::S3(s) => {
                write!(f, "s3://{}", s.bucket)?;
                if !s.prefix.is_empty() {
                    write!(f, "/{}", s.prefix)?;
                }
                if let Some(e) = &s.endpoint {
                    write!(f, " at {e}")?;
                }
                Ok(())
            }
            Target::Folder(p) => write!(f, "folder {}", p.path.display()),
            Target::Registry(r) => write!(f, "docker://{}/{}", r.host, r.repository),
        }
    }
}

impl Target {
    /// The public web address of a bucket or folder target (`?web=http[s]://host[:port][/path]`,
    /// no trailing `/`): where people and pull clients reach the target's root, i.e. the key
    /// `K` is served at `<web>/K`. Signatures name it as the image reference, pages link with
    /// it. `None` for registries (their address is the target itself) and where not given.
    pub fn web(&self) -> Option<&str> {
        match self {
            Target::S3(s) => s.web.as_deref(),
            Target::Folder(f) => f.web.as_deref(),
            Target::Registry(_) => None,
        }
    }
}

/// True when `text` looks like a target URL rather than a folder path: a known scheme, or
/// any `scheme://` (so `ftp://x` is refused as an unknown scheme, not taken for a folder).
pub fn is_target_url(text: &str) -> bool {
    ["s3://", "docker://", "file:"]
        .iter()
        .any(|s| text.starts_with(s))
        || url_scheme(text).is_some()
}

/// The `scheme` of a `scheme://…` text (RFC 3986 scheme characters), if it has one.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// Refuses a registry where static binaries go (they live on buckets and folders).
pub fn holds_binaries(target: &Target) -> Result<()> {
    match target {
        Target::Registry(_) => Err(not_a_store(target)),
        _ => Ok(()),
    }
}

/// The input error for a registry given where a bucket or folder is needed.
pub fn not_a_store(target: &Target) -> anyhow::Error {
    crate::error::input(format!(
        "{target} is a registry; static binaries go to s3:// or file: targets"
    ))
}

/// Parses a target URL; every mistake is an input error that says how to write it.
pub fn parse(text: &str) -> Result<Target> {
    if let Some(rest) = text.strip_prefix("s3://") {
        return parse_s3(text, rest).map(Target::S3);
    }
    if let Some(rest) = text.strip_prefix("docker://") {
        return parse_docker(text, rest).map(Target::Registry);
    }
    if let Some(rest) = text.strip_prefix("file://") {
        if !rest.starts_with('/') {
            bail_input!(
                "target {text:?}: file:// needs an absolute path (file:///srv/dist); use file:REL/PATH for a relative folder"
            );
        }
        return parse_folder(text, rest).map(Target::Folder);
    }
    if let Some(rest) = text.strip_prefix("file:") {
        if rest.is_empty() || rest.starts_with('?') {
            bail_input!(
                "target {text:?}: no folder given; write file:REL/PATH or file:///ABS/PATH"
            );
        }
        return parse_folder(text, rest).map(Target::Folder);
    }
    if let Some(scheme) = url_scheme(text) {
        bail_input!(
            "target {text:?}: alba does not know the scheme {scheme}://; accepted are s3://BUCKET?endpoint=HOST&region=R&s3ForcePathStyle=true, file:PATH and docker://HOST/REPO"
        );
    }
    bail_input!(
        "target {text:?} is not a target URL; use s3://BUCKET?endpoint=HOST&region=R&s3ForcePathStyle=true, file:PATH or docker://HOST/REPO"
    )
}

fn parse_folder(text: &str, rest: &str) -> Result<FolderTarget> {
    let (path, query) = split_query(rest);
    let mut web = None;
    for (key, value) in query_pairs(text, query)? {
        match key.as_str() {
            "web" => web = Some(web_url(text, &value)?),
            _ => bail_input!("target {text:?}: unknown parameter {key:?}; known: web"),
        }
    }
    Ok(FolderTarget {
        path: PathBuf::from(path),
        web,
    })
}

/// Checks a `web=` address: http(s), a host, no credentials, query or fragment; returned
/// without a trailing `/`.
fn web_url(text: &str, web: &str) -> Result<String> {
    let parsed = url::Url::parse(web).ok();
    let ok = parsed.as_ref().is_some_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && u.query().is_none()
            && u.fragment().is_none()
    });
    if !ok {
        bail_input!(
            "target {text:?}: web={web:?} is not a public web address; write web=https://HOST[:PORT][/PATH] (no user, password or query)"
        );
    }
    Ok(web.trim_end_matches('/').to_string())
}

fn split_query(rest: &str) -> (&str, &str) {
    rest.split_once('?').unwrap_or((rest, ""))
}

fn query_pairs(text: &str, query: &str) -> Result<BTreeMap<String, String>> {
    let mut pairs = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if pairs.insert(k.to_string(), v.to_string()).is_some() {
            bail_input!("target {text:?}: parameter {k:?} is given twice");
        }
    }
    Ok(pairs)
}

fn parse_bool(text: &str, key: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail_input!("target {text:?}: {key}={value:?} must be true or false"),
    }
}

fn parse_s3(text: &str, rest: &str) -> Result<S3Target> {
    let (path, query) = split_query(rest);
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty()
        || !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
    {
        bail_input!(
            "target {text:?}: {bucket:?} is not a bucket name; write s3://BUCKET[/PREFIX]?endpoint=HOST&region=R"
        );
    }
    let mut target = S3Target {
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
        endpoint: None,
        region: None,
        force_path_style: false,
        profile: None,
        web: None,
    };
    let mut disable_ssl = false;
    for (key, value) in query_pairs(text, query)? {
        match key.as_str() {
            "endpoint" => target.endpoint = Some(value),
            "region" => target.region = Some(value),
            "s3ForcePathStyle" => target.force_path_style = parse_bool(text, &key, &value)?,
            "disableSSL" => disable_ssl = parse_bool(text, &key, &value)?,
            "profile" => target.profile = Some(value),
            "web" => target.web = Some(web_url(text, &value)?),
            "awssdk" => {}
            _ => bail_input!(
                "target {text:?}: unknown parameter {key:?}; known: endpoint, region, s3ForcePathStyle, disableSSL, profile, web"
            ),
        }
    }
    if let Some(endpoint) = &target.endpoint {
        target.endpoint = Some(endpoint_url(text, endpoint, disable_ssl)?);
    }
    Ok(target)
}

fn endpoint_url(text: &str, endpoint: &str, disable_ssl: bool) -> Result<String> {
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_string()
    } else if disable_ssl {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    };
    match url::Url::parse(&with_scheme) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(with_scheme.trim_end_matches('/').to_string())
        }
        _ => bail_input!(
            "target {text:?}: endpoint {endpoint:?} is not a host[:port] or http(s):// URL"
        ),
    }
}

fn parse_docker(text: &str, rest: &str) -> Result<RegistryTarget> {
    let (path, query) = split_query(rest);
    let Some((host, repo_tag)) = path.split_once('/') else {
        bail_input!(
            "target {text:?}: write docker://HOST/REPO[:TAG], e.g. docker://docker.io/dxflrs/albatros"
        );
    };
    let (repository, tag) = match repo_tag.rsplit_once(':') {
        Some((r, t)) => (r.to_string(), Some(t.to_string())),
        None => (repo_tag.to_string(), None),
    };
    if host.is_empty() || repository.is_empty() {
        bail_input!(
            "target {text:?}: write docker://HOST/REPO[:TAG], e.g. docker://docker.io/dxflrs/albatros"
        );
    }
    if let Some(tag) = &tag {
        crate::names::check_oci_tag(tag)?;
    }
    crate::names::check_repository(&repository)?;
    let mut insecure = is_loopback(host);
    for (key, value) in query_pairs(text, query)? {
        match key.as_str() {
            "insecure" => insecure = parse_bool(text, &key, &value)? || is_loopback(host),
            _ => bail_input!("target {text:?}: unknown parameter {key:?}; known: insecure"),
        }
    }
    let repository = if host == "docker.io" && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    Ok(RegistryTarget {
        host: host.to_string(),
        repository,
        tag,
        insecure,
    })
}

/// True for hosts that may be reached over plain HTTP without asking.
fn is_loopback(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default().to_string()
    };
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_s3_url() {
        let t = parse("s3://download.example.org?endpoint=garage.example.org&region=garage&s3ForcePathStyle=true").unwrap();
        let Target::S3(s) = t else { panic!("not s3") };
        assert_eq!(s.bucket, "download.example.org");
        assert_eq!(s.endpoint.as_deref(), Some("https://garage.example.org"));
        assert_eq!(s.region.as_deref(), Some("garage"));
        assert!(s.force_path_style);
        assert_eq!(
            t_web("s3://b?web=https://dl.example.org/"),
            Some("https://dl.example.org".into())
        );
    }

    fn t_web(text: &str) -> Option<String> {
        parse(text).unwrap().web().map(String::from)
    }

    #[test]
    fn http_endpoint_and_prefix() {
        let Target::S3(s) =
            parse("s3://b/some/prefix/?endpoint=http://127.0.0.1:3900&region=garage").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.prefix, "some/prefix");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        let Target::S3(s) = parse("s3://b?endpoint=h:1&disableSSL=true").unwrap() else {
            panic!()
        };
        assert_eq!(s.endpoint.as_deref(), Some("http://h:1"));
    }

    #[test]
    fn refuses_typos() {
        for bad in [
            "s3://b?endpont=x",
            "s3://?endpoint=x",
            "s3://b?s3ForcePathStyle=yes",
            "ftp://x",
            "file:",
            "file://rel",
            "docker://nohost",
            "docker://h/r:0.9+feat",
            "file:out?web=ftp://x",
            "file:out?web=https://u:p@h",
            "file:out?wbe=https://h",
            "s3://b?web=localhost:8080",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{bad}: {err}");
        }
    }

    #[test]
    fn docker_urls() {
        let Target::Registry(r) = parse("docker://docker.io/albatros:0.9").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref(), r.insecure),
            ("library/albatros", Some("0.9"), false)
        );
        let Target::Registry(r) = parse("docker://127.0.0.1:5000/a/b").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.tag, r.insecure),
            ("127.0.0.1:5000", "a/b", None, true)
        );
        let Target::Registry(r) = parse("docker://reg.example.org/a?insecure=true").unwrap() else {
            panic!()
        };
        assert!(r.insecure);
    }

    #[test]
    fn folders() {
        let folder = |path: &str, web: Option<&str>| {
            Target::Folder(FolderTarget {
                path: path.into(),
                web: web.map(String::from),
            })
        };
        assert_eq!(parse("file:out/dist").unwrap(), folder("out/dist", None));
        assert_eq!(
            parse("file:///srv/dist").unwrap(),
            folder("/srv/dist", None)
        );
        assert_eq!(
            parse("file:out?web=http://localhost:8080/").unwrap(),
            folder("out", Some("http://localhost:8080"))
        );
        assert!(is_target_url("file:x") && !is_target_url("df/"));
    }

    #[test]
    fn unknown_scheme_is_named() {
        assert!(is_target_url("ftp://x"));
        assert!(!is_target_url("df/"));
        assert!(!is_target_url("./a:b"));
        let e = parse("ftp://x").unwrap_err().to_string();
        assert!(
            e.contains("ftp://") && e.contains("s3://") && e.contains("docker://"),
            "{e}"
        );
    }
}
