//! The machine-readable report that `--json` prints: what was published where.

use serde::Serialize;

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Written now (or would be, in a dry run).
    New,
    /// Already there with the same content: not sent.
    Exists,
    /// Rewritten with other content (documents, lists).
    Updated,
    /// Removed (rm, gc).
    Deleted,
}

impl Status {
    /// The word progress lines use: `new`, `exists`, `updated`, `deleted`.
    pub fn word(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Exists => "exists",
            Status::Updated => "updated",
            Status::Deleted => "deleted",
        }
    }
}

/// One object written, skipped or deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Object {
    /// The object's key (or registry reference).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// What happened.
    pub status: Status,
    /// `sha256:<hex>` of the content, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why it was deleted (rm, gc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one publisher did on one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target, as the user wrote it (no secrets in it: credentials never go in URLs).
    pub target: String,
    /// `static` or `container`.
    pub kind: String,
    /// Release name.
    pub name: String,
    /// Tags written.
    pub tags: Vec<String>,
    /// Objects in write order.
    pub objects: Vec<Object>,
    /// Bytes actually sent.
    pub bytes_sent: u64,
    /// Requests retried after a transient fault (connection trouble, 429, 5xx): the push
    /// went through, but the network or the store was having a bad time.
    pub retries: u64,
    /// Dry run: nothing was written.
    pub dry_run: bool,
    /// The image index digest, for containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
}

impl TargetReport {
    /// An empty report for a target.
    pub fn new(
        target: &str,
        kind: &str,
        name: &str,
        tags: &[String],
        dry_run: bool,
    ) -> TargetReport {
        TargetReport {
            target: target.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            tags: tags.to_vec(),
            objects: Vec::new(),
            bytes_sent: 0,
            retries: 0,
            dry_run,
            index_digest: None,
        }
    }

    /// Records an object; new and updated objects count as sent unless this is a dry run.
    pub fn record(&mut self, key: &str, size: u64, status: Status, digest: Option<String>) {
        if matches!(status, Status::New | Status::Updated) && !self.dry_run {
            self.bytes_sent += size;
        }
        self.objects.push(Object {
            key: key.to_string(),
            size,
            status,
            digest,
            reason: None,
        });
    }

    /// Records an object removed (or, in a dry run, that would be removed) and why.
    pub fn record_deleted(&mut self, key: &str, size: u64, digest: Option<String>, reason: &str) {
        let reason = Some(reason.to_string());
        self.objects.push(Object {
            key: key.to_string(),
            size,
            status: Status::Deleted,
            digest,
            reason,
        });
    }
}

/// The whole run's report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The flake released from (`alba release`): locked URL, revision, and `dirty` when it
    /// was released from uncommitted changes with `--allow-dirty`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flake: Option<crate::nix::Flake>,
    /// One entry per (kind, target).
    pub targets: Vec<TargetReport>,
    /// Total bytes sent.
    pub bytes_sent: u64,
    /// Why the run failed, when it did: the same text as the `error:` line on stderr, so a
    /// report kept as a CI artifact tells a failed release from a finished one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// Adds one target's report.
    pub fn push(&mut self, target: TargetReport) {
        self.bytes_sent += target.bytes_sent;
        self.targets.push(target);
    }
}
