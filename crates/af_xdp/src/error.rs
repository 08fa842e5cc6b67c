//! Errors that say what to do about them.

use std::fmt;
use std::io;

/// Why setting up AF_XDP failed.
#[derive(Debug)]
pub enum Error {
    /// The kernel refused for lack of privilege.
    Permission {
        /// What was being done.
        op: &'static str,
    },
    /// No interface with this name in the current network namespace.
    NoInterface(String),
    /// The interface has fewer queues.
    QueueOutOfRange {
        /// Interface.
        ifname: String,
        /// Queue asked for.
        queue: u32,
        /// Queues it has.
        queues: u32,
    },
    /// The XDP program could not be attached.
    AttachRefused {
        /// Interface.
        ifname: String,
        /// Mode tried last.
        mode: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
    /// Zero-copy was required but the driver does not support it.
    ZeroCopyUnsupported {
        /// Interface.
        ifname: String,
    },
    /// Another AF_XDP socket holds the queue (one just closed lets go of it a moment
    /// later; [`SocketConfig::queue_wait`](crate::SocketConfig::queue_wait) said how long
    /// to wait).
    QueueBusy {
        /// Interface.
        ifname: String,
        /// Queue index.
        queue: u32,
    },
    /// The socket's device went away (deleted, or moved to another namespace): the
    /// kernel unbound the socket, which can no longer send or receive.
    DeviceGone {
        /// Interface.
        ifname: String,
    },
    /// The socket's device is down: the kernel takes nothing from the TX ring until it is
    /// up again.
    DeviceDown {
        /// Interface.
        ifname: String,
    },
    /// Hugepages were asked for and none could be mapped.
    NoHugepages {
        /// Bytes wanted.
        bytes: usize,
    },
    /// A parameter is out of range.
    Config(String),
    /// Any other failed system call.
    Sys {
        /// What was being done.
        op: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Permission { op } => write!(
                f,
                "{op}: permission denied. AF_XDP needs CAP_NET_ADMIN (attach XDP), CAP_BPF or \
                 CAP_SYS_ADMIN (load the program), CAP_NET_RAW (AF_XDP socket): run as root or \
                 grant them (setcap cap_net_admin,cap_net_raw,cap_bpf+ep BINARY); on kernels \
                 before 5.11 also raise RLIMIT_MEMLOCK (ulimit -l unlimited)"
            ),
            Error::NoInterface(name) => write!(
                f,
                "no interface `{name}` in this network namespace (check `ip link`, or run inside \
                 the namespace that holds it)"
            ),
            Error::QueueOutOfRange { ifname, queue, queues } => write!(
                f,
                "`{ifname}` has {queues} queue(s); queue {queue} does not exist (queues are \
                 numbered from 0; for veth create the pair with numrxqueues/numtxqueues)"
            ),
            Error::AttachRefused { ifname, mode, source } => {
                write!(
                    f,
                    "attaching the XDP program to `{ifname}` in {mode} mode failed: {source}"
                )?;
                if source.raw_os_error() == Some(libc::ERANGE) {
                    write!(
                        f,
                        "; for veth this means the MTU of the peer is above the XDP limit \
                         (3506 with 4 KiB pages): lower it with `ip link set PEER mtu 1500`"
                    )?;
                }
                if source.raw_os_error() == Some(libc::EBUSY) || source.raw_os_error() == Some(libc::EEXIST) {
                    write!(f, "; another XDP program is attached (see `ip link show {ifname}`)")?;
                }
                Ok(())
            }
            Error::ZeroCopyUnsupported { ifname } => write!(
                f,
                "`{ifname}` does not support AF_XDP zero-copy (veth never does): use copy mode \
                 or allow the fallback"
            ),
            Error::QueueBusy { ifname, queue } => write!(
                f,
                "binding the AF_XDP socket: another AF_XDP socket holds this queue \
                 (`{ifname}` queue {queue}; a socket just closed lets go of it a moment later)"
            ),
            Error::DeviceGone { ifname } => write!(
                f,
                "`{ifname}` is gone (deleted or moved to another namespace): its AF_XDP socket \
                 is unbound; remove the port"
            ),
            Error::DeviceDown { ifname } => write!(
                f,
                "`{ifname}` is down: nothing is sent until it is up again (`ip link set {ifname} up`)"
            ),
            Error::NoHugepages { bytes } => write!(
                f,
                "could not map {bytes} bytes of hugepages: reserve some with \
                 `sysctl vm.nr_hugepages=N` or turn hugepages off"
            ),
            Error::Config(m) => write!(f, "{m}"),
            Error::Sys { op, source } => write!(f, "{op}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::AttachRefused { source, .. } | Error::Sys { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Maps the last OS error of `op`, turning EPERM/EACCES into [`Error::Permission`].
pub(crate) fn last(op: &'static str) -> Error {
    from_io(op, io::Error::last_os_error())
}

pub(crate) fn from_io(op: &'static str, source: io::Error) -> Error {
    match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission { op },
        _ => Error::Sys { op, source },
    }
}
