//! What `alba release` tells the download pages: the description, whether to write pages, and
//! the images it published (their pull references by tag and digest), learnt by publishing
//! images before binaries.

use crate::config::{Kind, Release};
use crate::nix::Flake;
use crate::publish::page::ImageRef;
use crate::publish::pages::Extras;
use crate::report::TargetReport;
use crate::target::Target;

/// The order `release` publishes kinds in: images first, so the binaries' tag documents (and
/// pages) name them. Indices into `kinds`.
pub fn publish_order(kinds: &[Kind]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..kinds.len()).collect();
    order.sort_by_key(|&i| kinds[i] != Kind::Container);
    order
}

/// The pages' extras of a release: its description (the release description's, else the
/// flake's), `static.page`, and the images published to `targets` (reported in `reports`).
pub fn extras(release: &Release, flake: &Flake, images: &[ImageRef]) -> Extras {
    let description = release
        .description
        .clone()
        .or_else(|| flake.description.clone())
        .filter(|d| !d.trim().is_empty());
    let no_pages = release
        .static_
        .as_ref()
        .is_some_and(|s| s.page == Some(false));
    Extras {
        description,
        images: images.to_vec(),
        no_pages,
    }
}

/// The pull references of the images `reports` say were published to `targets`: a registry's
/// repository, or a static registry's `web=` host where it serves `/v2/` at its root.
pub fn images(
    name: &str,
    version: &str,
    platforms: &[String],
    targets: &[Target],
    reports: &[TargetReport],
) -> Vec<ImageRef> {
    let repository = name.to_ascii_lowercase();
    let mut out = Vec::new();
    for report in reports.iter().filter(|r| r.kind == "container") {
        let Some(digest) = &report.index_digest else {
            continue;
        };
        let Some(target) = targets.iter().find(|t| t.to_string() == report.target) else {
            continue;
        };
        // The repository people pull from, as the images' signatures name it: none for a
        // bucket or folder without a root `web=` address.
        let Ok(pull) = crate::publish::signatures::docker_reference(target, &repository) else {
            continue;
        };
        let tag = match target {
            Target::Registry(r) => r.tag.clone().unwrap_or_else(|| version.to_string()),
            _ => version.to_string(),
        };
        out.push(ImageRef {
            repository: pull,
            tag,
            digest: digest.clone(),
            platforms: platforms.to_vec(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_come_first() {
        assert_eq!(publish_order(&[Kind::Static, Kind::Container]), [1, 0]);
    }

    /// A registry and a static registry with a root `web=` give pull references; one without
    /// `web=`, or with a path in it, does not.
    #[test]
    fn pull_references_of_the_published_images() {
        let targets: Vec<Target> = [
            "docker://registry.example.org/team/albatros",
            "s3://dl?endpoint=http://127.0.0.1:3900&web=https://dl.example.org",
            "file:dist",
            "file:sub?web=http://h:8080/sub",
            "file:port?web=http://h:8080",
        ]
        .iter()
        .map(|t| crate::target::parse(t).unwrap())
        .collect();
        let reports: Vec<TargetReport> = targets
            .iter()
            .map(|t| {
                let mut r = TargetReport::new(&t.to_string(), "container", "Albatros", &[], false);
                r.index_digest = Some("sha256:ab".into());
                r
            })
            .collect();
        let platforms = ["linux/amd64".to_string()];
        let refs = images("Albatros", "1.0", &platforms, &targets, &reports);
        let pulls: Vec<String> = refs
            .iter()
            .map(|r| format!("{}:{}@{}", r.repository, r.tag, r.digest))
            .collect();
        assert_eq!(
            pulls,
            [
                "registry.example.org/team/albatros:1.0@sha256:ab",
                "dl.example.org/albatros:1.0@sha256:ab",
                "h:8080/albatros:1.0@sha256:ab"
            ]
        );
    }
}
