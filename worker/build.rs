//! Embeds libtorch's directory as the binaries' RUNPATH, links libtorch_cuda eagerly, and
//! compiles the C++ in `csrc/` against libtorch's headers.
//!
//! tch's own build script sets the rpath only for itself, and `--as-needed` would drop
//! `libtorch_cuda.so` (nothing references it by symbol), so CUDA would look absent on a GPU
//! machine. `DEP_TCH_LIBTORCH_LIB` comes from our direct dependency on torch-sys.
use std::path::Path;

/// The C++ shims (ATen calls tch does not expose).
const CSRC: [&str; 3] = [
    "csrc/leaky_relu.cpp",
    "csrc/generator.cpp",
    "csrc/autocast.cpp",
];

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    for file in CSRC {
        println!("cargo:rerun-if-changed={file}");
    }
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys reports libtorch's lib directory (DEP_TCH_LIBTORCH_LIB)");
    let lib = Path::new(&lib);
    compile_csrc(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // cudarc dlopens libnccl at run time; the wheel ships it beside torch.
    let nccl = lib.join("../../nvidia/nccl/lib");
    if nccl.exists() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", nccl.display());
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-ltorch");
}

/// `csrc/*.cpp` into a static library, with the include layout of libtorch and of the torch
/// wheel (`<lib>/../include`).
fn compile_csrc(lib: &Path) {
    let include = lib.join("../include");
    cc::Build::new()
        .cpp(true)
        .files(CSRC)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // libtorch 2.11 (tch 0.24's) is built with the C++11 string ABI.
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .compile("ablate_csrc");
}
