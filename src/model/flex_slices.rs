//! `f32` slices out of flex tensors and back, for msbreg's own operations on flex
//! ([`super::batch_norm_relu`], [`super::conv3x3`]): their kernels work on slices.

use burn::tensor::{Shape, TensorData};
use burn_flex::FlexTensor;

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
