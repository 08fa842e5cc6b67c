//! Test support for tests that send real packets: network namespaces and veth pairs named
//! uniquely per process and removed on drop (also when the test fails), threads that run
//! inside a namespace, and raw `AF_PACKET` sockets to send and capture frames.
//!
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for `setns`).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: `geteuid` has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Panics with a clear message unless running as root.
pub fn require_root() {
    if !is_root() {
        panic!("this test creates network namespaces and must run as root (see README: ./scripts/test)");
    }
}

/// A name unique to this process and call, at most 15 bytes (an interface name limit).
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let s = format!("{tag}{}{n}", std::process::id() % 100_000);
    s.chars().take(15).collect()
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> io::Result<Output> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// A network namespace, deleted (with every interface in it) on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `vrt-<tag><pid><n>` with its loopback up and IPv6 off by default, so the
    /// kernel sends no router solicitations or MLD reports of its own into a test's counts
    /// (tests that want IPv6 turn it on per interface).
    pub fn new(tag: &str) -> io::Result<Self> {
        require_root();
        let name = format!("vrt-{}", unique(tag));
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        ns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace (`ip netns exec`), failing with its stderr.
    pub fn exec(&self, cmd: &[&str]) -> io::Result<Output> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "in {}: {}: {}",
                self.name,
                cmd.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out)
    }

    /// Moves the calling thread into the namespace (sockets it creates live there).
    pub fn enter(&self) -> io::Result<()> {
        let f = File::open(format!("/var/run/netns/{}", self.name))?;
        // SAFETY: `f` is an open namespace file; setns only changes this thread's namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `f` on a new thread inside the namespace and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter().expect("entering the namespace");
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A child process the test started, killed (SIGKILL to its PID, never by name) and reaped
/// on drop unless it has already exited, so a failing test leaves no process behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A veth pair with one end in each namespace (both ends vanish with their namespaces).
pub struct Veth {
    /// End in the first namespace.
    pub a: String,
    /// End in the second namespace.
    pub b: String,
}

impl Veth {
    /// Creates the pair with `queues` RX/TX queues per end, MTU 1500, both ends up, and
    /// moves `a` into `ns_a` and `b` into `ns_b`.
    pub fn new(ns_a: &Netns, ns_b: &Netns, queues: u32) -> io::Result<Self> {
        let a = unique("va");
        let b = unique("vb");
        let q = queues.to_string();
        ip(&[
            "link",
            "add",
            &a,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
        ])?;
        let v = Veth { a, b };
        let moved = ip(&["link", "set", &v.a, "netns", ns_a.name()])
            .and_then(|_| ip(&["link", "set", &v.b, "netns", ns_b.name()]));
        if let Err(e) = moved {
            let _ = ip(&["link", "del", &v.a]);
            return Err(e);
        }
        for (ns, end) in [(ns_a, &v.a), (ns_b, &v.b)] {
            ns.exec(&["sysctl", "-qw", &format!("net.ipv6.conf.{end}.disable_ipv6=1")])?;
            ns.exec(&["ip", "link", "set", end, "up"])?;
        }
        Ok(v)
    }
}

/// A raw socket bound to one interface of the calling thread's namespace: sends whole
/// Ethernet frames and receives everything the interface sees.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    /// Opens it on `ifname`.
    pub fn new(ifname: &str) -> io::Result<Self> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket creation; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(io::Error::other(format!("no interface {ifname}")));
        }
        // SAFETY: zeroed sockaddr_ll is a valid starting value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto;
        sa.sll_ifindex = ifindex;
        // SAFETY: `sa` is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let big: libc::c_int = 8 << 20;
        // SAFETY: setting an int option from a live int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&big as *const i32).cast(),
                4,
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&big as *const i32).cast(),
                4,
            );
        }
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends one frame; retries while the queue is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `frame` is a live buffer of the length passed.
            let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOBUFS) && e.raw_os_error() != Some(libc::EAGAIN) {
                return Err(e);
            }
            std::thread::yield_now();
        }
    }

    /// Receives frames until `stop` says so or `timeout` passes without one; frames the
    /// interface sent itself (outgoing) are skipped.
    pub fn recv_until(&self, timeout: Duration, mut stop: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
        let mut buf = vec![0u8; 65536];
        let mut last = Instant::now();
        loop {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, 20) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            if r == 0 {
                if last.elapsed() > timeout {
                    return Ok(());
                }
                continue;
            }
            // SAFETY: zeroed sockaddr_ll is valid for the kernel to fill.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut flen = size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: `buf` and `from` are live and writable with the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut flen,
                )
            };
            if n < 0 {
                continue;
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING || from.sll_ifindex != self.ifindex {
                continue;
            }
            last = Instant::now();
            if stop(&buf[..n as usize]) {
                return Ok(());
            }
        }
    }
}

/// A minimal UDP/IPv4 Ethernet frame of `len` bytes (at least 60) whose payload starts
/// with `seq` (big-endian u64), for counting and ordering checks. The source port varies
/// with `seq` (64 flows), so multi-queue devices spread the frames by flow hash.
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], seq: u64, len: usize) -> Vec<u8> {
    let len = len.max(60);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 99, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 99, 0, 2]);
    let mut sum = 0u32;
    for c in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(41111 + (seq % 64) as u16).to_be_bytes());
    udp[2..4].copy_from_slice(&42222u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f[42..50].copy_from_slice(&seq.to_be_bytes());
    f
}

/// The sequence number [`udp_frame`] put in a frame, if it is one of ours.
pub fn frame_seq(f: &[u8]) -> Option<u64> {
    (f.len() >= 50 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[36..38] == 42222u16.to_be_bytes())
        .then(|| u64::from_be_bytes(f[42..50].try_into().expect("8 bytes")))
}
