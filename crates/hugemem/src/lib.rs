//! Big lookup tables (the flow table's arrays, the FIB's DIR-24-8 levels and IPv6 trie):
//! allocated once, asked to live on huge pages.
//!
//! A table of a million flows spans hundreds of megabytes, the FIB's first IPv4 level 64
//! MB. On 4 KiB pages every lookup of a random entry also misses the TLB and walks page
//! tables that do not fit in cache; on 2 MiB pages the walk mostly disappears. The kernel
//! is asked for transparent huge pages before the memory is first touched, so the pages are
//! huge from the start (where the system allows it: with THP off this changes nothing).

/// `n` default values, on huge pages where the kernel grants them.
///
/// ```
/// let t: Box<[u32]> = hugemem::table_of(1 << 20);
/// assert!(t.iter().all(|&x| x == 0));
/// ```
pub fn table_of<T: Default>(n: usize) -> Box<[T]> {
    let mut b = Box::<[T]>::new_uninit_slice(n);
    advise_huge(b.as_mut_ptr().cast(), n * size_of::<T>());
    for x in b.iter_mut() {
        x.write(T::default());
    }
    // SAFETY: every element was initialised by the loop above.
    unsafe { b.assume_init() }
}

/// A copy of `src`, on huge pages where the kernel grants them (one pass: no zeroing first).
///
/// ```
/// let t: Box<[u32]> = hugemem::copy_of(&[1, 2, 3]);
/// assert_eq!(&t[..], &[1, 2, 3]);
/// ```
pub fn copy_of<T: Copy>(src: &[T]) -> Box<[T]> {
    let mut b = Box::<[T]>::new_uninit_slice(src.len());
    advise_huge(b.as_mut_ptr().cast(), size_of_val(src));
    for (x, &v) in b.iter_mut().zip(src) {
        x.write(v);
    }
    // SAFETY: every element was initialised by the loop above.
    unsafe { b.assume_init() }
}

/// Below this a table gains nothing from huge pages.
#[cfg(any(test, all(target_os = "linux", not(miri), not(loom))))]
const HUGE: usize = 2 << 20;

#[cfg(all(target_os = "linux", not(miri), not(loom)))]
fn advise_huge(p: *mut u8, len: usize) {
    const PAGE: usize = 4096;
    let start = (p as usize).next_multiple_of(PAGE);
    let end = (p as usize + len) & !(PAGE - 1);
    if len >= HUGE && end > start {
        // SAFETY: the range is whole pages inside this allocation, which nothing else
        // references yet; MADV_HUGEPAGE only changes how the kernel backs it, never its
        // contents or validity. A refusal (THP disabled) leaves ordinary pages: ignored.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(all(target_os = "linux", not(miri), not(loom))))]
fn advise_huge(_: *mut u8, _: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_start_as_defaults() {
        let small: Box<[u64]> = table_of(100);
        assert!(small.iter().all(|&x| x == 0));
        let big: Box<[[u64; 8]]> = table_of(HUGE / 64 + 3);
        assert_eq!(big.len(), HUGE / 64 + 3);
        assert!(big.iter().all(|x| *x == [0; 8]));
    }

    #[test]
    fn copies_are_equal() {
        let src: Vec<u32> = (0..(HUGE / 4 + 5) as u32).collect();
        assert_eq!(&copy_of(&src)[..], &src[..]);
        assert!(copy_of::<u8>(&[]).is_empty());
    }
}
