//! Long histories, made cheaply: one tag published by alba itself, then copied under many
//! more tags straight through the S3 API, the way a project with hundreds of releases looks
//! to `ls`, `gc` and `verify`.
//!
//! Static tags are server-side copies of the first tag's objects (a tag document names no
//! tag, so a copy is a valid tag). Image tags each get an image of their own: the first tag's
//! config with `author` set to the tag, its manifest naming that config, and an index naming
//! that manifest, annotated with the tag as its version; layers are shared, as releases share
//! most of theirs. Every object carries the content type and sha256 metadata alba writes.

use serde_json::Value;

use super::s3::S3Client;

/// Writes at once while building a history.
const THREADS: usize = 8;

/// `0.1.1`, `0.1.2`, … `0.1.<n>`: tags in push order.
pub fn tags(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("0.1.{i}")).collect()
}

/// Runs `each` over `items` on [`THREADS`] threads.
fn parallel<T: Sync>(items: &[T], each: impl Fn(&T) + Sync) {
    let chunk = items.len().div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        for part in items.chunks(chunk) {
            let each = &each;
            scope.spawn(move || part.iter().for_each(each));
        }
    });
}

/// `Content-Type` of a response.
fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// GETs an object that must exist: its bytes and content type.
fn get(s3: &S3Client, bucket: &str, key: &str) -> (Vec<u8>, String) {
    let (status, headers, body) = s3.get(bucket, key);
    assert_eq!(status, 200, "GET {bucket}/{key}");
    (body, content_type(&headers))
}

/// PUTs an object as alba does: content type and its sha256 as metadata.
fn put(s3: &S3Client, bucket: &str, key: &str, body: &[u8], content_type: &str) {
    let sha = super::sha256_hex(body);
    let headers = [("content-type", content_type), ("x-amz-meta-sha256", &sha)];
    let (status, _, reply) = s3.request("PUT", bucket, key, &[], body, &headers);
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(status, 200, "PUT {bucket}/{key}: {reply}");
}

/// Copies an object server-side, with its metadata.
fn copy(s3: &S3Client, bucket: &str, from: &str, to: &str) {
    let source = format!("/{bucket}/{}", super::s3::uri_encode(from, true));
    let headers = [("x-amz-copy-source", source.as_str())];
    let (status, _, reply) = s3.request("PUT", bucket, to, &[], b"", &headers);
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(status, 200, "copy {from} to {to}: {reply}");
}

/// Copies df-dist-v1 tag `template` of `name` under every tag of `more`, then writes the
/// name document: `more` newest last (the last one listed first), then the template.
pub fn copy_static_tags(s3: &S3Client, bucket: &str, name: &str, template: &str, more: &[String]) {
    let root = format!("df-dist-v1/{name}");
    let files = s3.list_keys(bucket, &format!("{root}/{template}/"));
    assert!(!files.is_empty(), "no files below {root}/{template}/");
    parallel(more, |tag| {
        for file in &files {
            let to = file.replacen(&format!("{root}/{template}/"), &format!("{root}/{tag}/"), 1);
            copy(s3, bucket, file, &to);
        }
        copy(
            s3,
            bucket,
            &format!("{root}/{template}"),
            &format!("{root}/{tag}"),
        );
    });
    let mut listed: Vec<String> = more.iter().rev().cloned().collect();
    listed.push(template.to_string());
    let document = serde_json::json!({ "name": name, "tags": listed });
    let bytes = serde_json::to_vec(&document).expect("name document");
    put(s3, bucket, &root, &bytes, "application/json");
}

/// The OCI digest of bytes.
fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", super::sha256_hex(bytes))
}

/// Gives every tag of `more` an image of its own in the static registry `repo`, made from
/// tag `template`'s (one platform), then writes `tags/list` with all tags.
pub fn copy_image_tags(s3: &S3Client, bucket: &str, repo: &str, template: &str, more: &[String]) {
    let v2 = format!("v2/{repo}");
    let (index_bytes, index_type) = get(s3, bucket, &format!("{v2}/manifests/{template}"));
    let index: Value = serde_json::from_slice(&index_bytes).expect("template index");
    let entry = index["manifests"][0]["digest"]
        .as_str()
        .expect("an index entry");
    let (manifest_bytes, manifest_type) = get(s3, bucket, &format!("{v2}/manifests/{entry}"));
    let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("template manifest");
    let config_digest = manifest["config"]["digest"].as_str().expect("a config");
    let (config_bytes, config_type) = get(s3, bucket, &format!("{v2}/blobs/{config_digest}"));
    let config: Value = serde_json::from_slice(&config_bytes).expect("template config");
    parallel(more, |tag| {
        let mut config = config.clone();
        config["author"] = Value::from(format!("scale history {tag}"));
        let config = serde_json::to_vec(&config).expect("config");
        let mut manifest = manifest.clone();
        manifest["config"]["digest"] = Value::from(digest(&config));
        manifest["config"]["size"] = Value::from(config.len());
        let manifest = serde_json::to_vec(&manifest).expect("manifest");
        let mut index = index.clone();
        index["manifests"][0]["digest"] = Value::from(digest(&manifest));
        index["manifests"][0]["size"] = Value::from(manifest.len());
        if index["annotations"].is_object() {
            index["annotations"]["org.opencontainers.image.version"] = Value::from(tag.as_str());
        }
        let index = serde_json::to_vec(&index).expect("index");
        let blob = format!("{v2}/blobs/{}", digest(&config));
        put(s3, bucket, &blob, &config, &config_type);
        let by_digest = format!("{v2}/manifests/{}", digest(&manifest));
        put(s3, bucket, &by_digest, &manifest, &manifest_type);
        put(
            s3,
            bucket,
            &format!("{v2}/manifests/{}", digest(&index)),
            &index,
            &index_type,
        );
        put(
            s3,
            bucket,
            &format!("{v2}/manifests/{tag}"),
            &index,
            &index_type,
        );
    });
    let mut all: Vec<String> = more.to_vec();
    all.push(template.to_string());
    all.sort();
    let list = serde_json::json!({ "name": repo, "tags": all });
    let bytes = serde_json::to_vec(&list).expect("tags/list");
    put(
        s3,
        bucket,
        &format!("{v2}/tags/list"),
        &bytes,
        "application/json",
    );
}
