//! The kernel's routes over rtnetlink (`NETLINK_ROUTE`): a socket that dumps the routing
//! tables and hears every change after, and a parser of its messages.
//!
//! The parser takes a datagram as bytes and checks every length against them: what the
//! kernel sends is trusted, but a parser that indexes past a length it was told would turn
//! one kernel change of format into a crash, so a malformed message is an error naming
//! what was wrong (and a fuzz target holds it to that).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const RTM_GETNEXTHOP: u16 = 106;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const RTMGRP_LINK: u32 = 1;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
/// `RTNLGRP_NEXTHOP` (32), as a bit of the groups mask.
const RTMGRP_NEXTHOP: u32 = 1 << 31;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
const RTA_NH_ID: u16 = 30;

const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;

/// `rtm_flags`: a route the kernel cloned for a cache (a PMTU exception), not configured.
pub const RTM_F_CLONED: u32 = 0x200;
/// A next hop's flags: its link is down, or the hop is dead; the kernel does not use it.
pub const RTNH_F_DEAD: u8 = 1;
/// See [`RTNH_F_DEAD`].
pub const RTNH_F_LINKDOWN: u8 = 16;

/// Route types (`rtm_type`) the follower reads.
pub mod kind {
    /// A route to a gateway or a link.
    pub const UNICAST: u8 = 1;
    /// Silently dropped.
    pub const BLACKHOLE: u8 = 6;
    /// Dropped with "network unreachable".
    pub const UNREACHABLE: u8 = 7;
    /// Dropped with "prohibited".
    pub const PROHIBIT: u8 = 8;
}

/// One next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The output interface's index (0: none given).
    pub ifindex: u32,
    /// The gateway, if not on-link.
    pub gateway: Option<IpAddr>,
    /// Its ECMP weight (1 for a single hop).
    pub weight: u32,
    /// `RTNH_F_*` flags.
    pub flags: u8,
}

/// A route message: a route added, changed or removed, or one line of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `RTM_DELROUTE` (else `RTM_NEWROUTE`).
    pub deleted: bool,
    /// The destination prefix (the family's zero address for a default route).
    pub dst: IpAddr,
    /// Its length.
    pub len: u8,
    /// A source prefix's length (source-specific routing), 0 for none.
    pub src_len: u8,
    /// The TOS the route is limited to, 0 for any.
    pub tos: u8,
    /// The routing table (`RTA_TABLE` where given, else the header's 8 bits).
    pub table: u32,
    /// Who installed it (`rtm_protocol`: 2 kernel, 4 static, 12 bird, ...).
    pub protocol: u8,
    /// `rtm_type` ([`kind`]).
    pub kind: u8,
    /// `rtm_flags`.
    pub flags: u32,
    /// Its metric (`RTA_PRIORITY`), 0 if not given.
    pub metric: u32,
    /// The next hops: one, several (`RTA_MULTIPATH`), or none (a blackhole).
    pub hops: Vec<Hop>,
    /// A kernel nexthop object the route uses instead of hops of its own.
    pub nexthop_object: Option<u32>,
}

/// Where a kernel nexthop object (`ip nexthop`) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectVia {
    /// Dropped.
    Blackhole,
    /// One hop (its weight 1).
    Hop(Hop),
    /// A group of other objects, by id, with their weights.
    Group(Vec<(u32, u32)>),
}

/// A kernel nexthop object, which routes name by id (`nhid`; FRR uses them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexthopObject {
    /// `RTM_DELNEXTHOP` (else `RTM_NEWNEXTHOP`).
    pub deleted: bool,
    /// Its id.
    pub id: u32,
    /// Where it goes.
    pub via: ObjectVia,
}

/// A message of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A route (added, changed or removed, or dumped).
    Route(Route),
    /// A nexthop object (added, changed or removed, or dumped).
    Nexthop(NexthopObject),
    /// The end of a dump.
    Done,
    /// An error answer (a negative errno), or an acknowledgement (0).
    Error(i32),
    /// A link changed (up, down, added, removed). The kernel flushes the IPv4 routes of
    /// a link that goes down or away without a message for each, so this says to read
    /// the routes again.
    Link,
    /// Anything else (another family's route, another message type): not read.
    Other,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes (`struct rtattr`: length, type, value, padded to 4) of `b`, as (type,
/// value); an error names the one whose length does not fit.
fn attributes(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let (len, ty) = (usize::from(u16_at(b, 0).unwrap_or(0)), u16_at(b, 2).unwrap_or(0));
        if len < 4 || len > b.len() {
            return Err(format!("attribute {ty}: length {len} with {} bytes left", b.len()));
        }
        out.push((ty & 0x3fff, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    Ok(out)
}

/// An address of `family`'s size from `v`.
fn address(v: &[u8], v6: bool) -> Result<IpAddr, String> {
    match (v6, v.len()) {
        (false, 4) => Ok(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).unwrap_or_default()))),
        (true, 16) => Ok(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).unwrap_or_default()))),
        _ => Err(format!(
            "an address of {} bytes in an IPv{} route",
            v.len(),
            if v6 { 6 } else { 4 }
        )),
    }
}

/// `RTA_VIA`: a family (2 bytes) then its address.
fn via(v: &[u8]) -> Result<IpAddr, String> {
    let family = u16_at(v, 0).ok_or("RTA_VIA shorter than its family")?;
    match i32::from(family) {
        libc::AF_INET => address(&v[2..], false),
        libc::AF_INET6 => address(&v[2..], true),
        f => Err(format!("RTA_VIA of family {f}")),
    }
}

/// Reads a gateway attribute into `hop`.
fn gateway_into(hop: &mut Hop, ty: u16, v: &[u8], v6: bool) -> Result<(), String> {
    match ty {
        RTA_GATEWAY => hop.gateway = Some(address(v, v6)?),
        RTA_VIA => hop.gateway = Some(via(v)?),
        _ => {}
    }
    Ok(())
}

/// `RTA_MULTIPATH`: `struct rtnexthop` (length, flags, weight - 1, ifindex) entries, each
/// followed by its own attributes.
fn multipath(mut b: &[u8], v6: bool) -> Result<Vec<Hop>, String> {
    let mut hops = Vec::new();
    while b.len() >= 8 {
        let len = usize::from(u16_at(b, 0).unwrap_or(0));
        if len < 8 || len > b.len() {
            return Err(format!("a multipath hop of length {len} with {} bytes left", b.len()));
        }
        let mut hop = Hop {
            ifindex: u32_at(b, 4).unwrap_or(0),
            gateway: None,
            weight: u32::from(b[3]) + 1,
            flags: b[2],
        };
        for (ty, v) in attributes(&b[8..len])? {
            gateway_into(&mut hop, ty, v, v6)?;
        }
        hops.push(hop);
        b = &b[align4(len).min(b.len())..];
    }
    Ok(hops)
}

/// A 4-byte attribute `ty`'s value.
fn word(ty: &str, v: &[u8]) -> Result<u32, String> {
    <[u8; 4]>::try_from(v)
        .map(u32::from_ne_bytes)
        .map_err(|_| format!("{ty} of {} bytes", v.len()))
}

/// A route message's body (`struct rtmsg`, then attributes).
fn route(body: &[u8], deleted: bool) -> Result<Message, String> {
    let h = body.get(..12).ok_or("a route message shorter than its header")?;
    let v6 = match i32::from(h[0]) {
        libc::AF_INET => false,
        libc::AF_INET6 => true,
        _ => return Ok(Message::Other),
    };
    let mut r = Route {
        deleted,
        dst: if v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        },
        len: h[1],
        src_len: h[2],
        tos: h[3],
        table: u32::from(h[4]),
        protocol: h[5],
        kind: h[7],
        flags: u32_at(h, 8).unwrap_or(0),
        metric: 0,
        hops: Vec::new(),
        nexthop_object: None,
    };
    if r.len > if v6 { 128 } else { 32 } {
        return Err(format!("prefix length {} for IPv{}", r.len, if v6 { 6 } else { 4 }));
    }
    let mut single = Hop {
        ifindex: 0,
        gateway: None,
        weight: 1,
        flags: 0,
    };
    for (ty, v) in attributes(&body[12..])? {
        match ty {
            RTA_DST => r.dst = address(v, v6)?,
            RTA_OIF => single.ifindex = word("RTA_OIF", v)?,
            RTA_GATEWAY | RTA_VIA => gateway_into(&mut single, ty, v, v6)?,
            RTA_PRIORITY => r.metric = word("RTA_PRIORITY", v)?,
            RTA_TABLE => r.table = word("RTA_TABLE", v)?,
            RTA_MULTIPATH => r.hops = multipath(v, v6)?,
            RTA_NH_ID => r.nexthop_object = Some(word("RTA_NH_ID", v)?),
            _ => {}
        }
    }
    if r.hops.is_empty() && (single.ifindex != 0 || single.gateway.is_some()) {
        r.hops.push(single);
    }
    Ok(Message::Route(r))
}

/// A nexthop object message's body (`struct nhmsg`: family, scope, protocol, reserved,
/// flags; then attributes).
fn nexthop(body: &[u8], deleted: bool) -> Result<Message, String> {
    let h = body.get(..8).ok_or("a nexthop message shorter than its header")?;
    let v6 = i32::from(h[0]) == libc::AF_INET6;
    let mut id = None;
    let mut hop = Hop {
        ifindex: 0,
        gateway: None,
        weight: 1,
        flags: u32_at(h, 4).unwrap_or(0) as u8,
    };
    let (mut blackhole, mut group) = (false, None);
    for (ty, v) in attributes(&body[8..])? {
        match ty {
            NHA_ID => id = Some(word("NHA_ID", v)?),
            NHA_BLACKHOLE => blackhole = true,
            NHA_OIF => hop.ifindex = word("NHA_OIF", v)?,
            NHA_GATEWAY => hop.gateway = Some(address(v, v6)?),
            // `struct nexthop_grp`: id, weight - 1 (low 8 bits, then high 8), reserved.
            NHA_GROUP if v.len() % 8 == 0 => {
                group = Some(
                    v.chunks(8)
                        .map(|e| (u32_at(e, 0).unwrap_or(0), (u32::from(e[5]) << 8 | u32::from(e[4])) + 1))
                        .collect(),
                )
            }
            NHA_GROUP => return Err(format!("NHA_GROUP of {} bytes", v.len())),
            _ => {}
        }
    }
    let via = match (blackhole, group) {
        (true, _) => ObjectVia::Blackhole,
        (false, Some(g)) => ObjectVia::Group(g),
        (false, None) => ObjectVia::Hop(hop),
    };
    Ok(Message::Nexthop(NexthopObject {
        deleted,
        id: id.ok_or("a nexthop message without NHA_ID")?,
        via,
    }))
}

/// What to dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump {
    /// Every route of every table, both families.
    Routes,
    /// The routes of one table, both families: the kernel leaves the other tables out
    /// (strict dump requests, Linux 4.20 on; an older kernel sends them all, and readers
    /// look at each route's table anyway).
    Table(u32),
    /// Every nexthop object.
    Nexthops,
}

/// The messages of one datagram, in order; an error names the first malformed one (the
/// messages before it are lost with it: a datagram is read whole or not at all).
pub fn parse(mut b: &[u8]) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32_at(b, 0).ok_or("a message shorter than its header")? as usize;
        if len < 16 || len > b.len() {
            return Err(format!("a message of length {len} with {} bytes left", b.len()));
        }
        let body = &b[16..len];
        out.push(match u16_at(b, 4).unwrap_or(0) {
            NLMSG_DONE => Message::Done,
            NLMSG_ERROR => Message::Error(u32_at(body, 0).ok_or("an error message without its code")? as i32),
            t @ (RTM_NEWROUTE | RTM_DELROUTE) => route(body, t == RTM_DELROUTE)?,
            t @ (RTM_NEWNEXTHOP | RTM_DELNEXTHOP) => nexthop(body, t == RTM_DELNEXTHOP)?,
            RTM_NEWLINK | RTM_DELLINK => Message::Link,
            _ => Message::Other,
        });
        b = &b[align4(len).min(b.len())..];
    }
    Ok(out)
}

/// A route socket in the namespace it was opened in: subscribed to every IPv4 and IPv6
/// route change and every link change, or asking for dumps of every table.
pub struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
}

/// What a receive got.
pub enum Received {
    /// A datagram of this many bytes.
    Bytes(usize),
    /// Nothing within the socket's timeout.
    Nothing,
    /// The kernel dropped messages (ENOBUFS: the socket's buffer overflowed): what it has
    /// must be dumped again.
    Overrun,
}

fn last(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl RouteSocket {
    /// A socket subscribed to route and link changes, its receives waiting at most
    /// `timeout` (so a thread reading it can look at other work between).
    pub fn subscribed(timeout: Duration) -> io::Result<RouteSocket> {
        Self::open(
            timeout,
            RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEXTHOP,
        )
    }

    /// A socket for dumps only ([`RouteSocket::request_dump`]), subscribed to nothing,
    /// whose dump requests the kernel checks strictly where it can (so that it filters
    /// them by table).
    pub fn for_dumps(timeout: Duration) -> io::Result<RouteSocket> {
        let sock = Self::open(timeout, 0)?;
        let on: libc::c_int = 1;
        // SAFETY: an int option of the netlink level, from a live int. A kernel before
        // 4.20 refuses it (ENOPROTOOPT): its dumps are whole, which readers allow for.
        unsafe {
            libc::setsockopt(
                sock.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_GET_STRICT_CHK,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(sock)
    }

    fn open(timeout: Duration, groups: u32) -> io::Result<RouteSocket> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(last("opening a route netlink socket"));
        }
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set after.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = groups;
        let size = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a live sockaddr_nl of `size` bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), size) } < 0 {
            return Err(last("subscribing to route changes (bind)"));
        }
        // A full table's dump and a burst of changes fit: 4 MiB (forced past rmem_max
        // as root; the plain request where that is refused).
        let buf: libc::c_int = 4 << 20;
        let set = |opt| {
            // SAFETY: an int option of the socket's own level, from a live int.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const buf).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        if set(libc::SO_RCVBUFFORCE) < 0 {
            set(libc::SO_RCVBUF);
        }
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval, given live and of its size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(last("setting the receive timeout"));
        }
        Ok(RouteSocket { fd, seq: 0 })
    }

    /// Asks for the routes `what` names, of both families, or every nexthop object; they
    /// come as route or nexthop messages, then [`Message::Done`].
    pub fn request_dump(&mut self, what: Dump) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        // The header, then a zero rtmsg (12 bytes) or nhmsg (8): every family; for one
        // table, an RTA_TABLE attribute (32 bits: any table) after the rtmsg.
        let (ty, len) = match what {
            Dump::Routes => (RTM_GETROUTE, 28),
            Dump::Table(_) => (RTM_GETROUTE, 36),
            Dump::Nexthops => (RTM_GETNEXTHOP, 24),
        };
        let mut buf = [0u8; 36];
        if let Dump::Table(table) = what {
            buf[28..30].copy_from_slice(&8u16.to_ne_bytes());
            buf[30..32].copy_from_slice(&RTA_TABLE.to_ne_bytes());
            buf[32..36].copy_from_slice(&table.to_ne_bytes());
        }
        let msg = &mut buf[..len];
        msg[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&ty.to_ne_bytes());
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // SAFETY: an all-zero sockaddr_nl is valid: pid 0 is the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `msg` and `to` are live for the call, of the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent != msg.len() as isize {
            return Err(last("asking the kernel for a dump"));
        }
        Ok(())
    }

    /// Receives one datagram into `buf` (which must hold the largest: 64 KiB will do),
    /// waiting up to the socket's timeout.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        self.recv_flags(buf, 0)
    }

    /// Receives one datagram into `buf` if one is there, without waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        self.recv_flags(buf, libc::MSG_DONTWAIT)
    }

    fn recv_flags(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<Received> {
        // SAFETY: `buf` is live and writable for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n >= 0 {
            return Ok(Received::Bytes(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(Received::Nothing),
            Some(libc::ENOBUFS) => Ok(Received::Overrun),
            _ => Err(io::Error::new(e.kind(), format!("reading route changes: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attribute, padded.
    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut a = ((v.len() + 4) as u16).to_ne_bytes().to_vec();
        a.extend(ty.to_ne_bytes());
        a.extend(v);
        a.resize(align4(a.len()), 0);
        a
    }

    /// A route message: the netlink header, rtmsg, then `attrs`.
    fn message(ty: u16, rtmsg: [u8; 12], attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = rtmsg.iter().copied().chain(attrs.concat()).collect();
        let mut m = ((body.len() + 16) as u32).to_ne_bytes().to_vec();
        m.extend(ty.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(body);
        m
    }

    fn rtmsg(family: i32, len: u8, table: u8, protocol: u8, kind: u8) -> [u8; 12] {
        [family as u8, len, 0, 0, table, protocol, 0, kind, 0, 0, 0, 0]
    }

    #[test]
    fn a_gateway_route_a_multipath_route_and_the_end_of_a_dump() {
        let v4 = message(
            RTM_NEWROUTE,
            rtmsg(libc::AF_INET, 24, 254, 4, kind::UNICAST),
            &[
                attr(RTA_TABLE, &254u32.to_ne_bytes()),
                attr(RTA_DST, &[10, 0, 9, 0]),
                attr(RTA_PRIORITY, &20u32.to_ne_bytes()),
                attr(RTA_GATEWAY, &[10, 0, 2, 2]),
                attr(RTA_OIF, &7u32.to_ne_bytes()),
            ],
        );
        let gw6: Ipv6Addr = "fd00::2".parse().unwrap();
        let mut hops = Vec::new();
        for (ifindex, weight) in [(3u32, 1u8), (4, 3)] {
            let gw = attr(RTA_GATEWAY, &gw6.octets());
            hops.extend(((8 + gw.len()) as u16).to_ne_bytes());
            hops.extend([RTNH_F_LINKDOWN * u8::from(ifindex == 4), weight - 1]);
            hops.extend(ifindex.to_ne_bytes());
            hops.extend(gw);
        }
        let v6 = message(
            RTM_DELROUTE,
            rtmsg(libc::AF_INET6, 48, 100, 12, kind::UNICAST),
            &[
                attr(RTA_DST, &"fd09::".parse::<Ipv6Addr>().unwrap().octets()),
                attr(RTA_MULTIPATH, &hops),
            ],
        );
        let done = message(NLMSG_DONE, [0; 12], &[]);
        let all = [v4, v6, done].concat();
        let got = parse(&all).unwrap();
        assert_eq!(got.len(), 3);
        let Message::Route(r) = &got[0] else { panic!("{got:?}") };
        assert_eq!(
            (r.deleted, r.dst, r.len, r.table, r.protocol, r.metric),
            (false, "10.0.9.0".parse().unwrap(), 24, 254, 4, 20)
        );
        assert_eq!(
            r.hops,
            [Hop {
                ifindex: 7,
                gateway: Some("10.0.2.2".parse().unwrap()),
                weight: 1,
                flags: 0,
            }]
        );
        let Message::Route(r) = &got[1] else { panic!("{got:?}") };
        assert_eq!((r.deleted, r.len, r.table, r.protocol), (true, 48, 100, 12));
        assert_eq!(
            r.hops
                .iter()
                .map(|h| (h.ifindex, h.weight, h.flags, h.gateway))
                .collect::<Vec<_>>(),
            [(3, 1, 0, Some(gw6.into())), (4, 3, RTNH_F_LINKDOWN, Some(gw6.into()))]
        );
        assert_eq!(got[2], Message::Done);
    }

    #[test]
    fn nexthop_objects_a_hop_a_weighted_group_and_a_blackhole() {
        let nhmsg = |family: i32| [family as u8, 0, 0, 0, 0, 0, 0, 0];
        let body =
            |family, attrs: &[Vec<u8>]| -> Vec<u8> { nhmsg(family).iter().copied().chain(attrs.concat()).collect() };
        let framed = |ty: u16, body: Vec<u8>| {
            let mut m = ((body.len() + 16) as u32).to_ne_bytes().to_vec();
            m.extend(ty.to_ne_bytes());
            m.extend([0u8; 10]);
            m.extend(body);
            m
        };
        let mut group = Vec::new();
        for (id, weight_less_one) in [(10u32, 0u8), (11, 2)] {
            group.extend(id.to_ne_bytes());
            group.extend([weight_less_one, 0, 0, 0]);
        }
        let all = [
            framed(
                RTM_NEWNEXTHOP,
                body(
                    libc::AF_INET,
                    &[
                        attr(NHA_ID, &10u32.to_ne_bytes()),
                        attr(NHA_OIF, &3u32.to_ne_bytes()),
                        attr(NHA_GATEWAY, &[10, 0, 1, 2]),
                    ],
                ),
            ),
            framed(
                RTM_NEWNEXTHOP,
                body(
                    libc::AF_UNSPEC,
                    &[attr(NHA_ID, &12u32.to_ne_bytes()), attr(NHA_GROUP, &group)],
                ),
            ),
            framed(
                RTM_DELNEXTHOP,
                body(
                    libc::AF_UNSPEC,
                    &[attr(NHA_ID, &13u32.to_ne_bytes()), attr(NHA_BLACKHOLE, &[])],
                ),
            ),
        ]
        .concat();
        let got = parse(&all).unwrap();
        assert_eq!(
            got,
            [
                Message::Nexthop(NexthopObject {
                    deleted: false,
                    id: 10,
                    via: ObjectVia::Hop(Hop {
                        ifindex: 3,
                        gateway: Some("10.0.1.2".parse().unwrap()),
                        weight: 1,
                        flags: 0
                    })
                }),
                Message::Nexthop(NexthopObject {
                    deleted: false,
                    id: 12,
                    via: ObjectVia::Group(vec![(10, 1), (11, 3)])
                }),
                Message::Nexthop(NexthopObject {
                    deleted: true,
                    id: 13,
                    via: ObjectVia::Blackhole
                }),
            ]
        );
        let odd = framed(
            RTM_NEWNEXTHOP,
            body(
                libc::AF_UNSPEC,
                &[attr(NHA_ID, &12u32.to_ne_bytes()), attr(NHA_GROUP, &group[..12])],
            ),
        );
        assert_eq!(parse(&odd).unwrap_err(), "NHA_GROUP of 12 bytes");
        let without_id = framed(RTM_NEWNEXTHOP, body(libc::AF_INET, &[]));
        assert_eq!(parse(&without_id).unwrap_err(), "a nexthop message without NHA_ID");
    }

    #[test]
    fn malformed_messages_are_errors_that_say_what() {
        let good = message(
            RTM_NEWROUTE,
            rtmsg(libc::AF_INET, 32, 254, 4, kind::UNICAST),
            &[attr(RTA_DST, &[10, 0, 0, 1])],
        );
        assert!(parse(&good).is_ok());
        for cut in 1..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let wide = message(RTM_NEWROUTE, rtmsg(libc::AF_INET, 33, 254, 4, kind::UNICAST), &[]);
        assert_eq!(parse(&wide).unwrap_err(), "prefix length 33 for IPv4");
        let six_in_four = message(
            RTM_NEWROUTE,
            rtmsg(libc::AF_INET, 32, 254, 4, kind::UNICAST),
            &[attr(RTA_DST, &[0; 16])],
        );
        assert_eq!(
            parse(&six_in_four).unwrap_err(),
            "an address of 16 bytes in an IPv4 route"
        );
        let other = message(RTM_NEWROUTE, rtmsg(libc::AF_BRIDGE, 0, 0, 0, 0), &[]);
        assert_eq!(parse(&other).unwrap(), [Message::Other]);
    }
}
