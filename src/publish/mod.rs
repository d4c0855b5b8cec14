//! Publishers: static binaries (df-dist-v1) and images (static registry, OCI registry).

pub mod credentials;
pub mod df_dist;
pub mod lists;
pub mod nginx;
pub mod oci;
pub mod oci_registry;
pub mod oci_static;
