//! With the feature `tch`, binaries and tests find LibTorch's shared libraries where
//! torch-sys found them at build time (an rpath), so no `LD_LIBRARY_PATH` is needed.
//! Without it, this does nothing.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    // Rust links with --as-needed, which would drop libtorch_cuda (nothing refers to it by
    // name: LibTorch registers its CUDA kernels when the library loads), leaving a
    // LibTorch without CUDA. Keep it when the LibTorch found has it.
    if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
