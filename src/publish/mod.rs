//! Publishers: static binaries (df-dist-v1) and images (static registry, OCI registry).

pub mod aliases;
pub mod credentials;
pub mod df_dist;
pub mod df_dist_gc;
pub mod lease;
pub mod lifecycle;
pub mod lists;
/// The nginx fragment moved to the folder store, which regenerates it in `finish`; this path
/// stays until the publishers stop calling `nginx::refresh` themselves.
pub use crate::store::nginx;
pub mod oci;
pub mod oci_gc;
pub mod oci_known;
pub mod oci_static;
pub mod registry;
