//! The pages as a browser shows them: headless Chromium's DOM, links, checksums, screenshots.

use super::{HOSTILE, Released, every_link_answers, output_dir, unescape, well_formed};
use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::Nginx;
use common::fixtures::{self, SYSTEMS};

/// Runs headless Chromium with a throwaway profile.
fn chromium(args: &[String]) -> Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium");
    assert!(
        output.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The DOM Chromium builds from `url`.
fn dom(url: &str) -> String {
    let out = chromium(&["--dump-dom".to_string(), url.to_string()]);
    String::from_utf8(out.stdout).expect("DOM is UTF-8")
}

/// A PNG of `url` at `width`×`height` in `file`.
fn screenshot(url: &str, file: &Path, width: u32, height: u32) {
    chromium(&[
        format!("--screenshot={}", file.display()),
        format!("--window-size={width},{height}"),
        url.to_string(),
    ]);
    let png = std::fs::read(file).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", file.display());
}

/// The text between `start` and the next `end` in `text`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let rest = text.split_once(start).map_or("", |(_, r)| r);
    rest.split_once(end).map_or("", |(v, _)| v)
}

/// One platform row: platform, binary link, shown sha256.
struct Row {
    platform: String,
    href: String,
    sha: String,
}

fn rows(dom: &str) -> Vec<Row> {
    dom.split("<tr class=\"platform\"")
        .skip(1)
        .map(|chunk| Row {
            platform: between(chunk, "data-platform=\"", "\"").to_string(),
            href: unescape(between(chunk, "class=\"binary\" href=\"", "\"")),
            sha: between(chunk, "class=\"sha\">", "</td>").to_string(),
        })
        .collect()
}

/// Every platform of `version` has a row whose sha256 is the file's, and whose link serves
/// exactly those bytes.
fn rows_match(site: &Released, page: &str, dom: &str, version: &str) {
    let rows = rows(dom);
    assert_eq!(rows.len(), SYSTEMS.len(), "one row per platform on {page}");
    let base = url::Url::parse(page).expect("page URL");
    for system in SYSTEMS {
        let platform = fixtures::platform_string(system);
        let row = rows
            .iter()
            .find(|r| r.platform == platform)
            .unwrap_or_else(|| panic!("{page} has no row for {platform}"));
        let expected = &site.files[version][system];
        assert_eq!(
            row.sha,
            common::sha256_hex(expected),
            "{platform} on {page}"
        );
        let url = base.join(&row.href).expect("binary URL");
        let served = common::http_client()
            .get(url.as_str())
            .send()
            .and_then(|r| r.bytes())
            .expect("GET binary");
        assert_eq!(
            common::sha256_hex(&served),
            row.sha,
            "{url} is what the page says"
        );
    }
}

/// The versions a name page lists, in its order.
fn listed_versions(dom: &str) -> Vec<String> {
    dom.split("<li data-tag=\"")
        .skip(1)
        .filter_map(|r| r.split_once('"').map(|(t, _)| t.to_string()))
        .collect()
}

/// Garage's website (absolute links, `web=`) and nginx over the folder (relative links).
pub fn check_pages(site: &Released, nginx: &Nginx) {
    if common::require_program("chromium", "apt-get install chromium").is_none() {
        return;
    }
    let name_page = format!("{}/df-dist-v1/albatros/", site.web);
    let dom_text = dom(&name_page);
    assert!(
        dom_text.contains("<section id=\"release\" data-tag=\"1.0\">"),
        "1.0 is the latest stable: {dom_text}"
    );
    assert_eq!(listed_versions(&dom_text), ["1.0", "1.1.0-rc.1", "0.9"]);
    rows_match(site, &name_page, &dom_text, "1.0");
    every_link_answers(&name_page, &dom_text, None);
    assert!(
        dom_text.contains(&format!("minisign -Vm SHA256SUMS -P {}", site.public_key)),
        "the exact minisign command with the key"
    );
    assert!(dom_text.contains(&format!(
        "curl -fsSL {}/df-dist-v1/albatros/install.sh | sh",
        site.web
    )));
    hostile_description_is_text(&dom_text);
    let (status, headers, stored) = site.garage.web_get(&host(site), "/df-dist-v1/albatros/");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    well_formed(&stored);
    // Programs keep the name document without the slash.
    let (_, _, doc) = site.garage.web_get(&host(site), "/df-dist-v1/albatros");
    let doc: serde_json::Value = serde_json::from_slice(&doc).expect("name document");
    assert_eq!(doc["tags"], serde_json::json!(["1.1.0-rc.1", "1.0", "0.9"]));

    let tag_page = format!("{}/df-dist-v1/albatros/0.9/", site.web);
    let tag_dom = dom(&tag_page);
    rows_match(site, &tag_page, &tag_dom, "0.9");
    every_link_answers(&tag_page, &tag_dom, None);
    well_formed(
        &site
            .garage
            .web_get(&host(site), "/df-dist-v1/albatros/0.9/")
            .2,
    );

    let out = output_dir("release_writes_a_site_that_browsers_and_shells_use");
    screenshot(&name_page, &out.join("wide.png"), 1280, 1000);
    screenshot(&name_page, &out.join("narrow.png"), 390, 1400);
    println!("screenshots of {name_page}: {}", out.display());

    // The folder behind nginx: relative links, the same rows.
    let folder_page = format!("{}/df-dist-v1/albatros/", nginx.base_url());
    let folder_dom = dom(&folder_page);
    rows_match(site, &folder_page, &folder_dom, "1.0");
    every_link_answers(&folder_page, &folder_dom, None);
    let (_, headers, doc) = nginx.get("/df-dist-v1/albatros");
    assert_eq!(
        headers["content-type"],
        "application/json",
        "{}",
        nginx.error_log()
    );
    assert!(serde_json::from_slice::<serde_json::Value>(&doc).is_ok());
    let root = format!("{}/df-dist-v1/", nginx.base_url());
    let root_dom = dom(&root);
    assert!(
        root_dom.contains("<li data-name=\"albatros\">"),
        "{root_dom}"
    );
    every_link_answers(&root, &root_dom, None);
    well_formed(&nginx.get("/df-dist-v1/").2);
    let tag_dom = dom(&format!("{folder_page}1.1.0-rc.1/"));
    rows_match(
        site,
        &format!("{folder_page}1.1.0-rc.1/"),
        &tag_dom,
        "1.1.0-rc.1",
    );
}

/// `Host:` of the bucket `localhost` on Garage's website endpoint.
fn host(site: &Released) -> String {
    site.web.trim_start_matches("http://").to_string()
}

/// The description shows as text: no element came from it.
fn hostile_description_is_text(dom: &str) {
    assert!(!dom.contains("<script"), "a script element: {dom}");
    assert!(!dom.contains("<b>bold"), "a b element from the description");
    let shown = between(dom, "<p class=\"desc\">", "</p>");
    assert_eq!(unescape(shown), HOSTILE, "the description, as text");
}
