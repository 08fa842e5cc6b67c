//! Things IPv4 and IPv6 share: protocol numbers.

enum_with_unknown! {
    /// IP protocol / IPv6 next-header numbers.
    pub enum IpProtocol(u8) {
        /// IPv6 hop-by-hop options.
        HopByHop = 0,
        /// ICMP for IPv4.
        Icmp = 1,
        /// IPv4 in IP.
        IpIp = 4,
        /// TCP.
        Tcp = 6,
        /// UDP.
        Udp = 17,
        /// IPv6 in IP.
        Ipv6 = 41,
        /// IPv6 routing header.
        Ipv6Route = 43,
        /// IPv6 fragment header.
        Ipv6Frag = 44,
        /// Generic routing encapsulation.
        Gre = 47,
        /// Encapsulating security payload.
        Esp = 50,
        /// Authentication header.
        Ah = 51,
        /// ICMP for IPv6.
        Icmpv6 = 58,
        /// IPv6 "no next header".
        Ipv6NoNxt = 59,
        /// IPv6 destination options.
        Ipv6Opts = 60,
        /// SCTP.
        Sctp = 132,
    }
}

/// Where a packet sits in a fragmented datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fragment {
    /// Not fragmented.
    #[default]
    Whole,
    /// First fragment (offset 0, more fragments follow): the L4 header is present.
    First,
    /// A later fragment: no L4 header, ports are unknown.
    Later,
}

impl Fragment {
    /// Classifies a packet from its fragment offset and more-fragments flag.
    #[inline]
    pub const fn from_fields(offset: u16, more_frags: bool) -> Self {
        match (offset, more_frags) {
            (0, false) => Fragment::Whole,
            (0, true) => Fragment::First,
            _ => Fragment::Later,
        }
    }
}
