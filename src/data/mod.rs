//! Image data: the single-image loader ([`image`]) and its JPEG fast path ([`jpeg`]), class
//! folders ([`folder`]), the pre-flight scan ([`check`]), training-time augmentation
//! ([`augment`]) and the `strata::data::…` diagnostics ([`errors`]).

pub mod augment;
pub mod check;
pub mod errors;
pub mod folder;
pub mod image;
pub mod jpeg;
pub mod loader;
pub mod paths;
mod rows;

pub use self::folder::{scan, ImageFolder};
pub use self::image::{load_image, ImageProblem, ImageSpec};
pub use self::loader::{Batch, Loader};
