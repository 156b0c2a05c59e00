//! The backend: checked IR → trainable network on dfdx, the differentiable ops dfdx lacks on
//! stable Rust, optimisers and checkpoints.

pub mod checkpoint;
pub mod data_parallel;
pub mod forward;
pub mod memory;
pub mod network;
pub mod ops;
pub mod optimizer;
pub mod params;
pub mod schedule;
pub mod split;
