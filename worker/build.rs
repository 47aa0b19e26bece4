//! Embeds libtorch's directory as the binaries' RUNPATH and links libtorch_cuda eagerly.
//!
//! tch's own build script sets the rpath only for itself, and `--as-needed` would drop
//! `libtorch_cuda.so` (nothing references it by symbol), so CUDA would look absent on a GPU
//! machine. `DEP_TCH_LIBTORCH_LIB` comes from our direct dependency on torch-sys.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // cudarc dlopens libnccl at run time; the wheel ships it beside torch.
        let nccl = std::path::Path::new(&lib).join("../../nvidia/nccl/lib");
        if nccl.exists() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", nccl.display());
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-ltorch_cuda");
        }
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
