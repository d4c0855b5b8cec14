//! The pages after `rm` and `gc`, on a folder behind nginx: what was removed is no longer
//! listed, every remaining link answers; foreign objects and the pages themselves never become
//! tags when the name document is healed.

use super::{every_link_answers, hrefs, well_formed};
use crate::common;

use std::path::Path;

use common::{Nginx, alba, fixtures};

const SYSTEMS: [&str; 2] = ["x86_64-linux", "aarch64-linux"];

fn push(df: &Path, folder: &Path, tag: &str) {
    alba()
        .args(["static", "push", "-t", &format!("albatros:{tag}")])
        .arg(df)
        .arg(format!("file:{}", folder.display()))
        .run_expect(0);
}

fn name_tags(folder: &Path) -> Vec<String> {
    let doc = std::fs::read(folder.join("df-dist-v1/albatros/index.json")).expect("name document");
    let doc: serde_json::Value = serde_json::from_slice(&doc).expect("json");
    serde_json::from_value(doc["tags"].clone()).expect("tags")
}

/// The versions the name page served by nginx lists, and its links all answer.
fn page_versions(nginx: &Nginx) -> Vec<String> {
    let (status, headers, html) = nginx.get("/df-dist-v1/albatros/");
    assert_eq!(status, 200, "{}", nginx.error_log());
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    well_formed(&html);
    let html = String::from_utf8(html).expect("utf-8");
    let page = format!("{}/df-dist-v1/albatros/", nginx.base_url());
    every_link_answers(&page, &html, None);
    html.split("<li data-tag=\"")
        .skip(1)
        .filter_map(|r| r.split_once('"').map(|(t, _)| t.to_string()))
        .collect()
}

#[test]
fn rm_and_gc_rewrite_the_pages_and_strays_never_become_tags() {
    let work = tempfile::tempdir().expect("tempdir");
    let (df, folder) = (work.path().join("df"), work.path().join("dist"));
    fixtures::static_dir(&df, "albatros", &SYSTEMS);
    // A stray file someone uploaded, directly below the name.
    let stray = folder.join("df-dist-v1/albatros/notes.txt");
    std::fs::create_dir_all(stray.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stray, "not a tag").expect("stray");
    for tag in ["1.0.0", "1.1.0", "1.2.0-rc.1", "1.2.0"] {
        push(&df, &folder, tag);
    }
    assert_eq!(
        name_tags(&folder),
        ["1.2.0", "1.2.0-rc.1", "1.1.0", "1.0.0"]
    );
    let Some(nginx) = Nginx::try_start(&folder.join(".alba/nginx.conf")) else {
        return;
    };
    assert_eq!(
        page_versions(&nginx),
        ["1.2.0", "1.2.0-rc.1", "1.1.0", "1.0.0"]
    );

    // A dry run shows the pages it would write, in the --json report too.
    let out = alba()
        .args([
            "--json",
            "static",
            "push",
            "--dry-run",
            "-t",
            "albatros:9.9",
        ])
        .arg(&df)
        .arg(format!("file:{}", folder.display()))
        .run_expect(0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let objects = report["targets"][0]["objects"]
        .as_array()
        .expect("objects")
        .clone();
    let status = |key: &str| {
        objects
            .iter()
            .find(|o| o["key"] == key)
            .map(|o| o["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        status("df-dist-v1/albatros/9.9/index.html").as_deref(),
        Some("new")
    );
    assert_eq!(
        status("df-dist-v1/albatros/index.html").as_deref(),
        Some("updated")
    );
    assert_eq!(
        status("df-dist-v1/albatros/install.sh").as_deref(),
        Some("updated")
    );
    assert_eq!(status("df-dist-v1/index.html").as_deref(), Some("exists"));
    assert!(
        !folder.join("df-dist-v1/albatros/9.9").exists(),
        "a dry run writes nothing"
    );

    // Healing from the store: the name document lost, pages and the stray present.
    std::fs::write(folder.join("df-dist-v1/albatros/index.json"), "{}").expect("break it");
    push(&df, &folder, "1.2.0");
    assert_eq!(
        name_tags(&folder),
        ["1.2.0", "1.2.0-rc.1", "1.1.0", "1.0.0"],
        "only tag documents are tags"
    );

    alba()
        .args(["static", "rm", "-t", "albatros:1.2.0"])
        .arg(format!("file:{}", folder.display()))
        .run_expect(0);
    let versions = page_versions(&nginx);
    assert_eq!(
        versions,
        ["1.1.0", "1.2.0-rc.1", "1.0.0"],
        "1.1.0 is now the latest stable"
    );
    assert_eq!(
        nginx.get("/df-dist-v1/albatros/1.2.0/").0,
        404,
        "its page went with it"
    );
    let (_, _, script) = nginx.get("/df-dist-v1/albatros/install.sh");
    assert!(String::from_utf8_lossy(&script).contains("LATEST='1.1.0'\n"));

    alba()
        .args([
            "static", "gc", "-t", "albatros", "--keep", "1", "--grace", "0s",
        ])
        .arg(format!("file:{}", folder.display()))
        .run_expect(0);
    assert_eq!(page_versions(&nginx), ["1.2.0-rc.1"]);
    let (_, _, html) = nginx.get("/df-dist-v1/albatros/");
    let html = String::from_utf8_lossy(&html).to_string();
    assert!(
        !hrefs(&html)
            .iter()
            .any(|h| h.contains("1.1.0") || h.contains("1.0.0")),
        "{html}"
    );
    assert!(
        html.contains("data-tag=\"1.2.0-rc.1\""),
        "the newest tag is shown when none is stable"
    );
    assert!(stray.exists(), "a foreign object is left alone");
}
