//! Platforms (`os/arch[/variant]`) and the Nix system → platform table.
//!
//! The table lives in `nix/platforms.json`, read both here and by `nix/lib.nix`,
//! so Rust and Nix can never disagree about what `armv6l-linux` means.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// An OCI-style platform: `linux/amd64`, `linux/arm/v6`, …
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, as in OCI (`linux`, `darwin`).
    pub os: String,
    /// CPU architecture, as in OCI (`amd64`, `arm64`, `arm`, `386`, …).
    pub architecture: String,
    /// CPU variant (`v6`, `v7`), where the architecture has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

static TABLE: LazyLock<BTreeMap<String, Platform>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../nix/platforms.json"))
        .expect("nix/platforms.json is valid (checked by tests)")
});

impl Platform {
    /// The platform of a Nix system such as `x86_64-linux`, if alba knows it.
    pub fn from_nix_system(system: &str) -> Option<Platform> {
        TABLE.get(system).cloned()
    }

    /// Every Nix system alba knows, in the table's order.
    pub fn known_systems() -> Vec<&'static str> {
        TABLE.keys().map(String::as_str).collect()
    }

    /// Parses `os/arch[/variant]` or the Go tool's `os.arch[.variant]`.
    pub fn parse(text: &str) -> Option<Platform> {
        let parts: Vec<&str> = text.split(['/', '.']).collect();
        let valid =
            |s: &&str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid) {
            return None;
        }
        Some(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_all_ten_systems() {
        assert_eq!(Platform::known_systems().len(), 10);
        let arm = Platform::from_nix_system("armv6l-linux").unwrap();
        assert_eq!(arm.to_string(), "linux/arm/v6");
        assert_eq!(
            Platform::from_nix_system("i686-linux").unwrap().to_string(),
            "linux/386"
        );
        assert_eq!(
            Platform::from_nix_system("aarch64-darwin")
                .unwrap()
                .to_string(),
            "darwin/arm64"
        );
        assert!(Platform::from_nix_system("mips-linux").is_none());
    }

    #[test]
    fn parses_both_spellings() {
        assert_eq!(
            Platform::parse("linux.arm.v6"),
            Platform::from_nix_system("armv6l-linux")
        );
        assert_eq!(
            Platform::parse("linux/amd64"),
            Platform::from_nix_system("x86_64-linux")
        );
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux/../x").is_none());
    }
}
