//! Unit tests of [`super`] (oci_gc.rs), kept beside it so the planner stays short.

use super::*;

#[test]
fn parses_indexes_and_manifests() {
    let index = br#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:m1","size":3}]}"#;
    let (node, blobs) = parse(index);
    assert_eq!(
        (node.kind, node.manifests.as_slice()),
        ("index", ["sha256:m1".to_string()].as_slice())
    );
    assert!(blobs.is_empty());
    let manifest =
        br#"{"config":{"digest":"sha256:c","size":2},"layers":[{"digest":"sha256:l","size":9}]}"#;
    let (node, blobs) = parse(manifest);
    assert_eq!(node.blobs, ["sha256:c", "sha256:l"]);
    assert_eq!(blobs[1], ("sha256:l".to_string(), (9, "layer")));
    assert!(parse(b"not json").0.blobs.is_empty());
}
