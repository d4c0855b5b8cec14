//! The download site (issue 21): pages and install.sh written by `alba release`, read by
//! headless Chromium from Garage's website endpoint and from a folder behind nginx with
//! alba's fragment, run by dash and busybox sh (install.sh), rewritten by rm and gc.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixtures::{self, FlakeFixture, SYSTEMS};
use common::{Garage, Nginx, alba, nix_available};

mod browser;
mod cost;
mod install;
mod lifecycle;

/// A description that would inject markup and break out of attributes if not escaped.
const HOSTILE: &str = r#"<script>alert("x")</script> "quoted" & 'single' <b>bold</b>"#;

/// The three versions released, oldest first: two stable, one prerelease.
const VERSIONS: [&str; 3] = ["0.9", "1.0", "1.1.0-rc.1"];

/// What the site test released: the Garage bucket `localhost` (website at
/// `http://localhost:<web port>`, its `web=`), a folder (no `web=`: relative links) and the
/// files of each version.
struct Released {
    garage: Garage,
    folder: PathBuf,
    web: String,
    public_key: String,
    /// version → system → binary bytes.
    files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    _work: tempfile::TempDir,
}

/// The fixture flake of one version, its binaries salted by the version, with `description`.
fn flake(dir: &Path, version: &str) -> BTreeMap<String, Vec<u8>> {
    let written = FlakeFixture::new("albatros", &SYSTEMS)
        .salt(version)
        .write(dir);
    let path = dir.join("flake.nix");
    let text = std::fs::read_to_string(&path).expect("flake.nix");
    let with = format!(
        "{{ name = \"albatros\"; description = {};",
        fixtures::nix_str(HOSTILE)
    );
    std::fs::write(&path, text.replacen("{ name = \"albatros\";", &with, 1)).expect("flake.nix");
    written
        .expected
        .into_iter()
        .map(|(system, files)| (system, files["albatros"].clone()))
        .collect()
}

/// Releases every version, signed, to Garage (with `web=`) and to a folder.
fn release_all() -> Option<Released> {
    if !nix_available() {
        return None;
    }
    common::require_program("minisign", "apt-get install minisign")?;
    let garage = Garage::try_start()?;
    garage.create_bucket("localhost");
    let work = tempfile::tempdir().expect("tempdir");
    let folder = work.path().join("dist");
    let web = format!("http://localhost:{}", garage.web_port);
    let bucket = format!("{}&web={web}", garage.s3_url("localhost"));
    let (public, secret) = common::minisign_key(work.path(), "alba");
    let mut files = BTreeMap::new();
    for version in VERSIONS {
        let dir = work.path().join(format!("flake-{version}"));
        files.insert(version.to_string(), flake(&dir, version));
        let flake_ref = format!("path:{}", dir.display());
        alba()
            .envs(garage.envs())
            .args([
                "--flake", &flake_ref, "release", version, "--only", "static",
            ])
            .args(["--target", &bucket, "--target"])
            .arg(format!("file:{}", folder.display()))
            .arg("--sign-key")
            .arg(&secret)
            .run_expect(0);
    }
    let public_text = std::fs::read_to_string(&public).expect("public key");
    let public_key = public_text.lines().nth(1).expect("key line").to_string();
    Some(Released {
        garage,
        folder,
        web,
        public_key,
        files,
        _work: work,
    })
}

/// One test releases the site and checks it every way: releasing is the slow part.
#[test]
fn release_writes_a_site_that_browsers_and_shells_use() {
    let Some(site) = release_all() else {
        return;
    };
    let Some(nginx) = Nginx::try_start(&site.folder.join(".alba/nginx.conf")) else {
        return;
    };
    browser::check_pages(&site, &nginx);
    install::check_install(&site);
}

/// Where a test keeps what a person would look at (screenshots), printed by the test.
fn output_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("site")
        .join(test);
    std::fs::create_dir_all(&dir).expect("output folder");
    dir
}

/// The `href` values of an HTML text, attribute-unescaped.
fn hrefs(html: &str) -> Vec<String> {
    html.split(" href=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(v, _)| unescape(v)))
        .collect()
}

/// Undoes the escapes alba and Chromium write in attributes and text.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// GETs every link of `html` (relative ones against `page`); panics naming the first that
/// does not answer 200.
fn every_link_answers(page: &str, html: &str, host: Option<&str>) {
    let base = url::Url::parse(page).expect("page URL");
    let links = hrefs(html);
    assert!(!links.is_empty(), "{page} has no links");
    for link in links {
        let url = base.join(&link).expect("link URL");
        let mut request = common::http_client().get(url.as_str());
        if let Some(host) = host {
            request = request.header(reqwest::header::HOST, host);
        }
        let status = request.send().map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200), "{url} (a link of {page})");
    }
}

/// Checks that `html` is well-formed: every element closed in order (void elements aside),
/// as Python's html.parser reads it.
fn well_formed(html: &[u8]) {
    let script = r#"
import sys
from html.parser import HTMLParser
VOID = {"meta", "link", "br", "hr", "img", "input", "wbr", "source", "area", "base", "col"}
class P(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []
        self.doctype = False
    def handle_decl(self, decl):
        self.doctype = decl.lower() == "doctype html"
    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        pass
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            sys.exit(f"</{tag}> closes {self.stack[-1:]}, line {self.getpos()[0]}")
        self.stack.pop()
p = P()
p.feed(sys.stdin.read())
p.close()
if p.stack:
    sys.exit(f"unclosed: {p.stack}")
if not p.doctype:
    sys.exit("no <!DOCTYPE html>")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(html)
        .expect("write html");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "not well-formed HTML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
