//! MPLS label stack entries (RFC 3032) and the bounded walk to bottom of stack.

use crate::bytes::{get_u32, set_u32};
use crate::{Error, Layer, Reason, Result};

/// Length of one label stack entry.
pub const ENTRY_LEN: usize = 4;
/// Deepest stack [`walk_stack`] accepts; a vRouter sees one or two labels.
pub const MAX_STACK_DEPTH: usize = 8;
/// Largest label value (20 bits).
pub const MAX_LABEL: u32 = (1 << 20) - 1;

/// A zero-copy view of one label stack entry.
#[derive(Debug, Clone)]
pub struct MplsEntry<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MplsEntry<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        MplsEntry { buffer }
    }

    /// Wraps after checking four bytes are present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < ENTRY_LEN {
            return Err(Error::truncated(Layer::Mpls, "label"));
        }
        Ok(MplsEntry { buffer })
    }

    #[inline]
    fn word(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 0)
    }
    /// Label (20 bits).
    #[inline]
    pub fn label(&self) -> u32 {
        self.word() >> 12
    }
    /// Traffic class (3 bits).
    #[inline]
    pub fn tc(&self) -> u8 {
        ((self.word() >> 9) & 7) as u8
    }
    /// Bottom-of-stack bit.
    #[inline]
    pub fn bottom(&self) -> bool {
        self.word() & 0x100 != 0
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.word() as u8
    }
}

/// The fields of one label stack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MplsRepr {
    /// Label, 0 to 2^20-1.
    pub label: u32,
    /// Traffic class, 0-7.
    pub tc: u8,
    /// Bottom of stack.
    pub bottom: bool,
    /// Time to live.
    pub ttl: u8,
}

impl MplsRepr {
    /// Reads the entry.
    pub fn parse<T: AsRef<[u8]>>(e: &MplsEntry<T>) -> Result<Self> {
        Ok(MplsRepr {
            label: e.label(),
            tc: e.tc(),
            bottom: e.bottom(),
            ttl: e.ttl(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        ENTRY_LEN
    }

    /// Writes the entry; fails on a label above 20 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, e: &mut MplsEntry<T>) -> Result<()> {
        if self.label > MAX_LABEL {
            return Err(Error::invalid(Layer::Mpls, "label"));
        }
        let word =
            (self.label << 12) | (u32::from(self.tc & 7) << 9) | (u32::from(self.bottom) << 8) | u32::from(self.ttl);
        set_u32(e.buffer.as_mut(), 0, word);
        Ok(())
    }
}

/// Summary of a label stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackInfo {
    /// Top entry (the label this node acts on).
    pub top: MplsRepr,
    /// Number of entries, bottom included.
    pub depth: u8,
    /// Offset of the payload after the bottom entry.
    pub payload_offset: usize,
}

/// Walks a label stack to the entry with the bottom-of-stack bit. A stack without one
/// in the buffer is `Truncated`; one deeper than [`MAX_STACK_DEPTH`] is `TooDeep`.
pub fn walk_stack(buf: &[u8]) -> Result<StackInfo> {
    let first = MplsRepr::parse(&MplsEntry::new_checked(buf)?)?;
    let mut off = 0;
    for depth in 1..=MAX_STACK_DEPTH {
        let e = MplsEntry::new_checked(&buf[off..])?;
        off += ENTRY_LEN;
        if e.bottom() {
            return Ok(StackInfo {
                top: first,
                depth: depth as u8,
                payload_offset: off,
            });
        }
    }
    Err(Error::new(Layer::Mpls, "bottom_of_stack", Reason::TooDeep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_entry() {
        // label 100, TC 5, bottom, TTL 64
        let b = [0x00, 0x06, 0x4b, 0x40];
        let r = MplsRepr::parse(&MplsEntry::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            MplsRepr {
                label: 100,
                tc: 5,
                bottom: true,
                ttl: 64
            }
        );
        let mut out = [0u8; 4];
        r.emit(&mut MplsEntry::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, b);
        let big = MplsRepr {
            label: MAX_LABEL + 1,
            ..r
        };
        assert!(big.emit(&mut MplsEntry::new_unchecked(&mut out[..])).is_err());
    }

    #[test]
    fn stack_walks() {
        let stack = [0, 1, 0, 64, 0, 2, 0, 63, 0, 3, 1, 62, 0x45];
        let s = walk_stack(&stack).unwrap();
        assert_eq!((s.top.label, s.depth, s.payload_offset), (16, 3, 12));
    }

    #[test]
    fn no_bottom_of_stack() {
        let e = walk_stack(&[0, 1, 0, 64, 0, 2, 0, 64]).unwrap_err();
        assert_eq!(e.reason, Reason::Truncated);
        let deep = [0u8; 4 * (MAX_STACK_DEPTH + 2)];
        assert_eq!(walk_stack(&deep).unwrap_err().reason, Reason::TooDeep);
        for len in 0..4 {
            assert_eq!(walk_stack(&[0, 0, 1, 0][..len]).unwrap_err().reason, Reason::Truncated);
        }
    }
}
