//! The kernels of [`super::Conv3x3Backend`] on flex, on slices: the batch cut into tiles of
//! whole images, each tile's columns gathered into a buffer that stays in cache and multiplied
//! there (gemm, one thread per tile), over rayon's threads.

use std::mem::MaybeUninit;

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::{Geometry, WEIGHT_CHUNK_MIN_ROWS, WEIGHT_CHUNKS};
use crate::model::flex_slices::{par_filled, par_written};
use crate::model::im2col::tap;
use crate::simd::vectorized;

/// Columns per tile: about 256 KiB of `f32`, so that a tile's columns stay in a core's L2.
const TILE_FLOATS: usize = 64 * 1024;

impl Geometry {
    fn k(&self) -> usize {
        9 * self.channels
    }

    fn in_pixels(&self) -> usize {
        self.height * self.width
    }

    fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Whole images per tile: as many as fit [`TILE_FLOATS`] of columns, at least one. A
    /// function of the shapes only, so tiles do not depend on the number of threads.
    fn images_per_tile(&self) -> usize {
        let rows = self.out_pixels().max(1);
        (TILE_FLOATS / self.k().max(1) / rows).max(1)
    }
}

/// The weight `[out, in, 3, 3]` as the `[9 * in, out]` matrix the columns multiply, row
/// `(kh, kw, c)`.
fn weight_matrix(weight: &[f32], g: &Geometry) -> Vec<f32> {
    let (c_in, c_out) = (g.channels, g.out);
    let mut matrix = vec![0.0; 9 * c_in * c_out];
    for o in 0..c_out {
        for c in 0..c_in {
            for tap in 0..9 {
                matrix[(tap * c_in + c) * c_out + o] = weight[(o * c_in + c) * 9 + tap];
            }
        }
    }
    matrix
}

/// The taps `kw0..kw1` of output column `ow` that fall inside the image, and the input column
/// of tap `kw0`. Consecutive taps read consecutive input pixels, so with channels-last rows
/// the taps of one kernel row are one contiguous run of the input (and of the column row).
fn valid_taps(g: &Geometry, ow: usize) -> (usize, usize, usize) {
    let kw0 = usize::from(ow * g.stride == 0);
    let kw1 = (g.width + 1 - ow * g.stride).min(3);
    (kw0, kw1.max(kw0), (ow * g.stride + kw0).saturating_sub(1))
}

/// One contiguous run of an image's columns: `len` floats at `column` (from the image's first
/// column row) are the input's at `pixel` (from the image's first input value).
#[derive(Clone, Copy, Debug)]
struct Run {
    column: usize,
    pixel: usize,
    len: usize,
}

/// The runs of one image's columns, the same for every image: one per kernel row of each
/// output pixel that is not all padding, in the order of the columns. What no run covers is
/// padding, zero.
fn runs(g: &Geometry) -> Vec<Run> {
    let (c, k) = (g.channels, g.k());
    let mut runs = Vec::with_capacity(3 * g.out_pixels());
    for oh in 0..g.out_height() {
        for ow in 0..g.out_width() {
            let (kw0, kw1, iw0) = valid_taps(g, ow);
            let row = (oh * g.out_width() + ow) * k;
            for kh in 0..3 {
                if let Some(ih) = tap(oh, kh, g.stride, g.height)
                    && kw1 > kw0
                {
                    runs.push(Run {
                        column: row + (kh * 3 + kw0) * c,
                        pixel: (ih * g.width + iw0) * c,
                        len: (kw1 - kw0) * c,
                    });
                }
            }
        }
    }
    runs
}

/// The columns of images `images` (channels-last rows of `x`) into `columns`: one row per
/// output pixel, column `(kh, kw, c)`; one copy per run. The padding is left as it is:
/// `columns` holds zeros there, written when it was made (every tile puts its images at the
/// same places, so the runs of one never land on the padding of another).
fn gather(
    x: &[f32],
    g: &Geometry,
    runs: &[Run],
    images: std::ops::Range<usize>,
    columns: &mut [f32],
) {
    let image_len = g.in_pixels() * g.channels;
    let columns_len = g.out_pixels() * g.k();
    vectorized(
        #[inline(always)]
        || {
            for (n, image_columns) in images.zip(columns.chunks_exact_mut(columns_len)) {
                let image = &x[n * image_len..(n + 1) * image_len];
                for run in runs {
                    copy(
                        &mut image_columns[run.column..run.column + run.len],
                        &image[run.pixel..run.pixel + run.len],
                    );
                }
            }
        },
    );
}

/// The columns' gradient of `images` whole images (`columns`, as [`gather`] lays them out)
/// added back to the pixels they were gathered from (`dx`, those images' rows), run by run in
/// order.
fn scatter_add(g: &Geometry, runs: &[Run], images: usize, columns: &[f32], dx: &mut [f32]) {
    let image_len = g.in_pixels() * g.channels;
    let columns_len = g.out_pixels() * g.k();
    let pairs = dx
        .chunks_exact_mut(image_len)
        .zip(columns.chunks_exact(columns_len));
    vectorized(
        #[inline(always)]
        || {
            for (image, image_columns) in pairs.take(images) {
                for run in runs {
                    let src = &image_columns[run.column..run.column + run.len];
                    for (d, &s) in image[run.pixel..run.pixel + run.len].iter_mut().zip(src) {
                        *d += s;
                    }
                }
            }
        },
    );
}

/// `dst.copy_from_slice(src)` inline: the runs copied are short (9 to a few hundred floats), and
/// a call to `memmove` per run cost more than the copy. Blocks of 16, 8 or 4 floats; a tail
/// shorter than a block is copied as the last whole block, overlapping the one before it
/// (the same values written twice), so a run of 9 (the first layer's: 3 taps of 3 channels)
/// is two 8-float moves, not nine single floats.
#[allow(clippy::inline_always)] // compiled inside `vectorized`'s variants
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32]) {
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn blocks<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let n = dst.len();
        let mut d = dst.chunks_exact_mut(N);
        let mut s = src.chunks_exact(N);
        for (d, s) in d.by_ref().zip(s.by_ref()) {
            let d: &mut [f32; N] = d.try_into().expect("chunks of N");
            let s: &[f32; N] = s.try_into().expect("chunks of N");
            *d = *s;
        }
        if !n.is_multiple_of(N) {
            let d: &mut [f32; N] = (&mut dst[n - N..]).try_into().expect("the last N");
            let s: &[f32; N] = src[n - N..].try_into().expect("the last N");
            *d = *s;
        }
    }
    assert_eq!(dst.len(), src.len(), "conv3x3: copy of unequal runs");
    match dst.len() {
        16.. => blocks::<16>(dst, src),
        8.. => blocks::<8>(dst, src),
        4.. => blocks::<4>(dst, src),
        _ => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
    }
}

/// `dst = lhs * rhs` (or `dst += lhs * rhs` with `accumulate`), `m x n` over `k`, on the
/// calling thread. Strides in elements: `(column stride, row stride)` of each matrix.
#[allow(clippy::too_many_arguments)]
pub(super) fn product(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    dst_strides: (usize, usize),
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    accumulate: bool,
) {
    let destination = (dst.as_mut_ptr(), dst.len(), dst_strides);
    // SAFETY: `dst` is a live, initialised slice of `dst.len()` floats, borrowed mutably.
    #[allow(unsafe_code)]
    unsafe {
        product_at(
            dims,
            destination,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            accumulate,
        );
    }
}

/// `dst = lhs * rhs` into `dst`, uninitialised, of exactly `m x n` floats in rows of `n`:
/// every element written (gemm does not read the destination when not accumulating).
pub(super) fn product_into(
    (m, n, k): (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    assert_eq!(dst.len(), m * n, "conv3x3: output tile of another size");
    if k == 0 {
        dst.fill(MaybeUninit::new(0.0));
        return;
    }
    let destination = (dst.as_mut_ptr().cast::<f32>(), dst.len(), (1, n));
    // SAFETY: `dst` is a live slice of `dst.len()` floats, borrowed mutably; `MaybeUninit<f32>`
    // has `f32`'s layout; without `accumulate` gemm only writes it.
    #[allow(unsafe_code)]
    unsafe {
        product_at(
            (m, n, k),
            destination,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            false,
        );
    }
}

/// [`product`] into `(pointer, length, strides)`.
///
/// # Safety
/// `pointer` must be valid for writes of `length` floats (and for reads of them with
/// `accumulate`), and overlap neither operand.
#[allow(unsafe_code)]
unsafe fn product_at(
    (m, n, k): (usize, usize, usize),
    (dst, dst_len, dst_strides): (*mut f32, usize, (usize, usize)),
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    accumulate: bool,
) {
    // The furthest element each operand's strides reach must lie in its slice.
    let reach = |rows: usize, cols: usize, (cs, rs): (usize, usize)| {
        rows.saturating_sub(1)
            .checked_mul(rs)
            .zip(cols.saturating_sub(1).checked_mul(cs))
            .and_then(|(a, b)| a.checked_add(b))
            .unwrap_or(usize::MAX)
    };
    let signed = |v: usize| isize::try_from(v).expect("conv3x3: a stride beyond isize");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        reach(m, n, dst_strides) < dst_len,
        "conv3x3: output tile too small"
    );
    if k > 0 {
        assert!(
            reach(m, k, lhs_strides) < lhs.len(),
            "conv3x3: left tile too small"
        );
        assert!(
            reach(k, n, rhs_strides) < rhs.len(),
            "conv3x3: right tile too small"
        );
    }
    // SAFETY: every element the strides reach lies inside its slice (asserted above) or the
    // destination (valid, and overlapping neither operand: this function's contract). gemm
    // takes raw pointers and strides; no safe interface offers strided operands.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            signed(dst_strides.0),
            signed(dst_strides.1),
            accumulate,
            lhs.as_ptr(),
            signed(lhs_strides.0),
            signed(lhs_strides.1),
            rhs.as_ptr(),
            signed(rhs_strides.0),
            signed(rhs_strides.1),
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// The convolution of channels-last `x` (`[batch * H * W, C]`): `[batch * H_out * W_out,
/// out]`.
pub(super) fn forward(x: &[f32], weight: &[f32], g: &Geometry) -> Vec<f32> {
    let matrix = weight_matrix(weight, g);
    let runs = runs(g);
    let (k, c_out) = (g.k(), g.out);
    let per_tile = g.images_per_tile();
    let tile_rows = per_tile * g.out_pixels();
    let write = |columns: &mut Vec<f32>, tile: usize, out_tile: &mut [MaybeUninit<f32>]| {
        let first = tile * per_tile;
        let images = first..(first + per_tile).min(g.batch);
        let rows = images.len() * g.out_pixels();
        gather(x, g, &runs, images, &mut columns[..rows * k]);
        product_into(
            (rows, c_out, k),
            out_tile,
            columns,
            (1, k),
            &matrix,
            (1, c_out),
        );
    };
    // SAFETY: `product_into` writes every element of its tile (it asserts that the tile holds
    // `rows x c_out` floats: whole images, as the chunks are).
    #[allow(unsafe_code)]
    unsafe {
        par_written(
            g.batch * g.out_pixels() * c_out,
            tile_rows * c_out,
            || vec![0.0f32; tile_rows * k],
            write,
        )
    }
}

/// The gradient of the input, `[batch * H * W, C]`, given `grad`, the output's
/// (`[batch * H_out * W_out, out]`): per tile, the columns' gradient (`grad x matrix^T`, in
/// cache) added back to the pixels they were gathered from, in a fixed order.
pub(super) fn input_grad(grad: &[f32], weight: &[f32], g: &Geometry) -> Vec<f32> {
    let matrix = weight_matrix(weight, g);
    let runs = runs(g);
    let (c, k, c_out) = (g.channels, g.k(), g.out);
    let per_tile = g.images_per_tile();
    let tile_rows = per_tile * g.out_pixels();
    // Each tile's pixels are zeroed by `par_filled`, and the columns' gradients added to them.
    par_filled(
        g.batch * g.in_pixels() * c,
        per_tile * g.in_pixels() * c,
        || vec![0.0f32; tile_rows * k],
        |columns, tile, dx_tile| {
            let first = tile * per_tile;
            let images = (first + per_tile).min(g.batch) - first;
            let rows = images * g.out_pixels();
            let grad_tile = &grad[first * g.out_pixels() * c_out..][..rows * c_out];
            product(
                (rows, k, c_out),
                &mut columns[..rows * k],
                (1, k),
                grad_tile,
                (1, c_out),
                &matrix,
                (c_out, 1),
                false,
            );
            scatter_add(g, &runs, images, &columns[..rows * k], dx_tile);
        },
    )
}

/// The gradient of the weight, `[out, in, 3, 3]`: `columns^T x grad` summed over the batch,
/// by chunks of images fixed by the shapes ([`WEIGHT_CHUNKS`], [`WEIGHT_CHUNK_MIN_ROWS`]), each
/// chunk tile by tile in order, the chunks added in order: the same sums on any number of
/// threads.
pub(super) fn weight_grad(x: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    let (c_in, k, c_out) = (g.channels, g.k(), g.out);
    let per_tile = g.images_per_tile();
    let tile_rows = per_tile * g.out_pixels();
    let chunk_images = g
        .batch
        .div_ceil(WEIGHT_CHUNKS)
        .max(WEIGHT_CHUNK_MIN_ROWS.div_ceil(g.out_pixels().max(1)))
        .max(1);
    let chunks = g.batch.div_ceil(chunk_images);
    let runs = runs(g);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|chunk| {
            let mut sum = vec![0.0f32; k * c_out];
            let mut columns = vec![0.0f32; tile_rows * k];
            let end = ((chunk + 1) * chunk_images).min(g.batch);
            let mut first = chunk * chunk_images;
            while first < end {
                let last = (first + per_tile).min(end);
                let rows = (last - first) * g.out_pixels();
                gather(x, g, &runs, first..last, &mut columns[..rows * k]);
                let grad_tile = &grad[first * g.out_pixels() * c_out..][..rows * c_out];
                product(
                    (k, c_out, rows),
                    &mut sum,
                    (1, c_out),
                    &columns,
                    (k, 1),
                    grad_tile,
                    (1, c_out),
                    true,
                );
                first = last;
            }
            sum
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut sum = partials.next().unwrap_or_else(|| vec![0.0; k * c_out]);
    for part in partials {
        for (s, p) in sum.iter_mut().zip(part) {
            *s += p;
        }
    }
    // Back to the weight's layout.
    let mut weight = vec![0.0f32; c_out * c_in * 9];
    for o in 0..c_out {
        for c in 0..c_in {
            for tap in 0..9 {
                weight[(o * c_in + c) * 9 + tap] = sum[(tap * c_in + c) * c_out + o];
            }
        }
    }
    weight
}

#[cfg(test)]
mod tests {
    /// Every length, with the overlapping last block among them, against `copy_from_slice`;
    /// nothing outside the destination is touched.
    #[test]
    fn copy_matches_copy_from_slice_at_every_length() {
        let src: Vec<f32> = (0..80).map(|v| v as f32 + 0.5).collect();
        for len in 0..=70 {
            let mut got = vec![-1.0f32; len + 2];
            super::copy(&mut got[1..=len], &src[3..3 + len]);
            let mut want = vec![-1.0f32; len + 2];
            want[1..=len].copy_from_slice(&src[3..3 + len]);
            assert_eq!(got, want, "a run of {len}");
        }
    }
}
