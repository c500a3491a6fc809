//! With feature `cuda`, compiles src/model/cuda/kernels.cu (and the .cuh files it includes) into a
//! fatbin (sm_90 machine code plus compute_90 PTX for newer GPUs) that the binary embeds. nvcc comes from $NVCC, $CUDA_HOME/bin or PATH;
//! scripts/build-cuda.sh sets all of it up from pip.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let source = "src/model/cuda/kernels.cu";
    // kernels.cu includes the other .cuh files of its directory.
    println!("cargo:rerun-if-changed=src/model/cuda");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CUDA_HOME").map(|home| PathBuf::from(home).join("bin/nvcc")))
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let fatbin = out.join("kernels.fatbin");
    let output = Command::new(&nvcc)
        .args(["-fatbin", "-O3", "--use_fast_math", "--resource-usage", "-std=c++17"])
        .args(["-gencode", "arch=compute_90,code=sm_90"])
        .args(["-gencode", "arch=compute_90,code=compute_90"])
        .arg("-o")
        .arg(&fatbin)
        .arg(source)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "feature `cuda` needs nvcc ({}: {e}); run scripts/build-cuda.sh, which fetches the CUDA \
                 13.0 compiler from pip, or set NVCC",
                nvcc.display()
            )
        });
    // The register / shared-memory report, kept for reading (target/*/build/qwen3-agent-*/out).
    std::fs::write(out.join("kernels-resource-usage.txt"), &output.stderr).ok();
    if !output.status.success() {
        panic!(
            "nvcc failed on {source}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
