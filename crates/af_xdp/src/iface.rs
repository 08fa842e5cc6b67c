//! Interface facts, looked up in the calling thread's network namespace (an ioctl on a
//! socket, not `/sys`, which shows the namespace it was mounted in).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result, last};

/// The interface's index.
pub fn index(ifname: &str) -> Result<u32> {
    let c = CString::new(ifname).map_err(|_| Error::NoInterface(ifname.into()))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(Error::NoInterface(ifname.into()))
    } else {
        Ok(i)
    }
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut EthtoolChannels,
    pad: [u8; 16],
}

/// A socket for interface ioctls, in the calling thread's network namespace (which the
/// ioctls then look in, whatever thread makes them).
pub(crate) fn ioctl_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket creation; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last("socket for interface ioctls"));
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
struct IfFlagsReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    pad: [u8; 22],
}

/// Whether the interface is up and operational (`IFF_UP` and `IFF_RUNNING`: a veth whose
/// peer is down, or a NIC without a link, is up but not running), asked through `sock`
/// ([`ioctl_socket`]) in its namespace.
pub(crate) fn is_running(sock: &OwnedFd, ifname: &str) -> Result<bool> {
    let mut req = IfFlagsReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        pad: [0; 22],
    };
    for (d, s) in req.name.iter_mut().zip(ifname.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s as libc::c_char;
    }
    // SAFETY: `req` is a valid `struct ifreq` (name, then the flags union member, padded
    // to its full size); SIOCGIFFLAGS reads the name and writes the flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(last("reading the interface flags (SIOCGIFFLAGS)"));
    }
    let want = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    Ok(req.flags & want == want)
}

/// Receive queues of the interface, if the driver reports them (`ETHTOOL_GCHANNELS`).
pub fn queue_count(ifname: &str) -> Result<Option<u32>> {
    index(ifname)?;
    let fd = ioctl_socket()?;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut ch,
        pad: [0; 16],
    };
    for (d, s) in req.name.iter_mut().zip(ifname.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s as libc::c_char;
    }
    // SAFETY: `req` is a valid `struct ifreq` whose data pointer refers to `ch`, which
    // outlives the call; SIOCETHTOOL reads the command from it and fills it in.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if r < 0 {
        return Ok(None);
    }
    Ok(Some(ch.rx_count.max(ch.combined_count).max(1)))
}
