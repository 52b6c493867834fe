//! Live heap bytes, counted by a global allocator that forwards every call
//! to mimalloc, the allocator the `sodguard` binary ships with, so that the
//! decisions and evaluations timed here allocate as they do when serving
//! (with glibc's malloc, the system allocator, the evaluation at 100k took
//! 0.87–0.91 s against 0.63–0.67 s, in interleaved runs; BENCHMARKS.md).
//! Only the `synth` example installs it: the benchmarks, which include the
//! generator's modules but not this one, time the system allocator
//! unchanged.

use mimalloc::MiMalloc as Backing;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

/// Bytes requested and not yet freed.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The same with glibc's chunk overhead: 8 bytes of header, rounded up to
/// 16, at least 32 (an estimate of what the blocks would take there; kept so
/// that the figures stay comparable with earlier ones).
static CHUNKS: AtomicIsize = AtomicIsize::new(0);
/// Live allocations.
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

fn chunk(size: usize) -> isize {
    (size.saturating_add(8 + 15) & !15).max(32) as isize
}

/// Counting can be paused at run time (for timings).
static ON: AtomicBool = AtomicBool::new(true);

pub fn pause(paused: bool) {
    ON.store(!paused, Relaxed);
}

/// The most bytes live at once since [`reset_peak`].
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn count(size: usize, sign: isize) {
    if ON.load(Relaxed) {
        let delta = sign * size as isize;
        PEAK.fetch_max(LIVE.fetch_add(delta, Relaxed) + delta, Relaxed);
        CHUNKS.fetch_add(sign * chunk(size), Relaxed);
        BLOCKS.fetch_add(sign, Relaxed);
    }
}

pub struct Counting;

// SAFETY: every call is forwarded unchanged to `Backing`, which upholds
// the `GlobalAlloc` contract; the counters have no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { Backing.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { Backing.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { Backing.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { Backing.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Starts a new peak of live bytes at what is live now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}

/// The most bytes requested and live at once since [`reset_peak`].
pub fn peak() -> u64 {
    PEAK.load(Relaxed).max(0) as u64
}

/// (bytes requested, bytes with chunk overhead, allocations) now live.
pub fn live() -> (u64, u64, u64) {
    let g = |a: &AtomicIsize| a.load(Relaxed).max(0) as u64;
    (g(&LIVE), g(&CHUNKS), g(&BLOCKS))
}
