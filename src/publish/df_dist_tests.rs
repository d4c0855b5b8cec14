//! Unit tests of [`super`] (df_dist.rs), kept beside it so the planner stays short.

use super::*;
use crate::report::TargetReport;
use crate::store::fs::FolderStore;

/// Publishes `files` as albatros:`tag` with no signer or SBOMs; returns the report.
async fn publish_to(store: &Arc<dyn ObjectStore>, tag: &str, files: &[HashedFile]) -> TargetReport {
    let release = StaticRelease {
        name: "albatros",
        tag,
        files,
        signer: None,
        sboms: &BTreeMap::new(),
        extras: &Extras::default(),
        web: None,
        attester: None,
    };
    let mut report = TargetReport::new("t", "static", "albatros", &[], false);
    let ui = crate::ui::Ui::silent();
    let executor = crate::execute::Executor {
        ui: &ui,
        jobs: 2,
        dry_run: false,
    };
    let mut planner = Push::new(store.clone(), release);
    executor
        .run(store, &mut planner, &mut report)
        .await
        .unwrap();
    report
}

fn file(dir: &std::path::Path, platform: &str, name: &str, content: &str) -> StaticFile {
    let path = dir.join(format!("{}-{name}", platform.replace('/', "_")));
    std::fs::write(&path, content).unwrap();
    StaticFile {
        platform: Platform::parse(platform).unwrap(),
        file_name: name.into(),
        path,
    }
}

#[tokio::test]
async fn publishes_layout_and_merges_tags() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(FolderStore::new(out.path()).unwrap());
    let files = vec![
        file(src.path(), "linux/amd64", "albatros", "A"),
        file(src.path(), "linux/arm/v6", "albatros", "B"),
    ];
    let files = hash_files(&files, None).await.unwrap();
    for tag in ["0.9", "1.0"] {
        publish_to(&store, tag, &files).await;
    }
    let name_doc = store.get("df-dist-v1/albatros").await.unwrap().unwrap();
    assert_eq!(name_doc, r#"{"name":"albatros","tags":["1.0","0.9"]}"#);
    let tag_doc: serde_json::Value =
        serde_json::from_slice(&store.get("df-dist-v1/albatros/0.9").await.unwrap().unwrap())
            .unwrap();
    assert_eq!(
        tag_doc["flavors"][0]["platform"],
        serde_json::json!({"architecture":"amd64","os":"linux"})
    );
    assert_eq!(
        tag_doc["flavors"][1]["platform"],
        serde_json::json!({"architecture":"arm","os":"linux","variant":"v6"})
    );
    // The Go tool's path for arm too: a page builds it from os/arch and `path`.
    assert_eq!(
        store
            .get("df-dist-v1/albatros/0.9/linux/arm/albatros")
            .await
            .unwrap()
            .unwrap(),
        "B"
    );
    assert_eq!(tag_doc["flavors"][1]["resources"][0]["path"], "albatros");
    // Same release again: nothing sent.
    let report = publish_to(&store, "1.0", &files).await;
    assert_eq!(report.bytes_sent, 0);
}

#[tokio::test]
async fn shared_os_arch_gets_a_variant_level() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(FolderStore::new(out.path()).unwrap());
    let files = vec![
        file(src.path(), "linux/amd64", "albatros", "A"),
        file(src.path(), "linux/arm/v6", "albatros", "B"),
        file(src.path(), "linux/arm/v7", "albatros", "C"),
    ];
    let files = hash_files(&files, None).await.unwrap();
    publish_to(&store, "1.0", &files).await;
    let get = |key: &'static str| {
        let store = store.clone();
        async move { store.get(key).await.unwrap() }
    };
    assert_eq!(
        get("df-dist-v1/albatros/1.0/linux/amd64/albatros")
            .await
            .unwrap(),
        "A"
    );
    assert_eq!(
        get("df-dist-v1/albatros/1.0/linux/arm/v6/albatros")
            .await
            .unwrap(),
        "B"
    );
    assert_eq!(
        get("df-dist-v1/albatros/1.0/linux/arm/v7/albatros")
            .await
            .unwrap(),
        "C"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&get("df-dist-v1/albatros/1.0").await.unwrap()).unwrap();
    let paths: Vec<_> = doc["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["resources"][0]["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["albatros", "v6/albatros", "v7/albatros"]);
}
