//! Small helpers the loss terms' unit tests share.

use burn::tensor::{Device, Tensor, TensorData};

pub fn device() -> Device {
    Device::flex()
}

/// A `[.., .., ..]` tensor from row-major values.
pub fn t3(values: &[f32], dims: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(values.to_vec(), dims), device)
}

pub fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar::<f32>()
}

/// Whether `a` is within `tol` of `b`, relative to `1 + |b|`.
pub fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}
