//! A release's cost does not grow with the history: the pages are rendered from the name
//! document and one tag document, so every push after the first makes the same number of
//! requests whatever the number of tags (issue 22).

use crate::common;

use common::fault_proxy::FaultProxy;
use common::{Garage, alba, fixtures};

#[test]
fn a_push_with_pages_costs_the_same_requests_at_any_number_of_tags() {
    let Some(garage) = Garage::try_start() else {
        return;
    };
    garage.create_bucket("download");
    let proxy = FaultProxy::start(garage.s3_port, 0.0, 1);
    let target = format!(
        "s3://download?endpoint={}&region={}&s3ForcePathStyle=true",
        proxy.endpoint(),
        common::garage::REGION
    );
    let work = tempfile::tempdir().expect("temp dir");
    let df = work.path().join("df");
    fixtures::static_dir(&df, "albatros", &["x86_64-linux", "aarch64-linux"]);
    let mut per_push = Vec::new();
    for i in 0..12 {
        let before = proxy.requests();
        alba()
            .envs(garage.envs())
            .args(["static", "push", "-t", &format!("albatros:1.0.{i}")])
            .arg(&df)
            .arg(&target)
            .run_expect(0);
        per_push.push(proxy.requests() - before);
    }
    println!("requests per push, 1 to 12 tags: {per_push:?}");
    let (_, _, page) = garage.web_get("download", "/df-dist-v1/albatros/");
    assert!(
        String::from_utf8_lossy(&page).contains("data-tag=\"1.0.0\""),
        "the page lists every tag"
    );
    assert!(
        per_push[1..].iter().all(|n| *n == per_push[1]),
        "every push after the first makes the same requests: {per_push:?}"
    );
}
