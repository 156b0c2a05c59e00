//! strata: a declarative model-spec compiler.
//!
//! A spec file (YAML) holds a layer-stack model such as
//! `bn -> (conv2x2 relu -> pool2)x7 -> dense2 softmax`. This crate loads it ([`spec`]),
//! parses the model ([`syntax`]), checks it into the [`ir`] ([`compile`]) and reports
//! problems as [`diagnostics`]. See `ARCHITECTURE.md` for the stages.

pub mod backend;
pub mod catalogue;
pub mod cli;
pub mod compile;
pub mod data;
pub mod diagnostics;
pub mod distributed;
pub mod export;
pub mod files;
pub mod infer;
pub mod ir;
pub mod lsp;
pub mod plot;
pub mod settings;
pub mod spec;
pub mod suggest;
pub mod summary;
pub mod syntax;
pub mod text;
pub mod train;

pub use compile::{compile, Compiled};
