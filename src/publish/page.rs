//! The download pages of a df-dist-v1 name: plain HTML with inline CSS, no JavaScript.
//!
//! ```text
//! df-dist-v1/index.html               the names on this target
//! df-dist-v1/<name>/index.html        the name: newest stable release in full, every version
//! df-dist-v1/<name>/<tag>/index.html  one tag in full (written with the tag, gone with it)
//! ```
//! Every value (name, tag, description, paths, references) goes through [`esc`]; paths in
//! links are also percent-encoded. Without a public address (`web=`) links are relative to
//! the page, so the pages work wherever the target is served.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::df_dist::Flavor;
use super::layout::DfDistLayout;

/// An image published with a release, for its `docker pull` lines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRef {
    /// The pull reference without tag or digest (`registry.example.org/albatros`).
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// The image index digest.
    pub digest: String,
    /// Its platforms (`linux/amd64`).
    #[serde(default)]
    pub platforms: Vec<String>,
}

/// What a page reads: the tag document alba writes, its additions for pages included.
pub type PageTag = super::df_dist::TagDocument;

impl PageTag {
    /// Reads a tag document; `None` when it is not one.
    pub fn parse(bytes: &[u8]) -> Option<PageTag> {
        serde_json::from_slice(bytes).ok()
    }
}

/// How a version's tag is classified on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A version without a prerelease part (`0.9`, `v1.2.3`, `1.0+build`).
    Stable,
    /// A version with one (`1.0.0-rc.1`).
    Prerelease,
    /// Anything else (commit ids, branch names).
    Other,
}

/// The channel of `tag`, by the version rules of `gc` ([`super::lifecycle::looks_like_version`]).
pub fn channel(tag: &str) -> Channel {
    if !super::lifecycle::looks_like_version(tag) {
        return Channel::Other;
    }
    let version = tag.split('+').next().unwrap_or(tag);
    match version.contains('-') {
        true => Channel::Prerelease,
        false => Channel::Stable,
    }
}

/// The newest stable tag of a newest-first list.
pub fn latest_stable(newest_first: &[String]) -> Option<&str> {
    newest_first
        .iter()
        .map(String::as_str)
        .find(|t| channel(t) == Channel::Stable)
}

/// The order a name page lists versions in: the newest stable release, prereleases, then
/// every other tag, each group newest first.
pub fn page_order(newest_first: &[String]) -> Vec<String> {
    let latest = latest_stable(newest_first);
    let mut out: Vec<String> = latest.map(str::to_string).into_iter().collect();
    let rest = newest_first.iter().filter(|t| Some(t.as_str()) != latest);
    let (pre, other): (Vec<&String>, Vec<&String>) =
        rest.partition(|t| channel(t) == Channel::Prerelease);
    out.extend(pre.into_iter().chain(other).cloned());
    out
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters percent-encoded in a link path (`/` stays: it separates folders).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\'')
    .add(b'+');

/// A link to `path`, percent-encoded then escaped for an attribute.
fn href(prefix: &str, path: &str) -> String {
    esc(&format!("{prefix}{}", utf8_percent_encode(path, PATH)))
}

/// Where a page's links point.
#[derive(Debug, Clone)]
pub struct Site {
    /// The target's public address (`web=`), no trailing `/`.
    pub web: Option<String>,
    /// The name.
    pub name: String,
}

impl Site {
    /// The prefix of a tag's files, from the name page (`tag` folder) or the tag's own page.
    fn tag_prefix(&self, tag: &str, on_tag_page: bool) -> String {
        match (&self.web, on_tag_page) {
            (Some(web), _) => format!("{web}/{}/", DfDistLayout::new(&self.name).tag_key(tag)),
            (None, true) => String::new(),
            (None, false) => format!("{tag}/"),
        }
    }

    /// The URL of the name's install.sh, when the site's address is known.
    pub fn install_url(&self) -> Option<String> {
        let web = self.web.as_ref()?;
        Some(format!(
            "{web}/{}install.sh",
            DfDistLayout::new(&self.name).prefix()
        ))
    }

    /// The name page's address (for a root page), or its relative link.
    fn name_link(&self, name: &str) -> String {
        match &self.web {
            Some(web) => format!("{web}/{}", DfDistLayout::new(name).prefix()),
            None => format!("{name}/"),
        }
    }
}

const CSS: &str = "
:root{color-scheme:light dark;--bg:#fdfdfc;--fg:#1d1f21;--mute:#5c6166;--line:#d8dadd;--code:#f1f2f4;--link:#0b57d0}
@media (prefers-color-scheme:dark){:root{--bg:#15171a;--fg:#e6e7e9;--mute:#9aa0a6;--line:#33373c;--code:#22262b;--link:#8ab4f8}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:64rem;padding:1.5rem 1rem;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,sans-serif}
a{color:var(--link)}
h1{margin:.2rem 0;font-size:1.8rem}h2{margin-top:2rem;font-size:1.3rem;border-bottom:1px solid var(--line)}
.desc{color:var(--mute);margin-top:0}
code,pre{font:.9em ui-monospace,monospace;background:var(--code);border-radius:4px}
code{padding:.1em .3em}pre{padding:.6rem .8rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
pre code{padding:0;background:none}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--mute);font-weight:600}
.sha{font:.8em ui-monospace,monospace;word-break:break-all}
.badge{font-size:.75rem;padding:.05rem .4rem;border:1px solid var(--line);border-radius:1rem;color:var(--mute)}
ul.versions{padding-left:1.2rem}
@media (max-width:640px){
 thead{display:none}
 table,tbody,tr,td{display:block;width:100%}
 tr{border-bottom:1px solid var(--line);padding:.4rem 0}
 td{border:0;padding:.15rem 0}
 td::before{content:attr(data-label) \": \";color:var(--mute);font-weight:600}
}
";

/// The page around `body`.
fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"generator\" content=\"alba\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        esc(title)
    )
}

/// The name page: the newest stable release (`featured`, with its tag document) in full, then
/// every version linking to its own page.
pub fn name_page(site: &Site, tags: &[String], featured: Option<(&str, &PageTag)>) -> String {
    let mut body = String::new();
    let description = featured.and_then(|(_, doc)| doc.description.as_deref());
    header(&mut body, &site.name, description);
    install_section(&mut body, site);
    match featured {
        Some((tag, doc)) => release_section(&mut body, site, tag, doc, false),
        None => body.push_str("<p>No release is published under this name.</p>\n"),
    }
    let _ = writeln!(body, "<h2>All versions</h2>\n<ul class=\"versions\">");
    for tag in page_order(tags) {
        let badge = match channel(&tag) {
            Channel::Stable if Some(tag.as_str()) == latest_stable(tags) => {
                " <span class=\"badge\">latest stable</span>"
            }
            Channel::Prerelease => " <span class=\"badge\">prerelease</span>",
            Channel::Stable | Channel::Other => "",
        };
        let link = href(&site.tag_prefix(&tag, false), "");
        let _ = writeln!(
            body,
            "<li data-tag=\"{t}\"><a href=\"{link}\">{t}</a>{badge}</li>",
            t = esc(&tag)
        );
    }
    body.push_str("</ul>\n");
    footer(&mut body);
    document(&format!("{} downloads", site.name), &body)
}

/// One tag's own page, beside its files.
pub fn tag_page(site: &Site, tag: &str, doc: &PageTag) -> String {
    let mut body = String::new();
    header(&mut body, &site.name, doc.description.as_deref());
    let _ = writeln!(
        body,
        "<p><a href=\"../\">All versions of {}</a></p>",
        esc(&site.name)
    );
    release_section(&mut body, site, tag, doc, true);
    footer(&mut body);
    document(&format!("{} {tag}", site.name), &body)
}

/// The list of names on a target.
pub fn root_page(web: Option<&str>, names: &[String]) -> String {
    let mut body = String::from("<h1>Downloads</h1>\n<ul class=\"versions\">\n");
    for name in names {
        let site = Site {
            web: web.map(str::to_string),
            name: name.clone(),
        };
        let link = href(&site.name_link(name), "");
        let _ = writeln!(
            body,
            "<li data-name=\"{n}\"><a href=\"{link}\">{n}</a></li>",
            n = esc(name)
        );
    }
    body.push_str("</ul>\n");
    footer(&mut body);
    document("Downloads", &body)
}

/// The names a root page lists (its `data-name` attributes, which alba writes).
pub fn root_names(page: &str) -> Vec<String> {
    page.split("<li data-name=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_string()))
        .filter(|name| crate::names::check_name(name).is_ok())
        .collect()
}

fn header(body: &mut String, name: &str, description: Option<&str>) {
    let _ = writeln!(body, "<header>\n<h1>{}</h1>", esc(name));
    if let Some(d) = description.filter(|d| !d.trim().is_empty()) {
        let _ = writeln!(body, "<p class=\"desc\">{}</p>", esc(d));
    }
    body.push_str("</header>\n");
}

fn footer(body: &mut String) {
    body.push_str("<footer><p class=\"desc\">Published with alba.</p></footer>\n");
}

fn install_section(body: &mut String, site: &Site) {
    let line = match site.install_url() {
        Some(url) => format!("curl -fsSL {url} | sh"),
        None => {
            let base = "https://SITE";
            let prefix = DfDistLayout::new(&site.name).prefix();
            format!("curl -fsSL {base}/{prefix}install.sh | sh -s -- --base {base}")
        }
    };
    let _ = writeln!(
        body,
        "<h2>Install</h2>\n<pre><code>{}</code></pre>\n<p>Another version or folder: <code>sh -s -- --version X --to DIR</code>. The script checks <code>SHA256SUMS</code>, and its signature where <code>minisign</code> is installed (<a href=\"install.sh\">read it first</a>).</p>",
        esc(&line)
    );
}

/// A tag in full: platform rows, checksums, signature, provenance, images.
fn release_section(body: &mut String, site: &Site, tag: &str, doc: &PageTag, own: bool) {
    let prefix = site.tag_prefix(tag, own);
    let _ = writeln!(
        body,
        "<section id=\"release\" data-tag=\"{t}\">\n<h2>{name} {t}</h2>",
        t = esc(tag),
        name = esc(&site.name)
    );
    body.push_str("<table>\n<thead><tr><th>Platform</th><th>File</th><th>Size</th><th>SHA-256</th><th>Also</th></tr></thead>\n<tbody>\n");
    for flavor in &doc.flavors {
        flavor_rows(body, &prefix, flavor, doc.provenance.as_deref());
    }
    body.push_str("</tbody>\n</table>\n");
    checksums_section(body, &prefix, doc);
    images_section(body, &doc.images);
    body.push_str("</section>\n");
}

fn flavor_rows(body: &mut String, prefix: &str, flavor: &Flavor, provenance: Option<&str>) {
    let p = &flavor.platform;
    let platform = p.label();
    let dir = DfDistLayout::flavor_dir_of(&p.os, &p.architecture);
    for r in &flavor.resources {
        let file = r.path.rsplit('/').next().unwrap_or(&r.path);
        // indicatif's form, as the progress bars show sizes (planners do not reach the ui module).
        let size = r
            .size
            .map(|s| indicatif::HumanBytes(s).to_string())
            .unwrap_or_default();
        let sha = r.sha256.as_deref().unwrap_or_default();
        let mut also = Vec::new();
        if let Some(sbom) = &flavor.sbom {
            also.push(format!(
                "<a class=\"sbom\" href=\"{}\">SBOM</a>",
                href(prefix, sbom)
            ));
        }
        if let Some(prov) = provenance {
            also.push(format!(
                "<a class=\"provenance\" href=\"{}\">provenance</a>",
                href(prefix, prov)
            ));
        }
        let _ = writeln!(
            body,
            "<tr class=\"platform\" data-platform=\"{pl}\"><td data-label=\"Platform\">{pl}</td><td data-label=\"File\"><a class=\"binary\" href=\"{link}\">{f}</a></td><td data-label=\"Size\" data-bytes=\"{bytes}\">{size}</td><td data-label=\"SHA-256\" class=\"sha\">{sha}</td><td data-label=\"Also\">{also}</td></tr>",
            pl = esc(&platform),
            link = href(prefix, &format!("{dir}{}", r.path)),
            f = esc(file),
            bytes = r.size.unwrap_or(0),
            sha = esc(sha),
            also = also.join(" "),
        );
    }
}

fn checksums_section(body: &mut String, prefix: &str, doc: &PageTag) {
    let Some(sums) = &doc.checksums else {
        return;
    };
    let _ = write!(
        body,
        "<h3>Checksums</h3>\n<p><a class=\"checksums\" href=\"{}\">{}</a>",
        href(prefix, sums),
        esc(sums)
    );
    if let Some(sig) = &doc.signature {
        let _ = write!(
            body,
            " · <a class=\"signature\" href=\"{}\">{}</a>",
            href(prefix, sig),
            esc(sig)
        );
    }
    body.push_str("</p>\n");
    let check = format!("sha256sum --ignore-missing -c {sums}");
    let _ = writeln!(body, "<pre><code>{}</code></pre>", esc(&check));
    if doc.signature.is_some() {
        let key = match &doc.minisign_public_key {
            Some(key) => format!("-P {key}"),
            None => "-p PUBLIC_KEY_FILE".to_string(),
        };
        let verify = format!("minisign -Vm {sums} {key}");
        let _ = writeln!(
            body,
            "<pre><code class=\"minisign\">{}</code></pre>",
            esc(&verify)
        );
    }
}

fn images_section(body: &mut String, images: &[ImageRef]) {
    if images.is_empty() {
        return;
    }
    body.push_str("<h3>Images</h3>\n");
    for image in images {
        let by_tag = format!("{}:{}", image.repository, image.tag);
        let by_digest = format!("{}@{}", image.repository, image.digest);
        let _ = writeln!(
            body,
            "<pre><code>docker pull {t}\npodman pull {t}\ndocker pull {d}</code></pre>\n<p class=\"desc\">Platforms: {p}</p>",
            t = esc(&by_tag),
            d = esc(&by_digest),
            p = esc(&image.platforms.join(", "))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn channels_and_order() {
        assert_eq!(channel("0.9"), Channel::Stable);
        assert_eq!(channel("v1.2.3+b1"), Channel::Stable);
        assert_eq!(channel("1.0.0-rc.1"), Channel::Prerelease);
        assert_eq!(channel("main"), Channel::Other);
        let tags = s(&["main", "2.0-rc.1", "1.1", "1.0", "1.2-beta"]);
        assert_eq!(latest_stable(&tags), Some("1.1"));
        assert_eq!(
            page_order(&tags),
            s(&["1.1", "2.0-rc.1", "1.2-beta", "main", "1.0"])
        );
    }

    #[test]
    fn values_are_escaped() {
        let site = Site {
            web: None,
            name: "a".into(),
        };
        let doc = PageTag {
            description: Some("<script>alert(\"x\")</script> & 'q'".into()),
            ..PageTag::default()
        };
        let html = name_page(&site, &s(&["1.0"]), Some(("1.0", &doc)));
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;")
        );
    }

    #[test]
    fn images_show_pull_lines_by_tag_and_digest() {
        let site = Site {
            web: Some("https://dl.example.org".into()),
            name: "a".into(),
        };
        let doc = PageTag {
            images: vec![ImageRef {
                repository: "dl.example.org/a".into(),
                tag: "1.0".into(),
                digest: "sha256:ab".into(),
                platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            }],
            ..PageTag::default()
        };
        let html = tag_page(&site, "1.0", &doc);
        assert!(html.contains("docker pull dl.example.org/a:1.0\npodman pull dl.example.org/a:1.0\ndocker pull dl.example.org/a@sha256:ab"));
        assert!(html.contains("Platforms: linux/amd64, linux/arm64"));
    }

    /// Each row links its binary, its SBOM and, where the tag document names one, the
    /// provenance, all below the tag folder.
    #[test]
    fn rows_link_binary_sbom_and_provenance() {
        let doc: PageTag = serde_json::from_str(
            r#"{"flavors":[{"resources":[{"path":"v6/a b","size":2048,"sha256":"ab"}],"platform":{"architecture":"arm","os":"linux","variant":"v6"},"sbom":"linux/arm/v6/a b.cdx.json"}],"checksums":"SHA256SUMS","provenance":"provenance.intoto.jsonl"}"#,
        )
        .unwrap();
        let site = Site {
            web: None,
            name: "a".into(),
        };
        let html = name_page(&site, &["1.0".to_string()], Some(("1.0", &doc)));
        for link in [
            r#"class="binary" href="1.0/linux/arm/v6/a%20b""#,
            r#"class="sbom" href="1.0/linux/arm/v6/a%20b.cdx.json""#,
            r#"class="provenance" href="1.0/provenance.intoto.jsonl""#,
            r#"class="checksums" href="1.0/SHA256SUMS""#,
        ] {
            assert!(html.contains(link), "{link} in {html}");
        }
        assert!(html.contains(r#"data-platform="linux/arm/v6""#));
        assert!(
            html.contains(r#"data-bytes="2048">"#),
            "the size, in bytes too"
        );
        assert!(!html.contains("minisign -Vm"), "no signature, no command");
    }

    #[test]
    fn root_names_round_trip() {
        let page = root_page(None, &s(&["a", "b-c"]));
        assert_eq!(root_names(&page), s(&["a", "b-c"]));
    }
}
