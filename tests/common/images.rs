//! Docker archives as nixpkgs `dockerTools` writes them, for tests: alba's own fixtures
//! ([`alba::image::fixtures`], shared with its unit tests), so both test the same layout.
#![allow(unused_imports)]

/// `sha256:<hex>` of some bytes.
pub use alba::digest::oci_digest as sha256_digest;
pub use alba::image::fixtures::{
    docker_archive, docker_archive_tar, image_config, layer_tar, stream_script,
};
