//! The plugin's heap: a free list per size class in front of the system allocator.
//!
//! Why: the canonical ABI hands a hook each string of its arguments (every header name and value)
//! as an allocation of its own, made through the guest's `cabi_realloc`, and the SDK frees them when
//! the hook returns: ~100 allocations per call. With Rust's wasm allocator (dlmalloc), allocating
//! and freeing them was over half of a plugin's own instructions in the gateway. An instance lives
//! for one call, so a simpler heap fits: small blocks come from size classes (O(1) allocation and
//! free, no splitting or coalescing), carved from chunks of the system allocator and reused by the
//! next hook; everything else goes to the system allocator. Nothing is handed back, which costs a
//! plugin instance nothing: a wasm memory never shrinks.
//!
//! The SDK installs it as the global allocator on single-threaded wasm targets (feature
//! `size-class-heap`, on by default); a plugin with its own `#[global_allocator]` turns the feature
//! off.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

/// Alignment of every small block (class sizes are multiples of it, chunks are aligned to it).
const ALIGN: usize = 16;
/// The largest small block; bigger requests go to the system allocator.
const MAX_SMALL: usize = 2048;
/// What is carved into small blocks at a time.
const CHUNK: usize = 16 * 1024;

/// Class sizes: steps of 16 up to 128, then four steps per power of two (at most 25% slack).
const CLASS_SIZE: [u16; CLASSES] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
    1280, 1536, 1792, 2048,
];
const CLASSES: usize = 24;

/// The class of a small size, indexed by `size.div_ceil(16)`.
const CLASS_OF: [u8; MAX_SMALL / ALIGN + 1] = {
    let mut table = [0u8; MAX_SMALL / ALIGN + 1];
    let (mut i, mut class) = (0, 0);
    while i < table.len() {
        while (CLASS_SIZE[class] as usize) < i * ALIGN {
            class += 1;
        }
        table[i] = class as u8;
        i += 1;
    }
    table
};

/// The size-class heap over `B` (the system allocator in a plugin).
pub struct SizeClassHeap<B> {
    backing: B,
    state: UnsafeCell<State>,
}

struct State {
    /// Per class, the first free block; a free block's first word points to the next.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    bump: *mut u8,
    end: *mut u8,
}

// SAFETY: only installed on targets without threads (see lib.rs), and tests use an instance from one
// thread; nothing else can reach the state concurrently.
unsafe impl<B: Sync> Sync for SizeClassHeap<B> {}

impl<B> SizeClassHeap<B> {
    /// An empty heap over `backing`.
    pub const fn new(backing: B) -> Self {
        Self {
            backing,
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

/// The class for `layout`, or `None` if it goes to the system allocator. Allocation and release
/// see the same layout, so they always agree.
fn class_of(size: usize, align: usize) -> Option<usize> {
    (size <= MAX_SMALL && align <= ALIGN).then(|| usize::from(CLASS_OF[size.div_ceil(ALIGN)]))
}

unsafe impl<B: GlobalAlloc> GlobalAlloc for SizeClassHeap<B> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout.size(), layout.align()) else {
            // SAFETY: the caller's layout, passed on.
            return unsafe { self.backing.alloc(layout) };
        };
        // SAFETY: single-threaded (see the Sync impl), and no reference to the state outlives
        // this call.
        let st = unsafe { &mut *self.state.get() };
        let head = st.free[class];
        if !head.is_null() {
            // SAFETY: a block on a free list holds the next one's address in its first word.
            st.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = usize::from(CLASS_SIZE[class]);
        if (st.end as usize) - (st.bump as usize) < size {
            // SAFETY: CHUNK and ALIGN make a valid, non-zero layout.
            let chunk = unsafe {
                self.backing
                    .alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN))
            };
            if chunk.is_null() {
                return chunk;
            }
            st.bump = chunk;
            // SAFETY: one past the end of the chunk just allocated.
            st.end = unsafe { chunk.add(CHUNK) };
        }
        let block = st.bump;
        // SAFETY: within the chunk: at least `size` bytes were left.
        st.bump = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout.size(), layout.align()) else {
            // SAFETY: allocated by the backing allocator with this layout (see `alloc`).
            return unsafe { self.backing.dealloc(block, layout) };
        };
        // SAFETY: single-threaded; the block is ours, at least 16 bytes and 16-aligned, and no
        // longer used by the caller.
        unsafe {
            let st = &mut *self.state.get();
            block.cast::<*mut u8>().write(st.free[class]);
            st.free[class] = block;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (class_of(layout.size(), align), class_of(new_size, align)) {
            // The block already has room (or not much too much).
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: the caller's contract, passed on to the allocator that made the block.
            (None, None) => unsafe { self.backing.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: the caller guarantees a valid new size for this alignment; the old
                // block is valid for `layout.size()` bytes and the new one for `new_size`.
                unsafe {
                    let new_layout = Layout::from_size_align_unchecked(new_size, align);
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::collections::HashSet;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn every_small_size_gets_the_smallest_class_that_holds_it() {
        for size in 0..=MAX_SMALL {
            let class = class_of(size, 1).unwrap();
            assert!(usize::from(CLASS_SIZE[class]) >= size.max(1), "{size}");
            assert!(
                class == 0 || usize::from(CLASS_SIZE[class - 1]) < size,
                "{size}"
            );
        }
        assert_eq!(class_of(MAX_SMALL + 1, 1), None);
        assert_eq!(class_of(64, 32), None);
        assert!(CLASS_SIZE.iter().all(|&s| usize::from(s) % ALIGN == 0));
    }

    #[test]
    fn blocks_are_distinct_aligned_writable_and_reused_after_free() {
        let heap = SizeClassHeap::new(System);
        let sizes = [1, 7, 16, 17, 100, 128, 129, 500, 2048, 3000, 70_000];
        let mut live = Vec::new();
        let mut seen = HashSet::new();
        unsafe {
            for round in 0..50u8 {
                for &size in &sizes {
                    let l = layout(size, if size % 2 == 0 { 8 } else { 1 });
                    let p = heap.alloc(l);
                    assert!(!p.is_null());
                    assert_eq!(
                        p as usize % l.align().max(if size <= MAX_SMALL { ALIGN } else { 1 }),
                        0
                    );
                    p.write_bytes(round, size);
                    live.push((p, l, round));
                    seen.insert(p as usize);
                }
            }
            // No two live blocks overlap: each still holds what was written to it.
            for &(p, l, fill) in &live {
                assert!(
                    std::slice::from_raw_parts(p, l.size())
                        .iter()
                        .all(|&b| b == fill)
                );
            }
            let (p, l, _) = live.pop().unwrap();
            heap.dealloc(p, l);
            let small = live.iter().rposition(|(_, l, _)| l.size() == 100).unwrap();
            let (p, l, _) = live.swap_remove(small);
            heap.dealloc(p, l);
            assert_eq!(
                heap.alloc(layout(97, 1)),
                p,
                "a freed block is reused by its class"
            );
            heap.dealloc(p, layout(97, 1));
            for (p, l, _) in live {
                heap.dealloc(p, l);
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_to_the_system_allocator() {
        let heap = SizeClassHeap::new(System);
        unsafe {
            let mut l = layout(10, 1);
            let mut p = heap.alloc(l);
            p.copy_from_nonoverlapping(b"0123456789".as_ptr(), 10);
            let same = heap.realloc(p, l, 14);
            assert_eq!(same, p, "growing within the class keeps the block");
            l = layout(14, 1);
            for new_size in [100, 1500, 5000, 20, 3] {
                p = heap.realloc(p, l, new_size);
                assert!(!p.is_null());
                let kept = l.size().min(new_size).min(10);
                assert_eq!(
                    std::slice::from_raw_parts(p, kept),
                    &b"0123456789"[..kept],
                    "{new_size}"
                );
                l = layout(new_size, 1);
            }
            heap.dealloc(p, l);
        }
    }
}
