//! Models as data: a small layer tree that the catalogue builds and everybody reads.
//!
//! The same [`Architecture`] drives shape inference, parameter and FLOP counting and
//! validation here (no tch), and the tch module that the worker builds, so the numbers the
//! coordinator shows and the model a worker trains can never disagree.

mod layer;
mod shape;

pub use layer::{
    Activation, Architecture, Convolution, DropoutImpl, InitScheme, Layer, PoolKind, Pooling,
};
pub use shape::{analyse, Analysis, ArchError, Shape};
