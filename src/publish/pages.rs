//! The download site as plan steps: derived documents, like the name document.
//!
//! A push writes its tag's own page (`<name>/<tag>/index.html`) with the tag's files, before
//! the tag document: immutable with the tag, removed with it. After the name document come the
//! name page, `install.sh` and the root page (`df-dist-v1/index.html`), rendered from the name
//! document's tags and one tag document (the newest stable one): a release costs the same
//! few requests whatever the number of tags. `rm` and `gc` rewrite them right after the name
//! document, before any file they stop listing is deleted.

use std::collections::BTreeSet;

use anyhow::Result;
use bytes::Bytes;

use super::df_dist::document_step;
use super::layout::{DF_DIST_ROOT, DfDistLayout};
use super::page::{self, ImageRef, PageTag, Site};
use crate::plan::Step;
use crate::store::ObjectStore;

/// HTML pages.
pub const HTML: &str = "text/html; charset=utf-8";
/// The install script, shown as text in a browser.
pub const SCRIPT: &str = "text/plain; charset=utf-8";
/// A page's file name (Garage's index document, and the folder fragment's).
pub const INDEX: &str = "index.html";
/// The install script's file name.
pub const INSTALL: &str = "install.sh";

/// What a release tells its pages beyond its files, stored in its tag document.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// The release's description (the release description's, else the flake's).
    pub description: Option<String>,
    /// Images published with it (pull references by tag and digest).
    pub images: Vec<ImageRef>,
    /// `static.page = false`: write no pages.
    pub no_pages: bool,
}

/// True for the keys directly below a name that are pages, never tags.
pub fn is_page_file(tag: &str) -> bool {
    tag == INDEX || tag == INSTALL
}

/// The tags a name document's step plans (none for any other step).
pub fn planned_tags(step: &Step) -> &[String] {
    match &step.action {
        crate::plan::Action::List(update) => &update.planned,
        _ => &[],
    }
}

/// Key of the root page.
pub fn root_key() -> String {
    format!("{DF_DIST_ROOT}/{INDEX}")
}

/// The tag's own page, rendered from the tag document it is written with.
pub async fn tag_page_step(
    store: &dyn ObjectStore,
    layout: &DfDistLayout,
    web: Option<&str>,
    tag: &str,
    tag_document: &[u8],
) -> Result<Step> {
    let doc = PageTag::parse(tag_document).unwrap_or_default();
    let html = page::tag_page(&site(layout, web), tag, &doc);
    let key = layout.tag_file(tag, INDEX);
    document_step(store, &key, Bytes::from(html), HTML).await
}

/// The name page, install.sh and the root page for the name's `tags` (newest first); `this`
/// is a tag document about to be written (read from the store otherwise).
pub async fn name_steps(
    store: &dyn ObjectStore,
    layout: &DfDistLayout,
    web: Option<&str>,
    tags: &[String],
    this: Option<(&str, &[u8])>,
) -> Result<Vec<Step>> {
    let featured = match page::latest_stable(tags).or(tags.first().map(String::as_str)) {
        Some(tag) => {
            let bytes = match this {
                Some((t, bytes)) if t == tag => Some(Bytes::copy_from_slice(bytes)),
                _ => store.get(&layout.tag_key(tag)).await?,
            };
            bytes.and_then(|b| PageTag::parse(&b)).map(|doc| (tag, doc))
        }
        None => None,
    };
    let featured = featured.as_ref().map(|(t, d)| (*t, d));
    let stable = featured.filter(|(t, _)| page::latest_stable(tags) == Some(t));
    let site = site(layout, web);
    let html = page::name_page(&site, tags, featured);
    let script = super::install_sh::render(layout.name(), web, stable);
    let prefix = layout.prefix();
    Ok(vec![
        document_step(store, &format!("{prefix}{INDEX}"), Bytes::from(html), HTML).await?,
        document_step(
            store,
            &format!("{prefix}{INSTALL}"),
            Bytes::from(script),
            SCRIPT,
        )
        .await?,
        root_step(store, web, layout.name()).await?,
    ])
}

/// The name's pages rendered again from its stored name document, where they changed.
pub async fn healed(
    store: &dyn ObjectStore,
    layout: &DfDistLayout,
    web: Option<&str>,
) -> Result<crate::plan::Plan> {
    let tags = super::derived::DerivedList::Names(layout.clone())
        .stored(store)
        .await?
        .tags;
    let mut steps = name_steps(store, layout, web, &tags, None).await?;
    steps.retain(Step::changes);
    Ok(crate::plan::Plan {
        phases: vec![crate::plan::Phase::new("pages, healed", steps)],
        ..crate::plan::Plan::default()
    })
}

/// The root page: the names it listed whose name document is still there, and `name`.
async fn root_step(store: &dyn ObjectStore, web: Option<&str>, name: &str) -> Result<Step> {
    let key = root_key();
    let stored = store.get(&key).await?;
    let listed = stored
        .as_deref()
        .map(|b| page::root_names(&String::from_utf8_lossy(b)))
        .unwrap_or_default();
    let mut names = BTreeSet::from([name.to_string()]);
    for other in listed.into_iter().filter(|n| n != name) {
        if store
            .head(&DfDistLayout::new(&other).name_key())
            .await?
            .is_some()
        {
            names.insert(other);
        }
    }
    let names: Vec<String> = names.into_iter().collect();
    let html = page::root_page(web, &names);
    document_step(store, &key, Bytes::from(html), HTML).await
}

fn site(layout: &DfDistLayout, web: Option<&str>) -> Site {
    Site {
        web: web.map(str::to_string),
        name: layout.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::derived::DerivedList;
    use crate::store::fs::FolderStore;

    async fn put(store: &dyn ObjectStore, key: &str, text: &str) {
        let put = crate::store::Put::bytes(key, Bytes::from(text.to_string()), "x");
        store.put(&put).await.unwrap();
    }

    /// Healing a name document takes tag documents only: not the pages, not a stray file,
    /// not JSON that is no tag document.
    #[tokio::test]
    async fn pages_and_strays_are_not_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path()).unwrap();
        let doc = r#"{"flavors":[{"resources":[{"path":"a"}],"platform":{"architecture":"amd64","os":"linux"}}]}"#;
        put(&store, "df-dist-v1/a/1.0", doc).await;
        put(&store, "df-dist-v1/a/1.0/linux/amd64/a", "A").await;
        put(&store, "df-dist-v1/a/index.html", "<!DOCTYPE html>").await;
        put(&store, "df-dist-v1/a/install.sh", "#!/bin/sh").await;
        put(&store, "df-dist-v1/a/stray.txt", "hello").await;
        put(&store, "df-dist-v1/a/other.json", r#"{"x":1}"#).await;
        let list = DerivedList::Names(DfDistLayout::new("a"));
        let round = list.read(&store, &[], &BTreeSet::new()).await.unwrap();
        assert_eq!(round.tags, ["1.0"]);
        // A listed tag is trusted by its key.
        put(
            &store,
            "df-dist-v1/a",
            r#"{"name":"a","tags":["other.json","1.0"]}"#,
        )
        .await;
        let round = list.read(&store, &[], &BTreeSet::new()).await.unwrap();
        assert_eq!(round.tags, ["other.json", "1.0"]);
    }

    /// Publishes one binary as a:1.0 with `extras`; returns the store's keys.
    async fn publish(extras: &Extras) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("a");
        std::fs::write(&bin, "A").unwrap();
        let file = crate::artifact::StaticFile {
            platform: crate::platform::Platform::parse("linux/amd64").unwrap(),
            file_name: "a".into(),
            path: bin,
        };
        let files = super::super::df_dist::hash_files(&[file], None)
            .await
            .unwrap();
        let release = super::super::df_dist::StaticRelease {
            name: "a",
            tag: "1.0",
            files: &files,
            signer: None,
            sboms: &Default::default(),
            extras,
            web: Some("https://dl.example.org"),
            attester: None,
        };
        let out = dir.path().join("out");
        let store: std::sync::Arc<dyn ObjectStore> =
            std::sync::Arc::new(FolderStore::new(&out).unwrap());
        let mut report = crate::report::TargetReport::new("t", "static", "a", &[], false);
        let ui = crate::ui::Ui::silent();
        let executor = crate::execute::Executor {
            ui: &ui,
            jobs: 1,
            dry_run: false,
        };
        let mut planner = super::super::df_dist::Push::new(store.clone(), release);
        executor
            .run(&store, &mut planner, &mut report)
            .await
            .unwrap();
        let keys: Vec<String> = report.objects.iter().map(|o| o.key.clone()).collect();
        keys
    }

    /// Pages are reported in write order after the name document; `static.page = false`
    /// writes none; links use `web=`.
    #[tokio::test]
    async fn pages_follow_the_name_document_unless_turned_off() {
        let keys = publish(&Extras::default()).await;
        let at = |k: &str| {
            keys.iter()
                .position(|x| x == k)
                .unwrap_or_else(|| panic!("{k} in {keys:?}"))
        };
        assert!(at("df-dist-v1/a/1.0/index.html") < at("df-dist-v1/a/1.0"));
        assert!(at("df-dist-v1/a") < at("df-dist-v1/a/index.html"));
        assert!(at("df-dist-v1/a/index.html") < at("df-dist-v1/a/install.sh"));
        assert!(at("df-dist-v1/a/install.sh") < at("df-dist-v1/index.html"));
        let off = Extras {
            no_pages: true,
            ..Extras::default()
        };
        let keys = publish(&off).await;
        assert!(
            keys.iter()
                .all(|k| !k.ends_with(".html") && !k.ends_with(".sh")),
            "{keys:?}"
        );
    }

    #[test]
    fn page_files_are_no_tags() {
        assert!(crate::names::check_static_tag("index.html").is_err());
        assert!(crate::names::check_static_tag("install.sh").is_err());
        assert!(crate::names::check_static_tag("index.htm").is_ok());
    }

    #[tokio::test]
    async fn the_root_page_keeps_names_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let store = FolderStore::new(dir.path()).unwrap();
        let html = page::root_page(None, &["gone".to_string(), "b".to_string()]);
        put(&store, &root_key(), &html).await;
        put(&store, "df-dist-v1/b", r#"{"name":"b","tags":[]}"#).await;
        let step = root_step(&store, None, "a").await.unwrap();
        let crate::plan::Action::Write { content, .. } = step.action else {
            panic!("a write");
        };
        let crate::plan::Content::Bytes(bytes) = content else {
            panic!("bytes");
        };
        let names = page::root_names(&String::from_utf8_lossy(&bytes));
        assert_eq!(names, ["a", "b"]);
    }
}
