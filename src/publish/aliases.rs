//! Semver alias tags: a release X.Y.Z also tags `X.Y` and `X` when it is the greatest release
//! of that line on the target, and `latest` when it is the greatest stable release there.
//!
//! Decided from the target's own tags at publish time, so publishing an older patch release
//! (1.2.4 after 1.3.0) or a prerelease (2.0.0-rc.1) moves nothing it should not.

use semver::Version;

use crate::bail_input;

/// The version a release publishes under `--aliases`: semver, with an optional leading `v`.
pub fn parse_release(version: &str) -> anyhow::Result<Version> {
    let plain = version.strip_prefix('v').unwrap_or(version);
    Version::parse(plain).map_err(|e| {
        crate::error::input(format!(
            "--aliases needs a semver version such as 1.2.3 or v1.2.3 (X.Y.Z[-PRE]); {version:?} is not one ({e})"
        ))
    })
}

/// The alias tags `version` takes on a target that holds `existing` tags, in write order
/// (`X.Y`, `X`, `latest`). Tags that are not semver (`latest`, `0.9`, commit ids) do not
/// compete; a prerelease takes no alias.
pub fn aliases(version: &Version, existing: &[String]) -> Vec<String> {
    if !version.pre.is_empty() {
        return Vec::new();
    }
    let released: Vec<Version> = existing
        .iter()
        .filter_map(|t| Version::parse(t.strip_prefix('v').unwrap_or(t)).ok())
        .filter(|v| v.pre.is_empty())
        .collect();
    let greatest_of = |same_line: &dyn Fn(&Version) -> bool| {
        released
            .iter()
            .filter(|v| same_line(v))
            .all(|v| v <= version)
    };
    let mut out = Vec::new();
    if greatest_of(&|v| v.major == version.major && v.minor == version.minor) {
        out.push(format!("{}.{}", version.major, version.minor));
    }
    if greatest_of(&|v| v.major == version.major) {
        out.push(version.major.to_string());
    }
    if greatest_of(&|_| true) {
        out.push("latest".to_string());
    }
    out
}

/// Refuses `--aliases` together with a version tag it would collide with.
pub fn check(version: &str) -> anyhow::Result<()> {
    let parsed = parse_release(version)?;
    if parsed.build.is_empty() {
        return Ok(());
    }
    bail_input!(
        "--aliases: {version:?} carries build metadata (+…), which OCI tags cannot hold; drop it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn v(text: &str) -> Version {
        parse_release(text).unwrap()
    }

    #[test]
    fn a_release_sequence_moves_the_right_aliases() {
        assert_eq!(aliases(&v("1.2.3"), &[]), ["1.2", "1", "latest"]);
        let on_target = tags(&["1.2.3", "1.2", "1", "latest"]);
        assert_eq!(aliases(&v("1.3.0"), &on_target), ["1.3", "1", "latest"]);
        // An older patch release after a newer minor: only its own line's alias.
        let on_target = tags(&["1.2.3", "1.3.0", "1.3", "1.2", "1", "latest"]);
        assert_eq!(aliases(&v("1.2.4"), &on_target), ["1.2"]);
        // A new major keeps the old major's alias where it was.
        assert_eq!(aliases(&v("2.0.0"), &on_target), ["2.0", "2", "latest"]);
        // A fix on the old major after 2.0.0: 1.3 and 1 move, latest does not.
        let on_target = tags(&["1.3.0", "2.0.0", "latest"]);
        assert_eq!(aliases(&v("1.3.1"), &on_target), ["1.3", "1"]);
        // Republishing the greatest release is a no-op for aliases.
        assert_eq!(aliases(&v("2.0.0"), &on_target), ["2.0", "2", "latest"]);
    }

    #[test]
    fn prereleases_move_nothing_and_do_not_compete() {
        assert!(aliases(&v("2.0.0-rc.1"), &tags(&["1.0.0"])).is_empty());
        assert_eq!(
            aliases(
                &v("1.0.1"),
                &tags(&["1.0.0", "2.0.0-rc.1", "latest", "abc"])
            ),
            ["1.0", "1", "latest"]
        );
        assert_eq!(
            aliases(&v("v1.0.1"), &tags(&["v1.0.0"])),
            ["1.0", "1", "latest"]
        );
    }

    #[test]
    fn refuses_non_semver() {
        for bad in ["0.9", "latest", "1.2.3.4", "1.2"] {
            let e = parse_release(bad).unwrap_err().to_string();
            assert!(e.contains("semver"), "{e}");
        }
        assert!(check("1.2.3+build.5").is_err());
        assert!(check("1.2.3").is_ok());
    }
}
