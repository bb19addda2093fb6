//! Data: the sandbox's synthetic labelled point sets and their views; image sets (built-in,
//! IDX, CIFAR, STL-10, image folders) behind the `Dataset` trait; multi-view augmentation and
//! the loader thread. Their random draws come from `crate::seed`.

pub mod augment;
pub mod builtin;
pub mod cifar;
pub mod detect;
pub mod folder;
pub mod idx;
pub mod images;
pub mod loader;
pub mod sandbox;
pub mod source;
