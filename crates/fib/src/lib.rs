//! Where a packet goes: per-VRF IPv4 and IPv6 longest-prefix match, nexthops (discard,
//! receive, interface, tunnel, weighted ECMP, VRF translate), MPLS label and VXLAN VNI
//! tables and the neighbour table, published as immutable snapshots.
//!
//! * **Tables sized to their VRF** (`docs/fib.md`): up to [`SMALL_TABLE_ROUTES`] routes a
//!   VRF is a sorted interval array (a few KiB, binary search); above, IPv4 is DIR-24-8
//!   (one memory access for prefixes up to /24) and IPv6 a 16-8-8-... multibit trie.
//!   Thousands of small tenant VRFs and one full-table VRF fit together.
//! * **RCU publication**: [`FibBuilder`] edits a private copy; [`FibBuilder::publish`]
//!   compiles only what changed and swaps the new [`Snapshot`] in atomically. Workers load
//!   it once per burst and never block or see half a batch; the old one is freed when the
//!   last reader drops it. Each snapshot has a generation flows compare.
//! * **Resilient ECMP**: a 4096-bucket table per group, shares by weight; a membership
//!   change moves only the buckets it must.
//!
//! ```
//! use std::net::IpAddr;
//! use fib::{Encap, Fib, FibBuilder, Nexthop, OuterDscp, Resolution};
//!
//! let fib = Fib::new();
//! let mut b = FibBuilder::new();
//! b.add_vrf(0).unwrap(); // underlay
//! b.add_vrf(7).unwrap(); // a tenant
//! let remote: IpAddr = "192.0.2.20".parse().unwrap();
//! b.set_nexthop(1, Nexthop::Interface { port: 0, gateway: None }).unwrap();
//! b.add_route(0, "192.0.2.0".parse().unwrap(), 24, 1).unwrap();
//! let tunnel = Nexthop::Tunnel { encap: Encap::Vxlan { vni: 5001 }, src: "192.0.2.10".parse().unwrap(), dst: remote, underlay_vrf: 0, router_mac: None, dscp: OuterDscp::default(), zero_udp_checksum: false };
//! b.set_nexthop(2, tunnel).unwrap();
//! b.add_route(7, "10.2.0.0".parse().unwrap(), 16, 2).unwrap();
//! b.publish(&fib).unwrap();
//!
//! let snap = fib.snapshot();
//! let r = snap.resolve(7, "10.2.3.4".parse().unwrap(), 0).unwrap();
//! assert!(matches!(r.resolution, Resolution::Tunnel { encap: Encap::Vxlan { vni: 5001 }, mac: None, .. }));
//! ```

mod builder;
mod dir248;
mod ecmp;
mod intervals;
mod lpm;
mod nexthop;
mod prefix;
mod recent;
mod snapshot;
mod trie6;

use core::fmt;

pub use builder::{FibBuilder, MAX_VRF, Prepared};
pub use ecmp::{ECMP_BUCKETS, HashFields, MAX_ECMP_WEIGHT};
pub use lpm::SMALL_TABLE_ROUTES;
pub use nexthop::{Encap, Neighbor, NeighborState, Nexthop, NexthopId, OuterDscp, VrfId};
pub use snapshot::{Fib, FibStats, MAX_TRANSLATE_DEPTH, Miss, Resolution, Resolved, Route, Snapshot};

/// Most addresses one burst lookup handles.
pub const MAX_BURST: usize = 64;

/// A change the builder refuses, naming what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibError {
    /// The kind of object (route, nexthop, vrf, label, vni).
    pub what: &'static str,
    /// Which one and what is wrong.
    pub detail: String,
}

impl FibError {
    fn new(what: &'static str, detail: String) -> Self {
        FibError { what, detail }
    }
}

impl fmt::Display for FibError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

impl std::error::Error for FibError {}
