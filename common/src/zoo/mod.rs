//! The model catalogue: the seed's models, the configurable CNN family and ResNets, as
//! [`Architecture`](crate::arch::Architecture)s built for an input size and class count.
//!
//! - `catalogue`: [`names`], [`describe`], [`accepted_factors`], [`build`],
//!   [`min_image_size`].
//! - `factors`: [`FACTOR_KEYS`], [`factor_label`], [`set_factor`] (`key=value` parsing).
//! - `classic`, `cnn_family`, `resnet`, `blocks`: the layer lists.

mod blocks;
mod catalogue;
mod classic;
mod cnn_family;
mod error;
mod factors;
mod resnet;
#[cfg(test)]
mod tests;

pub use catalogue::{
    accepted_factors, build, describe, family_factor_values, min_image_size, names, MAX_IMAGE_SIZE,
};
pub use error::ZooError;
pub use factors::{factor_label, set_factor, FACTOR_KEYS};
