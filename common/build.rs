//! Compiles `proto/ablate.proto` with the protoc that ships inside `protoc-bin-vendored`,
//! so that building never depends on a protoc installed by hand.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the env.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=../proto/ablate.proto");
    tonic_prost_build::configure().compile_protos(&["../proto/ablate.proto"], &["../proto"])?;
    Ok(())
}
