//! Publishers: static binaries (df-dist-v1) and images (static registry, OCI registry).

pub mod aliases;
pub mod attest;
pub mod credentials;
pub mod derived;
pub mod df_dist;
pub mod df_dist_gc;
pub mod install_sh;
pub mod layout;
pub mod lifecycle;
pub mod oci;
pub mod oci_gc;
pub mod oci_known;
pub mod oci_static;
pub mod page;
pub mod pages;
pub mod registry;
pub mod signatures;
