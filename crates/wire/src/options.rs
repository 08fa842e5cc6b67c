//! Option bytes of IPv4 and TCP headers, kept inline so a `Repr` needs no allocation.

/// Longest options area of IPv4 (IHL 15) and TCP (data offset 15).
pub const MAX_OPTIONS_LEN: usize = 40;

/// Up to 40 option bytes, a multiple of 4 long.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderOptions {
    len: u8,
    bytes: [u8; MAX_OPTIONS_LEN],
}

impl HeaderOptions {
    /// Options from raw bytes; `None` if longer than 40 bytes or not a multiple of 4.
    ///
    /// ```
    /// use wire::options::HeaderOptions;
    /// assert!(HeaderOptions::new(&[1, 1, 1, 0]).is_some());
    /// assert!(HeaderOptions::new(&[1, 1, 0]).is_none());
    /// ```
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_OPTIONS_LEN || !bytes.len().is_multiple_of(4) {
            return None;
        }
        let mut o = HeaderOptions {
            len: bytes.len() as u8,
            bytes: [0; MAX_OPTIONS_LEN],
        };
        o.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(o)
    }

    /// The option bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Number of option bytes.
    #[inline]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// True when there are no options.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for HeaderOptions {
    fn default() -> Self {
        HeaderOptions {
            len: 0,
            bytes: [0; MAX_OPTIONS_LEN],
        }
    }
}

impl core::fmt::Debug for HeaderOptions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HeaderOptions({:02x?})", self.as_slice())
    }
}
