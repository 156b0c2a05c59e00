//! Generates the ONNX protobuf types (`onnx.rs` in `OUT_DIR`) from the vendored official
//! `proto/onnx.proto`: protox compiles the schema in Rust (no `protoc` needed) and prost-build
//! writes the message types that `src/export/proto.rs` includes. It also warns when NASM, which
//! libjpeg-turbo's SIMD code needs, is missing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    warn_without_nasm();
    Ok(())
}

/// On x86, `mozjpeg-sys` assembles libjpeg-turbo's SIMD code with NASM and quietly leaves it
/// out when NASM is missing (a dependency's build warnings are not shown), which halves JPEG
/// decoding speed. Say so here, where cargo shows it.
fn warn_without_nasm() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" && arch != "x86" {
        return;
    }
    let found = std::process::Command::new("nasm")
        .arg("-v")
        .output()
        .is_ok_and(|out| out.status.success());
    // For the test that holds `data::jpeg::simd` to what this build found.
    println!(
        "cargo:rustc-env=STRATA_BUILT_WITH_NASM={}",
        if found { "yes" } else { "no" }
    );
    if !found {
        println!(
            "cargo:warning=NASM is not installed: libjpeg-turbo is built without its SIMD code \
             and strata decodes JPEGs at about half speed. Install it (apt-get install nasm), \
             then run `cargo clean --release -p mozjpeg-sys` and build again."
        );
    }
}
