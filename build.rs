//! Generates the ONNX protobuf types (`onnx.rs` in `OUT_DIR`) from the vendored official
//! `proto/onnx.proto`: protox compiles the schema in Rust (no `protoc` needed) and prost-build
//! writes the message types that `src/export/proto.rs` includes.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
