//! AF_XDP on `libc` alone: no libbpf, no clang, no C build step.
//!
//! * [`XdpProgram`]: the six-instruction redirect program (`rx_queue_index` -> XSKMAP,
//!   `XDP_PASS` on a miss), assembled in Rust, loaded with `bpf()` and attached with a BPF
//!   link, native mode with a fallback to generic. The link detaches when dropped, also
//!   when the process dies.
//! * [`Umem`]: page-aligned (optionally hugepage) packet memory cut into frames, with
//!   configurable headroom for encapsulation.
//! * [`XskSocket`]: a socket per (interface, queue) with its four rings mapped from the
//!   kernel's offsets; batched produce/consume with the kernel's memory ordering and
//!   `need_wakeup`; zero-copy with a fallback to copy; sockets of one worker share its UMEM,
//!   so forwarding between ports moves descriptors, not bytes.
//! * [`Error`]: each failure says what to do (capabilities, interface, queue, the veth
//!   peer-MTU rule, zero-copy).
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! use std::sync::Arc;
//! use af_xdp::*;
//!
//! let prog = XdpProgram::attach("veth0", AttachMode::Auto)?;
//! let umem = Arc::new(Umem::new(UmemConfig::default())?);
//! let mut sock = XskSocket::new(&umem, "veth0", 0, SocketConfig::default(), None)?;
//! prog.register(0, sock.as_fd())?;
//! // Give the kernel frames to receive into, then poll the RX ring.
//! let frames: Vec<u64> = (0..2048).map(|i| umem.frame_addr(i)).collect();
//! sock.fill.push(&frames);
//! let mut descs = [Desc::default(); 64];
//! let n = sock.rx.pop(&mut descs);
//! # Ok::<(), af_xdp::Error>(())
//! ```

mod bpf;
mod error;
pub mod iface;
mod ring;
mod socket;
mod umem;

pub use bpf::{AttachMode, XdpDrop, XdpMode, XdpProgram};
pub use error::{Error, Result};
pub use ring::{ConsumerRing, Desc, ProducerRing};
pub use socket::{BusyPoll, SocketConfig, SocketStats, TxKick, XskSocket, ZeroCopy};
pub use umem::{Umem, UmemConfig};
