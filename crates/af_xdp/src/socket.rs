//! AF_XDP sockets: one per (interface, queue), with their four rings.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, from_io, last};
use crate::iface;
use crate::ring::{ConsumerRing, Desc, ProducerRing, RingLayout};
use crate::umem::{Mmap, Umem};

/// Whether to ask for zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Try zero-copy, fall back to copy mode if the driver refuses.
    Auto,
    /// Zero-copy or fail.
    Required,
    /// Copy mode.
    Off,
}

/// Ring sizes (powers of two) and binding options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketConfig {
    /// RX ring entries.
    pub rx_size: u32,
    /// TX ring entries.
    pub tx_size: u32,
    /// Fill ring entries.
    pub fill_size: u32,
    /// Completion ring entries.
    pub comp_size: u32,
    /// Zero-copy choice.
    pub zero_copy: ZeroCopy,
    /// Preferred busy polling (`SO_PREFER_BUSY_POLL`) with this budget per poll; 0 = off.
    /// With it, and the device's `napi_defer_hard_irqs` and `gro_flush_timeout` set, the
    /// driver's receive work runs in the worker's `recvfrom`/`sendto` on the worker's CPU
    /// instead of in softirq wherever the packet was raised. Only where the kernel gives
    /// the socket a NAPI instance to poll: [`XskSocket::busy_poll`] says whether it did.
    pub busy_poll_budget: u16,
    /// How long a bind refused because the queue is held is tried again, sleeping in
    /// between: the kernel lets go of a closed socket's queue a moment after the close.
    /// Zero: one try, and [`Error::QueueBusy`] at once (for a caller that must not sleep
    /// and tries again later itself).
    pub queue_wait: Duration,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            comp_size: 2048,
            zero_copy: ZeroCopy::Auto,
            busy_poll_budget: 0,
            queue_wait: Duration::from_secs(1),
        }
    }
}

/// Kernel counters of one socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Dropped for other reasons (e.g. no frame).
    pub rx_dropped: u64,
    /// Invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a packet arrived.
    pub rx_fill_ring_empty: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty: u64,
}

/// An AF_XDP socket bound to one queue of one interface.
pub struct XskSocket {
    /// RX ring: packets the kernel received for us.
    pub rx: ConsumerRing<Desc>,
    /// TX ring: packets for the kernel to send.
    pub tx: ProducerRing<Desc>,
    /// Fill ring: free frames for the kernel to receive into.
    pub fill: ProducerRing<u64>,
    /// Completion ring: frames the kernel has finished sending.
    pub comp: ConsumerRing<u64>,
    // Unmapped after the rings above stop being used (fields drop in order).
    _maps: Vec<Mmap>,
    fd: OwnedFd,
    /// For interface ioctls in the socket's namespace ([`XskSocket::device_running`]).
    ioctl: OwnedFd,
    umem: Arc<Umem>,
    ifname: String,
    queue: u32,
    zero_copy: bool,
    busy_poll: BusyPoll,
    fallback: Option<String>,
}

/// What a TX kick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKick {
    /// The kernel took what it could (perhaps not everything: kick again while the ring
    /// asks for a wake-up).
    Done,
    /// Copy mode: the device dropped one frame (it has no carrier, or its queue is full),
    /// whose address comes back on the completion ring as a sent one's does; the kernel
    /// stopped there.
    Dropped,
}

/// Where preferred busy polling stands on a socket ([`SocketConfig::busy_poll_budget`]).
///
/// Busy polling runs the NAPI instance whose id the socket holds, so it does nothing on a
/// socket without one. Since Linux 6.13 only a zero-copy socket gets one (at bind, from
/// its queue); before, a copy-mode socket got its queue's with its first packet. So a
/// copy-mode socket (veth always is one) cannot busy-poll on current kernels: without
/// this state the request would be silently ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusyPoll {
    /// Not asked for.
    Off,
    /// Asked for; a copy-mode socket that has no NAPI id yet. Older kernels give it one
    /// with its first packet: call [`XskSocket::settle_busy_poll`] once one has arrived.
    Pending,
    /// The socket's `recvfrom` and `sendto` poll this NAPI instance.
    On {
        /// The NAPI id (`SO_INCOMING_NAPI_ID`).
        napi_id: u32,
    },
    /// Asked for but impossible; says why. The socket is polled through its rings only.
    Unavailable(String),
}

const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
const SO_INCOMING_NAPI_ID: libc::c_int = 56;

fn sol_socket(fd: &OwnedFd, opt: libc::c_int, v: libc::c_int, op: &'static str) -> Result<()> {
    // SAFETY: `v` is a live int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            4,
        )
    };
    if r < 0 { Err(last(op)) } else { Ok(()) }
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, v: &T, op: &'static str) -> Result<()> {
    // SAFETY: `v` points to a live value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 { Err(last(op)) } else { Ok(()) }
}

fn getsockopt<T: Default>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, op: &'static str) -> Result<T> {
    let mut v = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is a live, writable value of the size passed in `len`.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, (&mut v as *mut T).cast(), &mut len) };
    if r < 0 { Err(last(op)) } else { Ok(v) }
}

#[repr(C)]
#[derive(Default)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

#[repr(C)]
#[derive(Default)]
struct Statistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

fn map_ring(
    fd: &OwnedFd,
    off: &RingOffset,
    size: u32,
    entry: usize,
    pgoff: u64,
    op: &'static str,
) -> Result<(Mmap, RingLayout)> {
    let len = off.desc as usize + size as usize * entry;
    let m = Mmap::new(
        len,
        libc::MAP_SHARED | libc::MAP_POPULATE,
        fd.as_raw_fd(),
        pgoff as libc::off_t,
        op,
    )?;
    let l = RingLayout {
        base: m.ptr,
        producer: off.producer as usize,
        consumer: off.consumer as usize,
        flags: off.flags as usize,
        desc: off.desc as usize,
        size,
    };
    Ok((m, l))
}

impl Drop for XskSocket {
    fn drop(&mut self) {
        // The registering socket going (its fd is still open here, so no other socket
        // has that number): the next socket on this UMEM registers it afresh, as after a
        // router's workers pause and start again on the same memory.
        let _ = self
            .umem
            .owner
            .compare_exchange(self.fd.as_raw_fd(), -1, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl XskSocket {
    /// Creates a socket on `queue` of `ifname` (in the calling thread's network namespace)
    /// with frames from `umem`. The first socket of a UMEM registers it (`share` = `None`);
    /// the others pass that first socket as `share` and bind with `XDP_SHARED_UMEM`, so
    /// frames move between them by descriptor. Each socket has its own fill and completion
    /// rings. Register the socket with [`XdpProgram::register`](crate::XdpProgram::register)
    /// to receive.
    pub fn new(
        umem: &Arc<Umem>,
        ifname: &str,
        queue: u32,
        cfg: SocketConfig,
        share: Option<&XskSocket>,
    ) -> Result<Self> {
        for (name, v) in [
            ("rx", cfg.rx_size),
            ("tx", cfg.tx_size),
            ("fill", cfg.fill_size),
            ("completion", cfg.comp_size),
        ] {
            if v == 0 || !v.is_power_of_two() {
                return Err(Error::Config(format!("{name} ring size {v} must be a power of two")));
            }
        }
        let ifindex = iface::index(ifname)?;
        if let Some(queues) = iface::queue_count(ifname)?
            && queue >= queues
        {
            return Err(Error::QueueOutOfRange {
                ifname: ifname.into(),
                queue,
                queues,
            });
        }
        if let Some(s) = share
            && !Arc::ptr_eq(&s.umem, umem)
        {
            return Err(Error::Config("`share` must be a socket of the same UMEM".into()));
        }
        // SAFETY: plain socket creation; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(last("creating the AF_XDP socket"));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if share.is_none() {
            if umem.registered_with().is_some() {
                return Err(Error::Config(
                    "the UMEM is registered already: pass its first socket as `share`".into(),
                ));
            }
            let c = umem.config();
            let reg = libc::xdp_umem_reg {
                addr: umem.base().as_ptr() as u64,
                len: umem.len() as u64,
                chunk_size: c.frame_size,
                headroom: c.headroom,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(&fd, libc::XDP_UMEM_REG, &reg, "registering the UMEM (XDP_UMEM_REG)")?;
        }
        setsockopt(&fd, libc::XDP_UMEM_FILL_RING, &cfg.fill_size, "sizing the fill ring")?;
        setsockopt(
            &fd,
            libc::XDP_UMEM_COMPLETION_RING,
            &cfg.comp_size,
            "sizing the completion ring",
        )?;
        setsockopt(&fd, libc::XDP_RX_RING, &cfg.rx_size, "sizing the RX ring")?;
        setsockopt(&fd, libc::XDP_TX_RING, &cfg.tx_size, "sizing the TX ring")?;
        let off: MmapOffsets = getsockopt(
            &fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            "reading the ring offsets (XDP_MMAP_OFFSETS)",
        )?;
        let desc = size_of::<Desc>();
        let (rx_m, rx_l) = map_ring(
            &fd,
            &off.rx,
            cfg.rx_size,
            desc,
            libc::XDP_PGOFF_RX_RING as u64,
            "mapping the RX ring",
        )?;
        let (tx_m, tx_l) = map_ring(
            &fd,
            &off.tx,
            cfg.tx_size,
            desc,
            libc::XDP_PGOFF_TX_RING as u64,
            "mapping the TX ring",
        )?;
        let (fr_m, fr_l) = map_ring(
            &fd,
            &off.fr,
            cfg.fill_size,
            8,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            "mapping the fill ring",
        )?;
        let (cr_m, cr_l) = map_ring(
            &fd,
            &off.cr,
            cfg.comp_size,
            8,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "mapping the completion ring",
        )?;

        let bind = |flags: u16| {
            let sa = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: flags,
                sxdp_ifindex: ifindex,
                sxdp_queue_id: queue,
                sxdp_shared_umem_fd: share.map_or(0, |s| s.fd.as_raw_fd() as u32),
            };
            // The kernel lets go of a closed socket's queue from a work queue, a moment
            // after the close: a queue just given up (a router restarting its workers) is
            // busy for that moment, one held by a live socket stays busy.
            let give_up = Instant::now() + cfg.queue_wait;
            let mut wait = Duration::from_millis(1);
            loop {
                // SAFETY: `sa` is a valid `sockaddr_xdp` of the size passed.
                let r = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        (&sa as *const libc::sockaddr_xdp).cast(),
                        size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                    )
                };
                if r == 0 {
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EBUSY) || Instant::now() + wait > give_up {
                    return Err(e);
                }
                std::thread::sleep(wait);
                wait *= 2;
            }
        };
        let bind_err = |e: io::Error| match e.raw_os_error() {
            Some(libc::EBUSY) => Error::QueueBusy {
                ifname: ifname.into(),
                queue,
            },
            Some(libc::EINVAL) if iface::queue_count(ifname).ok().flatten().is_none() => Error::Sys {
                op: "binding the AF_XDP socket (is the queue index valid for this interface?)",
                source: e,
            },
            _ => from_io("binding the AF_XDP socket", e),
        };
        let (zero_copy, fallback) = if share.is_some() {
            // A socket sharing a UMEM takes its mode from the first socket; flags are refused.
            bind(libc::XDP_SHARED_UMEM).map_err(bind_err)?;
            (share.is_some_and(|s| s.zero_copy), None)
        } else {
            let base = libc::XDP_USE_NEED_WAKEUP;
            match cfg.zero_copy {
                ZeroCopy::Off => {
                    bind(base | libc::XDP_COPY).map_err(bind_err)?;
                    (false, None)
                }
                ZeroCopy::Required => {
                    bind(base | libc::XDP_ZEROCOPY).map_err(|e| match e.raw_os_error() {
                        Some(libc::EOPNOTSUPP) | Some(libc::EPROTONOSUPPORT) => {
                            Error::ZeroCopyUnsupported { ifname: ifname.into() }
                        }
                        _ => bind_err(e),
                    })?;
                    (true, None)
                }
                ZeroCopy::Auto => match bind(base | libc::XDP_ZEROCOPY) {
                    Ok(()) => (true, None),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EPROTONOSUPPORT)) => {
                        bind(base | libc::XDP_COPY).map_err(bind_err)?;
                        (
                            false,
                            Some(format!(
                                "`{ifname}` queue {queue}: zero-copy not supported ({e}); using copy mode"
                            )),
                        )
                    }
                    Err(e) => return Err(bind_err(e)),
                },
            }
        };
        if share.is_none() {
            umem.owner.store(fd.as_raw_fd(), Ordering::Release);
        }
        if cfg.busy_poll_budget > 0 {
            sol_socket(&fd, SO_PREFER_BUSY_POLL, 1, "enabling preferred busy polling")?;
            sol_socket(&fd, SO_BUSY_POLL, 20, "setting the busy-poll time")?;
            sol_socket(
                &fd,
                SO_BUSY_POLL_BUDGET,
                i32::from(cfg.busy_poll_budget),
                "setting the busy-poll budget",
            )?;
        }
        // SAFETY: each layout describes a ring just mapped from this socket at the offsets
        // the kernel reported, kept alive in `_maps` for the socket's lifetime; each ring
        // gets exactly one producer or consumer view (ours).
        let (rx, tx, fill, comp) = unsafe {
            (
                ConsumerRing::new(&rx_l),
                ProducerRing::new(&tx_l),
                ProducerRing::new(&fr_l),
                ConsumerRing::new(&cr_l),
            )
        };
        let mut sock = XskSocket {
            rx,
            tx,
            fill,
            comp,
            _maps: vec![rx_m, tx_m, fr_m, cr_m],
            fd,
            ioctl: iface::ioctl_socket()?,
            umem: umem.clone(),
            ifname: ifname.into(),
            queue,
            zero_copy,
            busy_poll: BusyPoll::Off,
            fallback,
        };
        if cfg.busy_poll_budget > 0 {
            // A zero-copy socket has its id from the bind or never will; a copy-mode one
            // may still get it with its first packet.
            sock.busy_poll = if zero_copy || sock.napi_id().is_some() {
                sock.busy_poll_now()
            } else {
                BusyPoll::Pending
            };
        }
        Ok(sock)
    }

    /// Tells the kernel there is something on the TX ring (needed in copy mode, and in
    /// zero-copy mode when the TX ring asks for a wake-up). In copy mode the kernel sends
    /// from the ring in this call, and stops at the first frame the device drops.
    pub fn kick_tx(&self) -> Result<TxKick> {
        // SAFETY: a zero-length send with no buffer on our own socket.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // Again / no buffers mean "try again on the next kick", not failure.
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS) => {}
                // The device's transmit returned NET_XMIT_DROP: the frame is completed
                // unsent (`__xsk_generic_xmit`).
                Some(libc::EBUSY) if !self.zero_copy => return Ok(TxKick::Dropped),
                Some(libc::EBUSY) => {}
                Some(libc::ENETDOWN) => {
                    return Err(Error::DeviceDown {
                        ifname: self.ifname.clone(),
                    });
                }
                Some(libc::ENXIO) => return Err(self.gone()),
                _ => return Err(from_io("kicking TX (sendto)", e)),
            }
        }
        Ok(TxKick::Done)
    }

    /// Whether the socket's device is up and operational (`IFF_UP` and `IFF_RUNNING`):
    /// not so for a veth whose peer is down, or a NIC without a link, which still take
    /// sends from the TX ring and drop them ([`TxKick::Dropped`]).
    pub fn device_running(&self) -> Result<bool> {
        iface::is_running(&self.ioctl, &self.ifname)
    }

    /// ENXIO from a bound socket: the kernel unbound it because its device went away.
    fn gone(&self) -> Error {
        Error::DeviceGone {
            ifname: self.ifname.clone(),
        }
    }

    /// Wakes the kernel to receive when the fill ring asks for it (`need_wakeup`).
    pub fn wake_rx(&self) -> Result<()> {
        // SAFETY: a zero-length, non-blocking receive with no buffer on our own socket.
        let r = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EBUSY | libc::ENETDOWN) => {}
                Some(libc::ENXIO) => return Err(self.gone()),
                _ => return Err(from_io("waking RX (recvfrom)", e)),
            }
        }
        Ok(())
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> Result<SocketStats> {
        let s: Statistics = getsockopt(&self.fd, libc::SOL_XDP, libc::XDP_STATISTICS, "reading XDP_STATISTICS")?;
        Ok(SocketStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            tx_ring_empty: s.tx_ring_empty_descs,
        })
    }

    /// The UMEM this socket uses.
    pub fn umem(&self) -> &Arc<Umem> {
        &self.umem
    }

    /// Interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Queue index.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Whether the socket drives (or may yet drive) the driver by preferred busy polling:
    /// then call [`XskSocket::wake_rx`] on every empty poll and [`XskSocket::kick_tx`] after
    /// every send.
    pub fn is_busy_poll(&self) -> bool {
        matches!(self.busy_poll, BusyPoll::Pending | BusyPoll::On { .. })
    }

    /// Where preferred busy polling stands.
    pub fn busy_poll(&self) -> &BusyPoll {
        &self.busy_poll
    }

    /// Decides a [`BusyPoll::Pending`] socket's busy polling; call it once the socket has
    /// received a packet (by then an older kernel has given it its NAPI id): `On` if it
    /// has an id, else `Unavailable`. Other states stay as they are.
    pub fn settle_busy_poll(&mut self) -> &BusyPoll {
        if matches!(self.busy_poll, BusyPoll::Pending) {
            self.busy_poll = self.busy_poll_now();
        }
        &self.busy_poll
    }

    fn busy_poll_now(&self) -> BusyPoll {
        match self.napi_id() {
            Some(napi_id) => BusyPoll::On { napi_id },
            None => BusyPoll::Unavailable(format!(
                "`{}` queue {}: busy polling unavailable: the kernel gave the socket no NAPI \
                 instance to poll ({}); polling the rings instead",
                self.ifname,
                self.queue,
                if self.zero_copy {
                    "the driver links none to the queue"
                } else {
                    "Linux 6.13 and later give one to zero-copy sockets only"
                }
            )),
        }
    }

    /// The id of the NAPI instance the socket busy-polls (`SO_INCOMING_NAPI_ID`), if it has
    /// one.
    pub fn napi_id(&self) -> Option<u32> {
        let id: u32 = getsockopt(&self.fd, libc::SOL_SOCKET, SO_INCOMING_NAPI_ID, "reading the NAPI id").ok()?;
        (id != 0).then_some(id)
    }

    /// Whether the socket is in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Why zero-copy was not used, when [`ZeroCopy::Auto`] fell back.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
