//! The `vrouter` binary's configuration front ends, as a library so that fuzz targets and
//! tests drive them directly: the TOML configuration ([`config`]) and Kubernetes
//! NetworkPolicy YAML ([`k8s`]), which take untrusted text and answer with the parsed
//! form or an error naming the line, field and reason; the routing commands
//! ([`dynamic`]); and a kernel routing table followed into a VRF ([`kernel_routes`],
//! over [`netlink`]).

pub mod config;
pub mod dynamic;
pub mod k8s;
pub mod kernel_routes;
pub mod netlink;
