//! The provenance attachments of an image set: cosign's `.att` of the index and of every
//! platform manifest, and one referrer per subject.

use tempfile::TempDir;

use super::*;
use crate::image::attestation::{attestation, envelope_layer, statement_subjects};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn att_tags_and_referrers_name_every_subject() {
    let dir = TempDir::new().expect("tempdir");
    let tar = archive_tar("linux", "amd64", &two_layers(), Order::ManifestLast);
    let arm = archive_tar("linux", "arm64", &two_layers(), Order::ManifestLast);
    let inputs = vec![
        (amd64(), write(dir.path(), "a.tar", &tar)),
        (
            Platform::parse("linux/arm64").expect("platform"),
            write(dir.path(), "b.tar", &arm),
        ),
    ];
    let set = load(inputs, &opts(2, None)).await.expect("load");
    let subjects = statement_subjects(&set);
    assert_eq!(subjects.len(), 3, "the index and two platform manifests");
    assert_eq!(format!("sha256:{}", subjects[0].sha256), set.index_digest);
    let envelope = bytes::Bytes::from_static(b"{\"payloadType\":\"x\"}");
    let a = attestation(&set, envelope.clone()).expect("attestation");
    let tags: Vec<&str> = a.tags.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        tags[0],
        format!("{}.att", set.index_digest.replace(':', "-"))
    );
    assert_eq!(tags.len(), 3);
    let (digest, size) = envelope_layer(&a.tags[0].1).expect("the envelope layer");
    assert_eq!((digest, size), (sha(&envelope), envelope.len() as u64));
    let subjects_of: Vec<&str> = a.referrers.iter().map(|r| r.subject.as_str()).collect();
    assert_eq!(subjects_of[0], set.index_digest);
    let doc: serde_json::Value = serde_json::from_slice(&a.referrers[1].manifest).expect("json");
    assert_eq!(doc["artifactType"], "application/vnd.dsse.envelope.v1+json");
    assert_eq!(
        doc["subject"]["digest"],
        set.images[0].manifest_digest.as_str()
    );
}
