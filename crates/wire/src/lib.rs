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
pub mod sctp;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use error::{Error, Layer, Reason, Result};

/// Asks the CPU to start loading the cache line holding `p`. Burst stages (flow, route
/// and policy lookups) call it for every packet before the first one is examined, so the
/// misses of a burst overlap instead of queueing. Only a hint: it never faults.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is only a hint: it
        // never faults and never changes memory, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const T as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
