//! The device side of the CUDA engine: buffers, the kernel module and its function table, launches,
//! cuBLAS products and copies between host and device.

use super::CudaQwen3;
use anyhow::{Context, Result};
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    ValidAsZeroBits, result as driver, sys as driver_sys,
};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;

/// The kernels, compiled by build.rs with nvcc for sm_90 (plus PTX the driver can compile for newer GPUs).
const KERNELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));

/// A device buffer and its raw address (kernels and cuBLAS take addresses; the slice owns the memory).
pub(super) struct Buf<T> {
    pub(super) slice: CudaSlice<T>,
    pub(super) ptr: u64,
}

impl<T: DeviceRepr + ValidAsZeroBits> Buf<T> {
    pub(super) fn zeros(stream: &Arc<CudaStream>, len: usize) -> Result<Self> {
        let slice = stream
            .alloc_zeros::<T>(len.max(1))
            .with_context(|| out_of_memory(len * std::mem::size_of::<T>()))?;
        let ptr = slice.device_ptr(stream).0;
        Ok(Buf { slice, ptr })
    }

    pub(super) fn from_host(stream: &Arc<CudaStream>, data: &[T]) -> Result<Self> {
        let slice = stream
            .clone_htod(data)
            .with_context(|| out_of_memory(std::mem::size_of_val(data)))?;
        let ptr = slice.device_ptr(stream).0;
        Ok(Buf { slice, ptr })
    }

    /// The address of element `index`.
    pub(super) fn at(&self, index: usize) -> u64 {
        self.ptr + (index * std::mem::size_of::<T>()) as u64
    }

    pub(super) fn bytes(&self) -> usize {
        self.slice.len() * std::mem::size_of::<T>()
    }
}

fn out_of_memory(bytes: usize) -> String {
    format!(
        "allocating {:.1} MiB on the GPU failed: free GPU memory or lower context_length",
        bytes as f64 / (1 << 20) as f64
    )
}

pub(super) struct Kernels {
    pub(super) embed_f16: CudaFunction,
    pub(super) embed_awq: CudaFunction,
    pub(super) rms_norm: CudaFunction,
    pub(super) awq_gemv: CudaFunction,
    pub(super) awq_gemv_attn: CudaFunction,
    pub(super) argmax_logits: CudaFunction,
    pub(super) sample_top_k_blocks: CudaFunction,
    pub(super) sample_top_k: CudaFunction,
    pub(super) awq_repack: CudaFunction,
    pub(super) quantize_rows_i8: CudaFunction,
    pub(super) i8_gemv: CudaFunction,
    pub(super) awq_dequant: CudaFunction,
    pub(super) dense_gemv: CudaFunction,
    pub(super) qk_norm_rope: CudaFunction,
    pub(super) attn_decode: CudaFunction,
    pub(super) attn_decode_fp8: CudaFunction,
    /// Prefill attention for head dims padded to 32, 64 and 128 (attn_prefill.cuh), over an f16 cache.
    pub(super) flash_prefill: [CudaFunction; 3],
    /// The same over an fp8 cache.
    pub(super) flash_prefill_fp8: [CudaFunction; 3],
    pub(super) silu_mul: CudaFunction,
}

impl Kernels {
    pub(super) fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let module = ctx.load_module(Ptx::from_binary(KERNELS.to_vec())).context(
            "loading the CUDA kernels failed: this build targets compute capability 9.0 (H100/H200) and \
             newer GPUs, with a driver for CUDA 13.0 or later",
        )?;
        let f = |name: &str| {
            module
                .load_function(name)
                .with_context(|| format!("kernel {name} is missing from the module"))
        };
        Ok(Kernels {
            embed_f16: f("embed_f16")?,
            embed_awq: f("embed_awq")?,
            rms_norm: f("rms_norm")?,
            awq_gemv: f("awq_gemv")?,
            awq_gemv_attn: f("awq_gemv_attn")?,
            argmax_logits: f("argmax_logits")?,
            sample_top_k_blocks: f("sample_top_k_blocks")?,
            sample_top_k: f("sample_top_k")?,
            awq_repack: f("awq_repack")?,
            quantize_rows_i8: f("quantize_rows_i8")?,
            i8_gemv: f("i8_gemv")?,
            awq_dequant: f("awq_dequant")?,
            dense_gemv: f("dense_gemv")?,
            qk_norm_rope: f("qk_norm_rope")?,
            attn_decode: f("attn_decode")?,
            attn_decode_fp8: f("attn_decode_fp8")?,
            flash_prefill: [
                f("flash_prefill_32")?,
                f("flash_prefill_64")?,
                f("flash_prefill_128")?,
            ],
            flash_prefill_fp8: [
                f("flash_prefill_fp8_32")?,
                f("flash_prefill_fp8_64")?,
                f("flash_prefill_fp8_128")?,
            ],
            silu_mul: f("silu_mul")?,
        })
    }
}

/// A kernel argument: a device address, a scalar, or one matrix of a fused GEMV.
pub(super) enum Arg {
    Ptr(u64),
    Int(i32),
    Float(f32),
    Matrix(AwqMatrix),
}

impl Arg {
    /// The address of the value, as `cuLaunchKernelEx` takes each parameter.
    fn as_param(&self) -> *mut std::ffi::c_void {
        match self {
            Arg::Ptr(p) => p as *const u64 as *mut _,
            Arg::Int(i) => i as *const i32 as *mut _,
            Arg::Float(x) => x as *const f32 as *mut _,
            Arg::Matrix(m) => m as *const AwqMatrix as *mut _,
        }
    }
}

/// `struct AwqMatrix` of kernels.cu: one AWQ matrix and its output.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct AwqMatrix {
    pub(super) qweight: u64,
    pub(super) qzeros: u64,
    pub(super) scales: u64,
    pub(super) y: u64,
    pub(super) n: i32,
}

// SAFETY: plain data with the C struct's layout (four addresses and an int, padded to 40 bytes).
unsafe impl DeviceRepr for AwqMatrix {}

pub(super) fn int(n: usize) -> Arg {
    Arg::Int(n as i32)
}

pub(super) fn grid(blocks: (usize, usize), threads: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.0 as u32, blocks.1 as u32, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches `f` on `stream`; with `overlap`, programmatic dependent launch lets it start while the
/// kernel before it runs (see `CudaQwen3::overlap`).
pub(super) fn launch_on(
    stream: &CudaStream,
    f: &CudaFunction,
    cfg: LaunchConfig,
    args: &[Arg],
    overlap: bool,
) -> Result<()> {
    use driver_sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    let mut params: Vec<_> = args.iter().map(Arg::as_param).collect();
    // SAFETY: a zeroed attribute is valid C data; only the field the id names is read.
    let mut attribute: driver_sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    let config = driver_sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: stream.cu_stream(),
        attrs: &mut attribute,
        numAttrs: overlap as u32,
    };
    // SAFETY: each call site passes the arguments its kernel declares, with buffers sized by `load`;
    // `params` points into `args`, which outlives the call; the function belongs to this context.
    unsafe {
        driver_sys::cuLaunchKernelEx(
            &config,
            f.cu_function(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
    .context("a CUDA kernel failed to launch")
}

impl CudaQwen3 {
    /// Launches a kernel that may overlap the one before it (see `overlap`).
    pub(super) fn launch(&self, f: &CudaFunction, cfg: LaunchConfig, args: &[Arg]) -> Result<()> {
        self.launch_with(f, cfg, args, self.overlap)
    }

    pub(super) fn launch_with(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        args: &[Arg],
        overlap: bool,
    ) -> Result<()> {
        launch_on(&self.stream, f, cfg, args, overlap)
    }

    /// Column-major C = alpha·op(A)·op(B) + beta·C over `batch` matrices (strides in elements), f32
    /// accumulation; A and B are f16, C is f32 or f16.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm(
        &self,
        transa: bool,
        (m, n, k): (usize, usize, usize),
        a: (u64, usize, usize),
        b: (u64, usize, usize),
        c: (u64, usize, usize, bool),
        alpha: f32,
        beta: f32,
        batch: usize,
    ) -> Result<()> {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        use blas_sys::cudaDataType::{CUDA_R_16F, CUDA_R_32F};
        let c_type = if c.3 { CUDA_R_32F } else { CUDA_R_16F };
        // SAFETY: the addresses and leading dimensions describe buffers allocated by `load` for these
        // shapes; alpha and beta are host scalars (cuBLAS' default pointer mode).
        unsafe {
            blas::gemm_strided_batched_ex(
                *self.blas.handle(),
                if transa { CUBLAS_OP_T } else { CUBLAS_OP_N },
                CUBLAS_OP_N,
                m as i32,
                n as i32,
                k as i32,
                &alpha as *const f32 as *const _,
                a.0 as *const _,
                CUDA_R_16F,
                a.1 as i32,
                a.2 as i64,
                b.0 as *const _,
                CUDA_R_16F,
                b.1 as i32,
                b.2 as i64,
                &beta as *const f32 as *const _,
                c.0 as *mut _,
                c_type,
                c.1 as i32,
                c.2 as i64,
                batch as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .context("a cuBLAS matrix product failed")
    }

    /// Sends a chunk's ids and positions to the device (never part of a graph: the values change).
    pub(super) fn upload_chunk(&self, ids: &[u32], start: usize) -> Result<()> {
        let s = &self.scratch;
        assert!(
            ids.len() <= s.ids.slice.len(),
            "upload_chunk: {} ids exceed the scratch's {} (chunk_len sizes chunks)",
            ids.len(),
            s.ids.slice.len()
        );
        let ids_i32: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
        let step = [start as i32, (start + ids.len()) as i32];
        // SAFETY: the ids buffer holds at least ids.len() elements (asserted above); step holds 2.
        // Copies from pageable memory return once the data is staged, so the vectors may be dropped.
        unsafe {
            driver::memcpy_htod_async(s.ids.ptr, &ids_i32, self.stream.cu_stream())?;
            driver::memcpy_htod_async(s.step.ptr, &step, self.stream.cu_stream())?;
        }
        Ok(())
    }

    /// Appends `rows` rows of logits from the device to `out`, waiting for the GPU.
    pub(super) fn download(
        &self,
        logits: &Buf<f32>,
        rows: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let len = rows * self.config.vocab_size;
        assert!(
            len <= logits.slice.len(),
            "download: {rows} rows of logits exceed the buffer's {} values",
            logits.slice.len()
        );
        let at = out.len();
        out.resize(at + len, 0.0);
        // SAFETY: `logits` holds at least rows × vocab f32 (asserted above).
        unsafe { self.copy_to_host(logits.ptr, &mut out[at..]) }
    }

    /// Copies `out.len()` values from device address `src` into `out` once the work queued before
    /// (which computes them) is done, waiting for the GPU.
    ///
    /// # Safety
    /// `src` must hold at least `out.len()` values of type `T`.
    pub(super) unsafe fn copy_to_host<T>(&self, src: u64, out: &mut [T]) -> Result<()> {
        // SAFETY: the caller's contract; the copy is ordered on the stream after the work that writes `src`.
        unsafe { driver::memcpy_dtoh_async(out, src, self.stream.cu_stream()) }?;
        self.stream
            .synchronize()
            .context("the GPU failed while computing logits")?;
        Ok(())
    }
}
