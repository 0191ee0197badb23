//! The process's allocator: mimalloc, entered through its plain `malloc` where the layout allows.
//!
//! The `mimalloc` crate hands every request to `mi_malloc_aligned`, whatever its alignment. In
//! mimalloc 3 that path is fast only for small blocks that happen to be aligned; every block over
//! 1 KiB (message buffers, built requests) and every small one that is not goes through a generic
//! path that may over-allocate. That was ~45 of a call's ~250 allocations; the plain path saved ~6k
//! instructions per call. Plain `mi_malloc` returns 16-byte aligned
//! blocks for every size of 16 bytes or more (`MI_MAX_ALIGN_SIZE`), so, as std does for the system
//! allocator, layouts aligned to at most 16 and to no more than their size take the plain path;
//! the rest keep the aligned one.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// `MI_MAX_ALIGN_SIZE` on the 64-bit targets we build for.
const PLAIN_ALIGN: usize = 16;

/// Whether plain `mi_malloc` of `size` bytes is aligned enough for `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// mimalloc as the global allocator (see the module docs).
pub struct MiMalloc;

// SAFETY: every pointer returned comes from mimalloc with at least the layout's alignment, and
// mi_free/mi_realloc accept any mimalloc pointer, however it was allocated.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's entry points have no preconditions on the size.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a pointer this allocator returned.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a pointer this allocator returned with `layout`.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size around mimalloc's bin edges, at every alignment a Rust type can ask for here:
    /// the block is aligned, writable over its whole size, and a realloc keeps its bytes.
    #[test]
    fn blocks_are_aligned_and_realloc_keeps_contents() {
        let a = MiMalloc;
        let sizes = (1..=80)
            .chain([127, 128, 129, 1000, 1023, 1024, 1025, 1040, 4096, 70_000])
            .collect::<Vec<usize>>();
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for &size in &sizes {
                let size = size.next_multiple_of(align);
                let layout = Layout::from_size_align(size, align).unwrap();
                for zeroed in [false, true] {
                    // SAFETY: a non-zero-sized layout; the block is freed below with it.
                    unsafe {
                        let p = if zeroed {
                            a.alloc_zeroed(layout)
                        } else {
                            a.alloc(layout)
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        if zeroed {
                            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                        }
                        for i in 0..size {
                            p.add(i).write(i as u8);
                        }
                        let grown = size * 3 + align;
                        let q = a.realloc(p, layout, grown);
                        assert_eq!(
                            q as usize % align,
                            0,
                            "realloc {size}->{grown} align {align}"
                        );
                        for i in 0..size {
                            assert_eq!(q.add(i).read(), i as u8);
                        }
                        let grown_layout = Layout::from_size_align(grown, align).unwrap();
                        let r = a.realloc(q, grown_layout, size);
                        assert_eq!(
                            r as usize % align,
                            0,
                            "shrink {grown}->{size} align {align}"
                        );
                        for i in 0..size {
                            assert_eq!(r.add(i).read(), i as u8);
                        }
                        a.dealloc(r, layout);
                    }
                }
            }
        }
    }
}
