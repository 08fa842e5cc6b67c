//! The one error type of the crate: which layer, which field, and why.

use core::fmt;

/// The header a parse error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II header.
    Ethernet,
    /// 802.1Q or 802.1ad tag.
    Vlan,
    /// ARP packet.
    Arp,
    /// IPv4 header.
    Ipv4,
    /// IPv6 fixed header.
    Ipv6,
    /// IPv6 extension header.
    Ipv6Ext,
    /// UDP header.
    Udp,
    /// TCP header.
    Tcp,
    /// ICMPv4 message.
    Icmpv4,
    /// ICMPv6 message.
    Icmpv6,
    /// MPLS label stack entry.
    Mpls,
    /// GRE header.
    Gre,
    /// VXLAN header.
    Vxlan,
    /// SCTP common header.
    Sctp,
}

impl Layer {
    /// Short lowercase name, as used in counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Ipv6Ext => "ipv6-ext",
            Layer::Udp => "udp",
            Layer::Tcp => "tcp",
            Layer::Icmpv4 => "icmpv4",
            Layer::Icmpv6 => "icmpv6",
            Layer::Mpls => "mpls",
            Layer::Gre => "gre",
            Layer::Vxlan => "vxlan",
            Layer::Sctp => "sctp",
        }
    }
}

/// Why a field was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The buffer ends before the field does.
    Truncated,
    /// The field holds a value the protocol forbids (e.g. IHL below 5).
    Invalid,
    /// A checksum does not verify.
    Checksum,
    /// A legal value this crate does not handle (e.g. GRE version 1).
    Unsupported,
    /// A chain (MPLS stack, IPv6 extension headers) is longer than the bound we walk.
    TooDeep,
}

impl Reason {
    /// Short lowercase description.
    pub const fn describe(self) -> &'static str {
        match self {
            Reason::Truncated => "truncated",
            Reason::Invalid => "invalid value",
            Reason::Checksum => "bad checksum",
            Reason::Unsupported => "unsupported value",
            Reason::TooDeep => "chain too long",
        }
    }
}

/// A parse or emit error: the layer, the field and the reason.
///
/// ```
/// use wire::{Error, Layer, Reason};
/// let e = Error::new(Layer::Ipv4, "ihl", Reason::Invalid);
/// assert_eq!(e.to_string(), "ipv4: field `ihl`: invalid value");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error {
    /// Header the error was found in.
    pub layer: Layer,
    /// Name of the offending field (as written in the RFC, lowercase).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: Reason,
    /// True when the error is in the packet carried inside a tunnel.
    pub inner: bool,
}

impl Error {
    /// An error in an outer (non-tunnelled) header.
    pub const fn new(layer: Layer, field: &'static str, reason: Reason) -> Self {
        Error {
            layer,
            field,
            reason,
            inner: false,
        }
    }

    pub(crate) const fn truncated(layer: Layer, field: &'static str) -> Self {
        Error::new(layer, field, Reason::Truncated)
    }

    pub(crate) const fn invalid(layer: Layer, field: &'static str) -> Self {
        Error::new(layer, field, Reason::Invalid)
    }

    pub(crate) const fn unsupported(layer: Layer, field: &'static str) -> Self {
        Error::new(layer, field, Reason::Unsupported)
    }

    pub(crate) const fn checksum(layer: Layer) -> Self {
        Error::new(layer, "checksum", Reason::Checksum)
    }

    /// The same error, marked as found inside a tunnel.
    pub const fn into_inner(mut self) -> Self {
        self.inner = true;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inner {
            f.write_str("inner ")?;
        }
        write!(
            f,
            "{}: field `{}`: {}",
            self.layer.name(),
            self.field,
            self.reason.describe()
        )
    }
}

impl std::error::Error for Error {}

/// Result of every fallible operation in this crate.
pub type Result<T> = core::result::Result<T, Error>;
