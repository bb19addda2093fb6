//! msbreg patch (PATCHES.md, 2): element-wise loops split over rayon's threads.
//!
//! flex ran every element-wise op (add, mul, ReLU, its backward, the batch norm arithmetic) on
//! the calling thread, so a second core sped the small CNN's step up by 1.15x. These helpers cut
//! a loop into one contiguous chunk per thread when it is long enough to pay for the hand-off;
//! each element is computed by the same expression as before, so results are bit-identical.

#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Below this many elements a loop stays on the calling thread (about 64 KiB of f32: a rayon
/// hand-off costs a few microseconds).
pub(crate) const PAR_MIN: usize = 1 << 14;

/// The chunk length for `len` elements, or `None` to stay serial.
#[inline]
pub(crate) fn chunk_len(len: usize) -> Option<usize> {
    #[cfg(feature = "rayon")]
    {
        let threads = rayon::current_num_threads();
        if threads > 1 && len >= PAR_MIN {
            // Whole cache lines per chunk.
            return Some(len.div_ceil(threads).next_multiple_of(16));
        }
    }
    let _ = len;
    None
}

/// `f` over `data`, in chunks on rayon's threads when long.
#[inline]
pub(crate) fn for_each_mut<E: Send>(data: &mut [E], f: impl Fn(&mut [E]) + Sync) {
    match chunk_len(data.len()) {
        #[cfg(feature = "rayon")]
        Some(chunk) => data.par_chunks_mut(chunk).for_each(|c| f(c)),
        _ => f(data),
    }
}

/// `f(dst_chunk, src_chunk)` over equal-length `dst` and `src`, split alike.
#[inline]
pub(crate) fn zip_mut<D: Send, S: Sync>(dst: &mut [D], src: &[S], f: impl Fn(&mut [D], &[S]) + Sync) {
    debug_assert_eq!(dst.len(), src.len());
    match chunk_len(dst.len()) {
        #[cfg(feature = "rayon")]
        Some(chunk) => dst
            .par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| f(d, s)),
        _ => f(dst, src),
    }
}


/// A `Vec` of `len` elements, each written by `fill(out_chunk, start)` exactly once, the chunks
/// on rayon's threads when long. `fill` must write every element of its chunk (it gets them
/// uninitialised, so a result is written once, not zeroed first and written again).
pub(crate) fn filled_vec<E: Send + Sync>(
    len: usize,
    fill: impl Fn(&mut [core::mem::MaybeUninit<E>], usize) + Sync,
) -> alloc::vec::Vec<E> {
    let mut out = alloc::vec::Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    match chunk_len(len) {
        #[cfg(feature = "rayon")]
        Some(chunk) => spare
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| fill(o, i * chunk)),
        _ => fill(spare, 0),
    }
    // SAFETY: `fill` wrote each of the first `len` elements (its contract above).
    unsafe { out.set_len(len) };
    out
}
