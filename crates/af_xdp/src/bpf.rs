//! The XDP redirect program, assembled here and loaded with the `bpf()` system call; the
//! XSKMAP it redirects through; the BPF link that attaches it (closing the link's fd
//! detaches it, so a crashed process leaves no program behind).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result, from_io};
use crate::iface;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_ATTACH_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `bpf_redirect_map` helper number.
const HELPER_REDIRECT_MAP: i32 = 51;
/// Verdict returned when no socket is registered for the queue.
const XDP_PASS: i32 = 2;
/// `struct xdp_md` offset of `rx_queue_index`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
/// `src_reg` marking an `ld_imm64` immediate as a map fd.
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// One eBPF instruction, encoded as the kernel's `struct bpf_insn`.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code) | u64::from(dst | src << 4) << 8 | u64::from(off as u16) << 16 | u64::from(imm as u32) << 32
}

/// The program: `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
pub(crate) fn redirect_program(map_fd: i32) -> [u64; 6] {
    const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    [
        insn(LDX_MEM_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0), // r2 = ctx->rx_queue_index
        insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // r1 = &xsks (two slots)
        insn(0, 0, 0, 0, 0),
        insn(MOV64_K, 3, 0, 0, XDP_PASS), // r3 = XDP_PASS (miss action)
        insn(CALL, 0, 0, 0, HELPER_REDIRECT_MAP),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `bpf(cmd, attr)`; returns the new fd for commands that create one.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i32> {
    // SAFETY: `attr` is a live, initialised `repr(C)` struct laid out as the kernel's
    // `union bpf_attr` member for `cmd`, and the size passed is its exact size; the kernel
    // reads at most that many bytes and writes nothing back for these commands.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T as *mut c_void, size_of::<T>() as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel as a new descriptor nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    let b = s.as_bytes();
    n[..b.len().min(15)].copy_from_slice(&b[..b.len().min(15)]);
    n
}

/// How the program runs on the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (`xdpdrv`): faster; what veth and most NICs offer.
    Native,
    /// After the kernel built an skb (`xdpgeneric`): works on every interface.
    Generic,
}

/// Which mode to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native, falling back to generic if the driver refuses.
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

/// The redirect program attached to one interface, with its XSKMAP.
#[derive(Debug)]
pub struct XdpProgram {
    map: OwnedFd,
    // Kept open: the program lives as long as the link and map reference it.
    _prog: OwnedFd,
    // Closing it detaches the program.
    _link: OwnedFd,
    ifname: String,
    ifindex: u32,
    mode: XdpMode,
    fallback: Option<String>,
    slots: u32,
}

impl XdpProgram {
    /// Loads the program and attaches it to `ifname` (in the calling thread's network
    /// namespace). With [`AttachMode::Auto`] a refused native attach falls back to generic;
    /// [`XdpProgram::fallback_reason`] says why.
    pub fn attach(ifname: &str, mode: AttachMode) -> Result<Self> {
        let ifindex = iface::index(ifname)?;
        let slots = iface::queue_count(ifname)?.unwrap_or(64).max(1);
        let mut m = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: slots,
            map_name: name16("vrouter_xsks"),
            ..Default::default()
        };
        let map = owned(bpf(BPF_MAP_CREATE, &mut m).map_err(|e| from_io("creating the XSKMAP (bpf MAP_CREATE)", e))?);
        let prog = load(&redirect_program(map.as_raw_fd()))?;
        let (link, mode, fallback) = link(&prog, ifname, ifindex, mode)?;
        Ok(XdpProgram {
            map,
            _prog: prog,
            _link: link,
            ifname: ifname.to_string(),
            ifindex,
            mode,
            fallback,
            slots,
        })
    }

    /// Steers packets of `queue` to the AF_XDP socket `xsk`.
    pub fn register(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<()> {
        if queue >= self.slots {
            return Err(Error::QueueOutOfRange {
                ifname: self.ifname.clone(),
                queue,
                queues: self.slots,
            });
        }
        let key = queue;
        let value = xsk.as_raw_fd() as u32;
        let mut a = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map_err(|e| from_io("registering the socket in the XSKMAP", e))?;
        Ok(())
    }

    /// Stops steering `queue` (its packets go to the kernel stack again).
    pub fn unregister(&self, queue: u32) -> Result<()> {
        let key = queue;
        let mut a = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            ..Default::default()
        };
        match bpf(BPF_MAP_DELETE_ELEM, &mut a) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(from_io("removing the socket from the XSKMAP", e)),
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Why native mode was not used, when [`AttachMode::Auto`] fell back.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

/// Attaches `prog` to the interface with a BPF link, in `mode` (falling back for `Auto`).
fn link(prog: &OwnedFd, ifname: &str, ifindex: u32, mode: AttachMode) -> Result<(OwnedFd, XdpMode, Option<String>)> {
    let try_link = |flags| {
        let mut l = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_ATTACH_XDP,
            flags,
        };
        bpf(BPF_LINK_CREATE, &mut l).map(owned)
    };
    let refused = |mode, source: io::Error| match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission {
            op: "attaching the XDP program (bpf LINK_CREATE)",
        },
        _ => Error::AttachRefused {
            ifname: ifname.to_string(),
            mode,
            source,
        },
    };
    Ok(match mode {
        AttachMode::Native => (
            try_link(XDP_FLAGS_DRV_MODE).map_err(|e| refused("native", e))?,
            XdpMode::Native,
            None,
        ),
        AttachMode::Generic => (
            try_link(XDP_FLAGS_SKB_MODE).map_err(|e| refused("generic", e))?,
            XdpMode::Generic,
            None,
        ),
        AttachMode::Auto => match try_link(XDP_FLAGS_DRV_MODE) {
            Ok(l) => (l, XdpMode::Native, None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
                return Err(refused("native", e));
            }
            Err(native) => {
                let l = try_link(XDP_FLAGS_SKB_MODE).map_err(|e| refused("generic", e))?;
                let why = match native.raw_os_error() {
                    Some(libc::ERANGE) => format!(
                        "native XDP refused on `{ifname}` ({native}: a veth peer MTU above 3506?); using generic mode"
                    ),
                    _ => format!("native XDP refused on `{ifname}` ({native}); using generic mode"),
                };
                (l, XdpMode::Generic, Some(why))
            }
        },
    })
}

/// A program that drops every packet (`XDP_DROP`): the ceiling of the XDP receive path in
/// benchmarks, and a cheap sink for test traffic.
#[derive(Debug)]
pub struct XdpDrop {
    _prog: OwnedFd,
    _link: OwnedFd,
    mode: XdpMode,
}

impl XdpDrop {
    /// Attaches it to `ifname`; detached when dropped.
    pub fn attach(ifname: &str, mode: AttachMode) -> Result<Self> {
        const MOV64_K: u8 = 0xb7;
        const EXIT: u8 = 0x95;
        const XDP_DROP: i32 = 1;
        let ifindex = iface::index(ifname)?;
        let prog = load(&[insn(MOV64_K, 0, 0, 0, XDP_DROP), insn(EXIT, 0, 0, 0, 0)])?;
        let (link, mode, _) = link(&prog, ifname, ifindex, mode)?;
        Ok(XdpDrop {
            _prog: prog,
            _link: link,
            mode,
        })
    }

    /// The mode in use.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
}

fn load(insns: &[u64]) -> Result<OwnedFd> {
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 16 * 1024];
    let mut p = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name16("vrouter_xsk"),
        expected_attach_type: BPF_ATTACH_XDP,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut p) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => Err(Error::Permission {
            op: "loading the XDP program (bpf PROG_LOAD)",
        }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(Error::Sys {
                op: "loading the XDP program (bpf PROG_LOAD)",
                source: io::Error::new(
                    e.kind(),
                    format!("{e}; verifier: {}", String::from_utf8_lossy(&log[..end]).trim()),
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encodes_as_the_kernel_expects() {
        let p = redirect_program(7);
        // Little-endian bytes of each instruction, as `llvm-objdump -d` prints them for
        // the equivalent C program.
        let bytes: Vec<[u8; 8]> = p.iter().map(|i| i.to_le_bytes()).collect();
        assert_eq!(bytes[0], [0x61, 0x12, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(bytes[1], [0x18, 0x11, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00]);
        assert_eq!(bytes[2], [0; 8]);
        assert_eq!(bytes[3], [0xb7, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]);
        assert_eq!(bytes[4], [0x85, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00]);
        assert_eq!(bytes[5], [0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn attr_layouts_match_the_kernel() {
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::offset_of!(MapElemAttr, key), 8);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(size_of::<LinkCreateAttr>(), 16);
    }
}
