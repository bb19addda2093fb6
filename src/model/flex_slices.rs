//! `f32` slices out of flex tensors and back, for msbreg's own operations on flex
//! ([`super::batch_norm_relu`], [`super::conv3x3`]): their kernels work on slices.

use burn::tensor::{Shape, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A tensor's values in row-major order: borrowed when its layout is contiguous, else copied.
///
/// # Panics
/// If the tensor is not `f32`: the operations' `supported` checks keep other types away.
pub(super) fn f32_values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => std::borrow::Cow::Borrowed(values),
        None => {
            std::borrow::Cow::Owned(tensor.clone().into_data().try_to_vec::<f32>().expect(
                "msbreg's flex operations take f32 tensors (the callers check `supported`)",
            ))
        }
    }
}

/// A flex tensor of `shape` holding `values`.
pub(super) fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `len` floats made over rayon's threads, chunk by chunk: `fill(state, i, chunk)` writes the
/// `i`-th chunk of `chunk_len` floats (the last one may be shorter), with `state` from `init`
/// (once per rayon job, as in `for_each_init`). Each chunk is zeroed by its own task just
/// before `fill` gets it. `vec![0.0; len]` instead zeroes the whole vector on the calling
/// thread first: a serial pass over memory before every convolution's input gradient, which
/// adds into it. Where every element is written anyway, [`par_written`] skips the zeroing.
pub(super) fn par_filled<T>(
    len: usize,
    chunk_len: usize,
    init: impl Fn() -> T + Sync + Send,
    fill: impl Fn(&mut T, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let zeroed_then_filled = |state: &mut T, i: usize, chunk: &mut [MaybeUninit<f32>]| {
        chunk.fill(MaybeUninit::new(0.0));
        // SAFETY: every element of `chunk` was initialised on the line above, and
        // `MaybeUninit<f32>` has `f32`'s size and alignment.
        #[allow(unsafe_code)]
        let chunk = unsafe { &mut *(std::ptr::from_mut(chunk) as *mut [f32]) };
        fill(state, i, chunk);
    };
    // SAFETY: `zeroed_then_filled` initialises every element of each chunk it is given.
    #[allow(unsafe_code)]
    unsafe {
        par_written(len, chunk_len, init, zeroed_then_filled)
    }
}

/// `len` floats written over rayon's threads, chunk by chunk, never zeroed: `fill(state, i,
/// chunk)` gets the `i`-th chunk of `chunk_len` uninitialised floats (the last one may be
/// shorter), with `state` from `init` (once per rayon job, as in `for_each_init`). Zeroing
/// first, even chunk by chunk, was a pass over memory of its own (`memset`, 5.8% of a
/// one-thread training step under `perf`): the kernels' own writes then go to memory once.
///
/// # Safety
/// `fill` must write every element of each chunk it is given (the vector's length is set to
/// `len` afterwards, so an element left unwritten would be read uninitialised).
///
/// # Panics
/// If `chunk_len` is 0 while `len` is not.
#[allow(unsafe_code)]
pub(super) unsafe fn par_written<T>(
    len: usize,
    chunk_len: usize,
    init: impl Fn() -> T + Sync + Send,
    fill: impl Fn(&mut T, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut values: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return values;
    }
    assert!(chunk_len > 0, "par_written: chunks of no floats");
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk_len)
        .enumerate()
        .for_each_init(init, |state, (i, chunk)| fill(state, i, chunk));
    // SAFETY: the chunks cover `0..len` of the spare capacity, and `fill` wrote each of their
    // elements (this function's contract); `len` is within the capacity.
    unsafe {
        values.set_len(len);
    }
    values
}

/// `run` on a rayon pool of `threads` threads: the kernels' tests check that their sums do not
/// depend on the thread count.
#[cfg(test)]
pub(super) fn on_threads<R: Send>(threads: usize, run: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_filled_writes_every_chunk_in_place() {
        for (len, chunk) in [(0, 4), (10, 3), (12, 4), (1000, 64), (5, 100)] {
            let made = on_threads(3, || {
                par_filled(
                    len,
                    chunk,
                    || (),
                    |(), i, values| {
                        assert!(values.iter().all(|&v| v == 0.0), "chunk {i} not zeroed");
                        for (j, v) in values.iter_mut().enumerate() {
                            *v = (i * chunk + j) as f32;
                        }
                    },
                )
            });
            let expected: Vec<f32> = (0..len).map(|v| v as f32).collect();
            assert_eq!(made, expected, "len {len}, chunks of {chunk}");
        }
    }
}
