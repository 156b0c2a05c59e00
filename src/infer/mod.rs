//! Inference with a trained model: a checkpoint (or a run folder's best one) with its embedded
//! spec compiled back into a network ([`trained`]), class probabilities for image files
//! ([`predict`]) and metrics on a folder of class folders ([`evaluate`]).

pub mod errors;
pub mod evaluate;
pub mod predict;
pub mod trained;

pub use self::evaluate::{evaluate, Evaluation};
pub use self::predict::{image_files, predict_files, Prediction, Predictions};
pub use self::trained::{checkpoint_path, LoadError, Trained};
