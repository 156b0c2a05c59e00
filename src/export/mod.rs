//! Export of a trained model to other runtimes.

pub mod proto;
