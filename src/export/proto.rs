//! The ONNX protobuf messages (`ModelProto`, `GraphProto`, `NodeProto`, `TensorProto`, …),
//! generated at build time by prost-build from the official `onnx.proto` vendored under
//! `proto/` (see `build.rs`). Nothing here is written by hand.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
