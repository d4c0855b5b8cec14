//! Publishers: static binaries (df-dist-v1) and images (static registry, OCI registry).

pub mod df_dist;
pub mod lists;
pub mod nginx;
