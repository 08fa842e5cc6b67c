//! Zero-copy views and typed representations of every header the vRouter forwards, the
//! one-pass parse the pipeline runs per packet, checksums, and flow hashing.
//!
//! Each header has two layers, in the style of smoltcp:
//!
//! * a view, `XPacket<T: AsRef<[u8]>>`, with field getters (and setters when
//!   `T: AsMut<[u8]>`). `new_checked` verifies that every field the accessors read lies
//!   inside the buffer; **after it succeeds no accessor panics**.
//! * a `XRepr`: a small typed struct with `parse(&view) -> Result<XRepr>`, which never
//!   panics on any input and validates what the protocol requires (version, checksum,
//!   reserved bits), `buffer_len()`, and `emit(&mut view)`, which needs exactly
//!   `buffer_len()` bytes.
//!
//! Errors are values ([`Error`]) that name the layer, the field and the reason.
//! Numbers with meaning (EtherType, IP protocol) are open enums: an unknown value is data.
//!
//! When built with `--cfg fuzzing`, checksum verification always succeeds so fuzzers
//! reach the code behind it.
//!
//! ```
//! use wire::parse::parse;
//! let frame = wire::compose::example_vxlan_frame();
//! let meta = parse(&frame).unwrap();
//! assert_eq!(meta.inner.key.dst_port, 2222);
//! ```

#[macro_use]
mod macros;
mod bytes;
mod error;

pub mod arp;
pub mod checksum;
pub mod compose;
pub mod ethernet;
pub mod flow;
pub mod gre;
pub mod icmp;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
pub mod mpls;
pub mod options;
pub mod parse;
pub mod rss;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use error::{Error, Layer, Reason, Result};
