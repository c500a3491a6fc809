// Kernels of the CUDA engine (src/model/cuda/mod.rs). Activations between layers are f32 (the residual
// stream) or f16 (inputs of matrix products); AWQ weights stay 4-bit, repacked at load (awq_repack).
//
// AWQ packing of the checkpoint: qweight is [K][N/8] u32, nibble i of a word holding logical column
// PACK_ORDER[i] with PACK_ORDER = {0,2,4,6,1,3,5,7}; qzeros [K/group][N/8] is packed the same way, scales
// are [K/group][N] f16, and W[k][n] = (q - z) * s. On the device qweight is in the decode layout below;
// qzeros and scales keep the checkpoint's.
#include <cuda_fp16.h>
#include <stdint.h>

#define FULL_MASK 0xffffffffu

// Programmatic dependent launch (sm_90): the host launches each kernel with the next one allowed to start
// early. Every kernel lets its successor start at once and waits for its predecessor's results before it
// reads an activation or writes anything; what a kernel does before that wait (the GEMV's weight loads)
// overlaps the kernels before it. Without the launch attribute both are no-ops.
__device__ __forceinline__ void start_dependents() { asm volatile("griddepcontrol.launch_dependents;"); }
__device__ __forceinline__ void wait_for_inputs() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

struct Sum {
    __device__ float operator()(float a, float b) const { return a + b; }
    static constexpr float identity = 0.f;
};
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
    static constexpr float identity = -INFINITY;
};

template <typename Op>
__device__ __forceinline__ float warp_reduce(float v) {
    for (int o = 16; o > 0; o >>= 1) v = Op()(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Reduction over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
template <typename Op>
__device__ float block_reduce(float v) {
    __shared__ float partial[32];
    __shared__ float total;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_reduce<Op>(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float x = lane < (blockDim.x >> 5) ? partial[lane] : Op::identity;
        x = warp_reduce<Op>(x);
        if (lane == 0) total = x;
    }
    __syncthreads();
    return total;
}

// Decode layout of an AWQ qweight (awq_repack): for output strip s (32 columns), chunk c (32 input rows)
// and lane l (column 32s + l), 16 bytes = 4 words, word j holding rows 32c + 8j + b (b = 0..3) in the low
// nibble of byte b and rows 32c + 8j + 4 + b in its high nibble. Ordered [s][c][l][j]: a warp of the GEMV
// reads one chunk of its strip as 512 contiguous bytes and the strip's chunks one after another, and a
// masked word is four int8 rows ready for __dp4a.
__device__ __forceinline__ size_t repacked_word(int k, int n, int K) {
    return (((size_t)(n >> 5) * (K >> 5) + (k >> 5)) * 32 + (n & 31)) * 4 + ((k & 31) >> 3);
}
// Row k's nibble in its word of the decode layout.
__device__ __forceinline__ int repacked_shift(int k) { return 8 * (k & 3) + 4 * ((k >> 2) & 1); }
// Column n's nibble in a checkpoint-packed word (the inverse of PACK_ORDER).
__device__ __forceinline__ int awq_shift(int n) { return 4 * (((n & 7) >> 1) + 4 * (n & 1)); }

// v · inv rounded half away from zero, as quantize_group in int8_matrix.rs (the CPU engine) rounds:
// with inv = 127 / max|v| of the group the result fits an int8.
__device__ __forceinline__ int round_to_i8(float v, float inv) {
    const float scaled = v * inv;
    return (int)(scaled + copysignf(0.5f, scaled));
}

// Zeroes zero[0..len) with every thread of the grid: outputs the next GEMVs accumulate into, cleared
// by a kernel already in the chain rather than by a memset of their own.
__device__ __forceinline__ void zero_fill(float* zero, int len) {
    const int threads = gridDim.x * gridDim.y * gridDim.z * blockDim.x;
    const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    for (int i = block * blockDim.x + threadIdx.x; i < len; i += threads) zero[i] = 0.f;
}

// hidden[t] = table[ids[t]] for an f16 [vocab][h] table, one element per thread (grid (tokens, h / 256
// rounded up): a loop would be a chain of dependent loads); zeroes zero[0..zero_len) (layer 0's q/k/v).
extern "C" __global__ void embed_f16(const half* table, const int* ids, float* hidden, int h, float* zero,
                                     int zero_len) {
    start_dependents();
    wait_for_inputs();
    zero_fill(zero, zero_len);
    const half* row = table + (size_t)ids[blockIdx.x] * h;
    float* out = hidden + (size_t)blockIdx.x * h;
    const int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i < h) out[i] = __half2float(row[i]);
}

// hidden[t] = column ids[t] of an AWQ [h][vocab] matrix in the decode layout (a tied embedding
// quantized as the lm_head); zeroes as embed_f16 does.
extern "C" __global__ void embed_awq(const uint32_t* qweight, const uint32_t* qzeros, const half* scales,
                                     const int* ids, float* hidden, int h, int vocab, int group, float* zero,
                                     int zero_len) {
    start_dependents();
    wait_for_inputs();
    zero_fill(zero, zero_len);
    const int id = ids[blockIdx.x], zshift = awq_shift(id);
    const int k = blockIdx.y * blockDim.x + threadIdx.x;
    if (k < h) {
        const int g = k / group;
        const float q = (float)((qweight[repacked_word(k, id, h)] >> repacked_shift(k)) & 0xF);
        const float z = (float)((qzeros[(size_t)g * (vocab >> 3) + (id >> 3)] >> zshift) & 0xF);
        hidden[(size_t)blockIdx.x * h + k] = (q - z) * __half2float(scales[(size_t)g * vocab + id]);
    }
}

// out[row] = x[row] / sqrt(mean(x[row]^2) + eps) * w, as f16; block r < rows normalizes row r. Also
// zeroes zero[0..zero_len) over all blocks (the grid may have more than `rows`): the outputs the next
// GEMVs accumulate into, without a memset launch of their own.
extern "C" __global__ void rms_norm(const float* x, const float* w, half* out, int n, int rows, float eps,
                                    float* zero, int zero_len) {
    start_dependents();
    wait_for_inputs();
    zero_fill(zero, zero_len);
    if (blockIdx.x >= rows) return;
    const float* xr = x + (size_t)blockIdx.x * n;
    float ss = 0.f;
#pragma unroll 4
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    float inv = rsqrtf(block_reduce<Sum>(ss) / n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[(size_t)blockIdx.x * n + i] = __float2half(xr[i] * inv * w[i]);
}

// Decode GEMV over AWQ weights with int8 activations: y[N] += x[K] · W[K][N]; y must hold zeros or the
// residual to add to. The same trade as llama.cpp's Q4 × Q8 kernels and the CPU engine (awq_int8.rs):
// the input is quantized per AWQ group (x ≈ dx · x8, dx = max|x| / 127, round half away from zero), and
// __dp4a sums q · x8 four rows per instruction, where f16 would need one FMA per pair of weights.
// Up to three matrices sharing x and K (q/k/v, gate/up) run in one launch: blockIdx.x runs over their
// strips of 256 columns, one matrix after another (one wave of blocks, none idle).
// Block (strip, split): warp w takes columns 256·strip + 32w + lane over rows_per_block rows of K (a
// multiple of group = 32 << group_shift); each lane streams its column's 16-byte chunks of the decode
// layout (a warp reads 512 contiguous bytes per chunk), GEMV_INFLIGHT in flight, the register a chunk
// frees refilled at once. The dot products of a group's chunks add up as integers (high nibbles masked
// in place, so no shifts: dp4a.u32.s32 on 16 q) and its scale and zero are applied once per group:
// about 30 instructions per 16 bytes of weights, half of what a per-chunk scale took. Before waiting
// for its input the block starts those loads and copies its rows' scales and zeros (and RMSNorm
// weights) into shared memory (cp.async), so the loop never waits on anything but weights.
// The input is x; or the decode attention's output joined from its per-chunk parts when attn_partial
// is set (o_proj: join_attention, the attention then skips its own join); or silu(gate) · up when gate
// is set (the MLP's down projection); or RMSNorm(norm_x) · norm_w when norm_x is set (every block sums
// the squares of the whole row itself: cheaper than a last-block tail in the GEMV that wrote it, which
// the next kernel would wait for). Each block computes and quantizes its rows of the input once, into
// shared memory. After the wait the grid zeroes zero[0..zero_len): the outputs of a later GEMV, whose
// readers have finished by then.
#define GEMV_WARPS 8
// Positions per tile of the decode attention (attn_decode).
#define ATTN_CHUNK 64
// The decode attention's parts per KV head for a context of len positions when its grid has `splits`
// blocks per KV head: one per tile while the grid covers every tile; past that (long contexts) each
// block takes `attn_tiles_per_part` consecutive tiles, so the parts to join stay at most `splits`.
__device__ __forceinline__ int attn_tiles_per_part(int len, int splits) {
    const int tiles = (len + ATTN_CHUNK - 1) / ATTN_CHUNK;
    return (tiles + splits - 1) / splits;
}
__device__ __forceinline__ int attn_parts(int len, int splits) {
    const int tiles = (len + ATTN_CHUNK - 1) / ATTN_CHUNK, per = attn_tiles_per_part(len, splits);
    return (tiles + per - 1) / per;
}
#define GEMV_MAX_ROWS 1024
#define GEMV_MAX_GROUPS (GEMV_MAX_ROWS / 32)
#define GEMV_INFLIGHT 4
// The loop tests a group's end once per batch: groups and batches must both be powers of two of chunks.
static_assert((GEMV_INFLIGHT & (GEMV_INFLIGHT - 1)) == 0, "GEMV_INFLIGHT must be a power of two");
struct AwqMatrix {
    const uint32_t* qweight;
    const uint32_t* qzeros;
    const half* scales;
    float* y;
    int N;
};

// One thread per word of the decode layout. K, N multiples of 32.
extern "C" __global__ void awq_repack(const uint32_t* qweight, uint32_t* out, int K, int N) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)K * N / 8) return;
    const int j = i & 3, l = (i >> 2) & 31;
    const size_t rest = i >> 7;
    const int chunks = K >> 5, c = rest % chunks, s = rest / chunks;
    const int n = 32 * s + l, words = N >> 3, shift = awq_shift(n);
    const uint32_t* col = qweight + (n >> 3);
    uint32_t v = 0;
#pragma unroll
    for (int b = 0; b < 4; b++) {
        const int k = 32 * c + 8 * j + b;
        const uint32_t lo = (col[(size_t)k * words] >> shift) & 0xF, hi = (col[(size_t)(k + 4) * words] >> shift) & 0xF;
        v |= (lo | hi << 4) << (8 * b);
    }
    out[i] = v;
}

// a · b + c over four byte lanes, a's bytes unsigned (packed nibbles, possibly shifted by 4), b's signed.
__device__ __forceinline__ int dp4a_u8_s8(uint32_t a, int b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

__device__ __forceinline__ void cp_async16(void* smem, const void* global) {
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global));
}

// 4 bytes global → shared, asynchronously (committed with the 16-byte copies of the same group).
__device__ __forceinline__ void cp_async4(void* smem, const void* global) {
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(global));
}

// Element d of query head `head`'s attention output from the decode attention's parts
// (partial[head][part] = max, sum of exponentials, unnormalized output; see attn_decode), rounded to
// f16 as the attention's own join writes it. The chunks' loads are batched so each batch is one L2
// round trip.
#define JOIN_BATCH 8
__device__ __forceinline__ float join_attention(const float* partial, int head, int d, int hd, int chunks, int used) {
    const float* base = partial + (size_t)head * chunks * (hd + 2);
    float m = -INFINITY, total = 0.f, o = 0.f;
    for (int c0 = 0; c0 < used; c0 += JOIN_BATCH) {
        float mc[JOIN_BATCH], sc[JOIN_BATCH], oc[JOIN_BATCH];
#pragma unroll
        for (int j = 0; j < JOIN_BATCH; j++) {
            const float* p = base + (size_t)(c0 + j) * (hd + 2);
            const bool in = c0 + j < used;
            mc[j] = in ? __ldcg(p) : -INFINITY;
            sc[j] = in ? __ldcg(p + 1) : 0.f;
            oc[j] = in ? __ldcg(p + 2 + d) : 0.f;
        }
        float mb = m;
#pragma unroll
        for (int j = 0; j < JOIN_BATCH; j++) mb = fmaxf(mb, mc[j]);
        const float rescale = __expf(m - mb);
        total *= rescale;
        o *= rescale;
#pragma unroll
        for (int j = 0; j < JOIN_BATCH; j++) {
            const float w = __expf(mc[j] - mb);
            total += w * sc[j];
            o += w * oc[j];
        }
        m = mb;
    }
    return __half2float(__float2half(o / total));
}

#define AWQ_GEMV_PARAMS                                                                                   \
    AwqMatrix m0, AwqMatrix m1, AwqMatrix m2, const half* x, const float* gate, const float* up,     \
        const float* norm_x, const float* norm_w, const float* attn_partial, const int* step, int attn_chunks, \
        int head_dim, float eps, float* zero, int zero_len, int K, int group_shift, int rows_per_block
#define AWQ_GEMV_ARGS \
    m0, m1, m2, x, gate, up, norm_x, norm_w, attn_partial, step, attn_chunks, head_dim, eps, zero, zero_len, K, group_shift, rows_per_block
// JOIN: the input is the attention's parts (the o_proj kernel, awq_gemv_attn).
template <bool JOIN>
__device__ __forceinline__ void awq_gemv_body(AWQ_GEMV_PARAMS) {
    start_dependents();
    __shared__ __align__(16) float xf[GEMV_MAX_ROWS];
    __shared__ __align__(16) float wf[GEMV_MAX_ROWS];  // the RMSNorm's weights of the block's rows
    __shared__ __align__(16) int8_t xq[GEMV_MAX_ROWS];
    __shared__ float2 xscale[GEMV_MAX_GROUPS];  // per group of rows: (dx, Σx8)
    __shared__ __align__(16) half group_scales[GEMV_MAX_GROUPS][256];
    __shared__ __align__(16) uint32_t group_zeros[GEMV_MAX_GROUPS][32];
    // blockIdx.x runs over the matrices' strips of 256 columns, one matrix after another.
    const int strips0 = (m0.N + 255) >> 8, strips1 = (m1.N + 255) >> 8;
    const int z = blockIdx.x < strips0 ? 0 : (blockIdx.x < strips0 + strips1 ? 1 : 2);
    const int strip = blockIdx.x - (z == 0 ? 0 : (z == 1 ? strips0 : strips0 + strips1));
    // Field by field: selecting a whole struct would copy it to local memory.
    const int N = z == 0 ? m0.N : (z == 1 ? m1.N : m2.N);
    const uint32_t* qweight = z == 0 ? m0.qweight : (z == 1 ? m1.qweight : m2.qweight);
    const uint32_t* qzeros = z == 0 ? m0.qzeros : (z == 1 ? m1.qzeros : m2.qzeros);
    const half* scales = z == 0 ? m0.scales : (z == 1 ? m1.scales : m2.scales);
    float* y = z == 0 ? m0.y : (z == 1 ? m1.y : m2.y);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n = strip * 256 + warp * 32 + lane;
    const bool has_column = n < N;  // N % 32 == 0: whole warps have a column or none
    const int k_block = blockIdx.y * rows_per_block, group = 32 << group_shift;
    const int chunks = min(rows_per_block, K - k_block) >> 5;
    const uint4* wp = reinterpret_cast<const uint4*>(qweight) + ((size_t)(n >> 5) * (K >> 5) + (k_block >> 5)) * 32 + lane;
    uint4 wv[GEMV_INFLIGHT];
#pragma unroll
    for (int i = 0; i < GEMV_INFLIGHT; i++)
        if (has_column && i < chunks) wv[i] = __ldcs(wp + (size_t)i * 32);
    // Per group of the block: 32 pieces of 16 bytes of scales (256 columns), then 8 of zeros.
    const int groups = chunks >> group_shift, g_block = k_block >> (5 + group_shift);
    const int pieces = min(32, (N - strip * 256) >> 3);
    for (int i = threadIdx.x; i < groups * 40; i += blockDim.x) {
        const int g = i / 40, piece = i % 40;
        if (piece < 32) {
            if (piece < pieces)
                cp_async16(&group_scales[g][piece * 8], scales + (size_t)(g_block + g) * N + strip * 256 + piece * 8);
        } else if ((piece - 32) * 4 < pieces) {
            cp_async16(&group_zeros[g][(piece - 32) * 4],
                       qzeros + (size_t)(g_block + g) * (N >> 3) + strip * 32 + (piece - 32) * 4);
        }
    }
    if (norm_x)
        for (int i = threadIdx.x; i < chunks * 8; i += blockDim.x) cp_async16(&wf[4 * i], norm_w + k_block + 4 * i);
    asm volatile("cp.async.commit_group;\n" ::);
    wait_for_inputs();
    zero_fill(zero, zero_len);
    float inv_rms = 0.f;
    if (norm_x) {
        // Σx² of the whole row, the block's own rows kept on the way; loads unrolled so they are in
        // flight together: one L2 round trip, not one per element.
        const float4* row = reinterpret_cast<const float4*>(norm_x);
        float ss = 0.f;
#pragma unroll 4
        for (int i = threadIdx.x; i < (K >> 2); i += blockDim.x) {
            const float4 v = row[i];
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            const int r = 4 * i - k_block;
            if (r >= 0 && r < chunks * 32) *reinterpret_cast<float4*>(&xf[r]) = v;
        }
        asm volatile("cp.async.wait_all;\n" ::: "memory");  // wf, made visible by the reduction's barriers
        inv_rms = rsqrtf(block_reduce<Sum>(ss) / K + eps);
    }
    const int attn_used = JOIN ? attn_parts(step[1], attn_chunks) : 0;
    for (int i = threadIdx.x; i < chunks * 32; i += blockDim.x) {
        const int k = k_block + i;
        if (JOIN) {
            xf[i] = join_attention(attn_partial, k / head_dim, k % head_dim, head_dim, attn_chunks, attn_used);
        } else if (gate) {
            const float gv = gate[k];
            xf[i] = gv / (1.f + __expf(-gv)) * up[k];
        } else if (norm_x) {
            xf[i] = xf[i] * inv_rms * wf[i];
        } else {
            xf[i] = __half2float(x[k]);
        }
    }
    __syncthreads();
    // Warp w quantizes chunks w, w + 8, ..., each with its group's scale (recomputed per chunk, so
    // the warps of one group work in parallel); the warp of a group's first chunk also sums the group's
    // x8, which the loop below needs once per group.
    for (int c = warp; c < chunks; c += GEMV_WARPS) {
        const float* xg = xf + (c >> group_shift) * group;
        float amax = 0.f;
        for (int i = lane; i < group; i += 32) amax = fmaxf(amax, fabsf(xg[i]));
        amax = warp_reduce<Max>(amax);
        const float dx = amax / 127.f, inv = dx > 0.f ? 1.f / dx : 0.f;  // as quantize_group
        xq[32 * c + lane] = (int8_t)round_to_i8(xf[32 * c + lane], inv);
        if ((c & ((1 << group_shift) - 1)) == 0) {
            float sum = 0.f;
            for (int i = lane; i < group; i += 32) sum += (float)round_to_i8(xg[i], inv);
            sum = warp_reduce<Sum>(sum);
            if (lane == 0) xscale[c >> group_shift] = make_float2(dx, sum);
        }
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    if (has_column) {
        const int zshift = awq_shift(n), group_mask = (1 << group_shift) - 1;
        float acc = 0.f;
        const half* my_scales = &group_scales[0][warp * 32 + lane];
        const uint32_t* my_zeros = &group_zeros[0][(warp * 32 + lane) >> 3];
        // Σ q · x8 over the current group: low nibbles as they are, high nibbles masked in place (16 q).
        int dot_lo = 0, dot_hi16 = 0;
        // Adds chunk c's 32 rows, whose weights are w, to the group's sums.
        auto dot_chunk = [&](const uint4 w, int c) {
            const int4* xw = reinterpret_cast<const int4*>(xq) + 2 * c;
            const int4 xa = xw[0], xb = xw[1];
            const uint32_t LO = 0x0F0F0F0Fu, HI = 0xF0F0F0F0u;
            dot_lo = dp4a_u8_s8(w.x & LO, xa.x, dot_lo);
            dot_hi16 = dp4a_u8_s8(w.x & HI, xa.y, dot_hi16);
            dot_lo = dp4a_u8_s8(w.y & LO, xa.z, dot_lo);
            dot_hi16 = dp4a_u8_s8(w.y & HI, xa.w, dot_hi16);
            dot_lo = dp4a_u8_s8(w.z & LO, xb.x, dot_lo);
            dot_hi16 = dp4a_u8_s8(w.z & HI, xb.y, dot_hi16);
            dot_lo = dp4a_u8_s8(w.w & LO, xb.z, dot_lo);
            dot_hi16 = dp4a_u8_s8(w.w & HI, xb.w, dot_hi16);
        };
        auto end_group = [&](int g) {
            const float s = __half2float(my_scales[g * 256]);
            const int zq = (my_zeros[g * 32] >> zshift) & 0xF;
            const float2 xs = xscale[g];
            acc += s * xs.x * ((float)(dot_lo + (dot_hi16 >> 4)) - (float)zq * xs.y);
            dot_lo = dot_hi16 = 0;
        };
        // A chunk's register is refilled right after its dot (no copy of it kept). While every refill
        // is in range the loads are not predicated (a predicated refill costs register copies), and for
        // groups of at least GEMV_INFLIGHT chunks a batch has no branch.
        int c0 = 0;
        const uint4* refill = wp + GEMV_INFLIGHT * 32;
        if (group_mask >= GEMV_INFLIGHT - 1) {
            for (; c0 + 2 * GEMV_INFLIGHT <= chunks; c0 += GEMV_INFLIGHT, refill += GEMV_INFLIGHT * 32) {
#pragma unroll
                for (int i = 0; i < GEMV_INFLIGHT; i++) {
                    dot_chunk(wv[i], c0 + i);
                    wv[i] = __ldcs(refill + i * 32);
                }
                if (((c0 + GEMV_INFLIGHT) & group_mask) == 0) end_group(c0 >> group_shift);
            }
        } else {
            for (; c0 + 2 * GEMV_INFLIGHT <= chunks; c0 += GEMV_INFLIGHT, refill += GEMV_INFLIGHT * 32) {
#pragma unroll
                for (int i = 0; i < GEMV_INFLIGHT; i++) {
                    dot_chunk(wv[i], c0 + i);
                    wv[i] = __ldcs(refill + i * 32);
                    if (((i + 1) & group_mask) == 0) end_group((c0 + i) >> group_shift);
                }
            }
        }
        for (; c0 < chunks; c0 += GEMV_INFLIGHT, refill += GEMV_INFLIGHT * 32) {
#pragma unroll
            for (int i = 0; i < GEMV_INFLIGHT; i++) {
                const int c = c0 + i;
                if (c < chunks) {
                    dot_chunk(wv[i], c);
                    if (c + GEMV_INFLIGHT < chunks) wv[i] = __ldcs(refill + i * 32);
                    if (((c + 1) & group_mask) == 0) end_group(c >> group_shift);
                }
            }
        }
        atomicAdd(&y[n], acc);
    }
}

extern "C" __global__ void __launch_bounds__(256, 6) awq_gemv(AWQ_GEMV_PARAMS) { awq_gemv_body<false>(AWQ_GEMV_ARGS); }
// The join's registers would spill the in-flight weights at 6 blocks per SM (o_proj fills 4 anyway).
extern "C" __global__ void __launch_bounds__(256, 4) awq_gemv_attn(AWQ_GEMV_PARAMS) { awq_gemv_body<true>(AWQ_GEMV_ARGS); }

// Dequantizes an AWQ matrix (decode layout) into f16 [K][N] for the prefill GEMM; thread i reads one
// packed word (lanes over 32 consecutive columns, so each of its eight rows is written as 64 contiguous
// bytes).
extern "C" __global__ void awq_dequant(const uint32_t* qweight, const uint32_t* qzeros, const half* scales,
                                       half* out, int K, int N, int group) {
    start_dependents();
    wait_for_inputs();
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)K * N / 8) return;
    const int l = i & 31, j = (i >> 5) & 3;
    const size_t rest = i >> 7;
    const int chunks = K >> 5, c = rest % chunks, s = rest / chunks;
    const int n = 32 * s + l, k0 = 32 * c + 8 * j, g = k0 / group;
    const uint32_t w = qweight[repacked_word(k0, n, K)];
    const float zq = (float)((qzeros[(size_t)g * (N >> 3) + (n >> 3)] >> awq_shift(n)) & 0xF);
    const float sc = __half2float(scales[(size_t)g * N + n]);
#pragma unroll
    for (int r = 0; r < 8; r++)
        out[(size_t)(k0 + r) * N + n] = __float2half(((float)((w >> repacked_shift(r)) & 0xF) - zq) * sc);
}

// y[n] (+)= W[n] · x for an f16 [N][K] matrix (dense linears and the lm_head); one warp per row.
extern "C" __global__ void dense_gemv(const half* W, const half* x, float* y, int K, int N, int accumulate) {
    start_dependents();
    wait_for_inputs();
    int n = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (n >= N) return;
    const half* row = W + (size_t)n * K;
    float sum = 0.f;
    if ((K & 7) == 0) {
        const uint4* r4 = reinterpret_cast<const uint4*>(row);
        const uint4* x4 = reinterpret_cast<const uint4*>(x);
        for (int i = lane; i < (K >> 3); i += 32) {
            uint4 a = r4[i], b = x4[i];
            const half2* ah = reinterpret_cast<const half2*>(&a);
            const half2* bh = reinterpret_cast<const half2*>(&b);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float2 af = __half22float2(ah[j]), bf = __half22float2(bh[j]);
                sum += af.x * bf.x + af.y * bf.y;
            }
        }
    } else {
        for (int i = lane; i < K; i += 32) sum += __half2float(row[i]) * __half2float(x[i]);
    }
    sum = warp_reduce<Sum>(sum);
    if (lane == 0) y[n] = accumulate ? y[n] + sum : sum;
}

// The int8 lm_head (int8_matrix.rs on the CPU): W ≈ scale[n][g] · w8[n][k] per row and group of
// I8_GROUP columns. One warp per (row, group): the f16 [rows][cols] matrix quantized at load.
#define I8_GROUP 128

// One warp quantizes I8_GROUP f16 values (four per lane) as quantize_group in int8_matrix.rs does:
// scale = max|v| / 127, round half away from zero. Returns the scale.
__device__ __forceinline__ float quantize_group_i8(const half* src, int8_t* dst) {
    const int lane = threadIdx.x & 31;
    float v[I8_GROUP / 32];
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < I8_GROUP / 32; i++) {
        v[i] = __half2float(src[4 * lane + i]);
        amax = fmaxf(amax, fabsf(v[i]));
    }
    amax = warp_reduce<Max>(amax);
    const float scale = amax / 127.f, inv = scale > 0.f ? 1.f / scale : 0.f;
#pragma unroll
    for (int i = 0; i < I8_GROUP / 32; i++) dst[4 * lane + i] = (int8_t)round_to_i8(v[i], inv);
    return scale;
}

extern "C" __global__ void quantize_rows_i8(const half* w, int8_t* out, float* scales, int rows, int cols) {
    const size_t task = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (task >= (size_t)rows * (cols / I8_GROUP)) return;
    // Rows are whole groups, so task · I8_GROUP is row · cols + group · I8_GROUP.
    const float scale = quantize_group_i8(w + task * I8_GROUP, out + task * I8_GROUP);
    if ((threadIdx.x & 31) == 0) scales[task] = scale;
}

// y[t][n] = W[n] · x[t] for the int8 lm_head, x an f16 [rows][K] input (row t = blockIdx.y) quantized
// per I8_GROUP columns as the CPU engine does; K = 32 · I8_GROUP (each lane's scale slot is one group).
// Each block first quantizes its row of x into shared memory; then warp w takes rows
// I8_ROWS_PER_BLOCK · blockIdx.x + w, + 8, ...: 16 int8 weights per lane per load, a row's loads all in
// flight at once, four __dp4a per load, the group scales passed between lanes by shuffles.
#define I8_ROWS_PER_BLOCK 64
#define I8_K 4096
extern "C" __global__ void __launch_bounds__(256, 4) i8_gemv(const int8_t* w, const float* scales,
                                                            const half* x, float* y, int K, int N) {
    start_dependents();
    __shared__ __align__(16) int8_t xq[I8_K];
    __shared__ float xscale[I8_K / I8_GROUP];
    wait_for_inputs();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, groups = K / I8_GROUP;
    const half* xr = x + (size_t)blockIdx.y * K;
    for (int g = warp; g < groups; g += 8) {
        const float scale = quantize_group_i8(xr + g * I8_GROUP, xq + g * I8_GROUP);
        if (lane == 0) xscale[g] = scale;
    }
    __syncthreads();
    const int loads = K / (16 * 32);  // uint4 loads per lane per row
    for (int n = blockIdx.x * I8_ROWS_PER_BLOCK + warp; n < min(N, (blockIdx.x + 1) * I8_ROWS_PER_BLOCK); n += 8) {
        const uint4* row = reinterpret_cast<const uint4*>(w + (size_t)n * K);
        uint4 wv[I8_K / (16 * 32)];
#pragma unroll
        for (int i = 0; i < I8_K / (16 * 32); i++)
            if (i < loads) wv[i] = __ldcs(row + 32 * i + lane);
        // Lane g holds the scale product of group g (groups ≤ 32).
        const float gs = lane < groups ? __ldg(scales + (size_t)n * groups + lane) * xscale[lane] : 0.f;
        float acc = 0.f;
#pragma unroll
        for (int i = 0; i < I8_K / (16 * 32); i++) {
            if (i < loads) {
                const int col = 16 * (32 * i + lane);
                const int4 xv = *reinterpret_cast<const int4*>(xq + col);
                int dot = __dp4a((int)wv[i].x, xv.x, 0);
                dot = __dp4a((int)wv[i].y, xv.y, dot);
                dot = __dp4a((int)wv[i].z, xv.z, dot);
                dot = __dp4a((int)wv[i].w, xv.w, dot);
                acc += (float)dot * __shfl_sync(FULL_MASK, gs, col / I8_GROUP);
            }
        }
        acc = warp_reduce<Sum>(acc);
        if (lane == 0) y[(size_t)blockIdx.y * N + n] = acc;
    }
}

// The sort key of logit v at index i: order-preserving bits of v << 32 | ~i, so the largest key is the
// largest logit, the lower index on ties (+0 above -0), the order of candidate_order in
// src/engine/sampler.rs. 0 (no key) for NaN, which is never picked.
__device__ __forceinline__ unsigned long long logit_key(float v, int i) {
    if (v != v) return 0;
    const unsigned bits = __float_as_uint(v);
    const unsigned ordered = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
    return (unsigned long long)ordered << 32 | (0xFFFFFFFFu - (unsigned)i);
}

// Greedy decoding's pick without copying the logits to the host: *best = the largest logit_key over
// the n logits: the largest logit, the first on ties (as the host's argmax); NaNs never win. *best must
// hold 0 (no key) before.
extern "C" __global__ void argmax_logits(const float* logits, int n, unsigned long long* best) {
    unsigned long long key = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const unsigned long long k = logit_key(logits[i], i);
        key = k > key ? k : key;
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const unsigned long long other = __shfl_xor_sync(FULL_MASK, key, offset);
        key = other > key ? other : key;
    }
    if ((threadIdx.x & 31) == 0 && key) atomicMax(best, key);
}

// Sampling candidates (src/model/cuda/sample.rs): the k largest penalized logits, as logit_key keys,
// in two kernels: the best k of each SAMPLE_SLICE logits, then the best k of those. The host draws from
// them (Sampler::pick), so it receives k keys per token instead of the vocabulary's logits.
#define SAMPLE_SLICE 1024
#define SAMPLE_MAX_K 64
#define SAMPLE_MAX_BLOCKS 256
// Token marks for the penalties: in the prompt or the output (repetition), in the output (presence).
#define MARK_SEEN 1
#define MARK_OUTPUT 2

// Sorts n keys (a power of two) in shared memory, largest first; every thread of the block calls it.
__device__ void bitonic_sort_desc(unsigned long long* keys, int n) {
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int t = threadIdx.x; t < (n >> 1); t += blockDim.x) {
                const int lo = 2 * t - (t & (stride - 1)), hi = lo + stride;
                // Runs of `size` alternate direction until the last, which sorts largest first.
                const bool desc = (lo & size) == 0;
                const unsigned long long a = keys[lo], b = keys[hi];
                if ((a < b) == desc) {
                    keys[lo] = b;
                    keys[hi] = a;
                }
            }
            __syncthreads();
        }
    }
}

// Per block of SAMPLE_SLICE logits: penalties of marked tokens (the token being run, ids[0], counts as
// output: sample_top_k marks it after this step), then the block's k best keys, largest first (0 where
// the slice has fewer), into block_top[block][k]. marks null: no penalties.
// grid (ceil(n / SAMPLE_SLICE)), block 512.
extern "C" __global__ void sample_top_k_blocks(const float* logits, int n, const unsigned char* marks,
                                               const int* ids, float repetition, float presence, int k,
                                               unsigned long long* block_top) {
    __shared__ unsigned long long keys[SAMPLE_SLICE];
    const int base = blockIdx.x * SAMPLE_SLICE;
    for (int j = threadIdx.x; j < SAMPLE_SLICE; j += blockDim.x) {
        const int i = base + j;
        unsigned long long key = 0;
        if (i < n) {
            float v = logits[i];
            if (marks) {
                const int m = i == ids[0] ? MARK_SEEN | MARK_OUTPUT : marks[i];
                // An IEEE division (not fast math's): repetition_penalized in sampler.rs.
                if (m & MARK_SEEN) v = v > 0.f ? __fdiv_rn(v, repetition) : v * repetition;
                if (m & MARK_OUTPUT) v = v - presence;
            }
            key = logit_key(v, i);
        }
        keys[j] = key;
    }
    __syncthreads();
    bitonic_sort_desc(keys, SAMPLE_SLICE);
    for (int j = threadIdx.x; j < k; j += blockDim.x) block_top[(size_t)blockIdx.x * k + j] = keys[j];
}

// The k best of the blocks' lists into top[0..k), largest first (0 where there are fewer), and the
// token run marked as output for the next step's penalties (marks non-null). Only lists whose first key
// is among the k largest firsts can hold one of the k best, and only their keys at or above the k-th
// largest first: at most k·k keys are sorted. grid 1, block 1024.
extern "C" __global__ void sample_top_k(const unsigned long long* block_top, int blocks, int k,
                                        unsigned char* marks, const int* ids, unsigned long long* top) {
    __shared__ unsigned long long firsts[SAMPLE_MAX_BLOCKS];
    __shared__ unsigned long long keys[SAMPLE_MAX_K * SAMPLE_MAX_K];
    __shared__ unsigned count;
    for (int b = threadIdx.x; b < SAMPLE_MAX_BLOCKS; b += blockDim.x) firsts[b] = b < blocks ? block_top[(size_t)b * k] : 0;
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    bitonic_sort_desc(firsts, SAMPLE_MAX_BLOCKS);
    const unsigned long long floor = blocks > k ? firsts[k - 1] : 0;
    for (int j = threadIdx.x; j < blocks * k; j += blockDim.x) {
        const unsigned long long key = block_top[j];
        if (key && key >= floor) keys[atomicAdd(&count, 1u)] = key;
    }
    __syncthreads();
    const int found = count;
    int n = 1;
    while (n < found) n <<= 1;
    for (int j = found + threadIdx.x; j < n; j += blockDim.x) keys[j] = 0;
    __syncthreads();
    bitonic_sort_desc(keys, n);
    for (int j = threadIdx.x; j < k; j += blockDim.x) top[j] = j < found ? keys[j] : 0;
    if (marks && threadIdx.x == 0) marks[ids[0]] = MARK_SEEN | MARK_OUTPUT;
}

// Largest head_dim of the attention kernels (checked at load).
#define ATTN_MAX_HD 128

#include "kv_cache.cuh"

// RMSNorm (weight w) of one head's hd values, then rotate-half RoPE with this position's cos/sin rows,
// by one warp: into roped[0..hd), through the warp's scratch row.
__device__ __forceinline__ void warp_norm_rope(const float* src, const float* w, const float* c, const float* s,
                                               int hd, float eps, float* scratch, float* roped) {
    const int lane = threadIdx.x & 31;
    float ss = 0.f;
    for (int i = lane; i < hd; i += 32) ss += src[i] * src[i];
    const float inv = rsqrtf(warp_reduce<Sum>(ss) / hd + eps);
    for (int i = lane; i < hd; i += 32) scratch[i] = src[i] * inv * w[i];
    __syncwarp();
    const int half_dim = hd >> 1;
    for (int i = lane; i < half_dim; i += 32) {
        const float a = scratch[i], b = scratch[i + half_dim];
        roped[i] = a * c[i] - b * s[i];
        roped[i + half_dim] = b * c[i] + a * s[i];
    }
}

// Prefill, per (token, head): q_norm / k_norm and RoPE (warp_norm_rope), then q to f16 [heads][M][hd] and k, v
// into the cache [kv_heads][capacity][hd] at position start + t, where start = step[0]: f16, or e4m3 with
// per-row scales when k_scales and v_scales are given (kv_cache.cuh).
// grid (M, heads + kv_heads); block 32 threads (one warp); cos/sin are [positions][hd/2] tables.
extern "C" __global__ void qk_norm_rope(const float* q, const float* k, const float* v, const float* q_norm,
                                        const float* k_norm, const float* cos_table, const float* sin_table,
                                        half* q_out, void* k_cache, void* v_cache, float* k_scales,
                                        float* v_scales, int M, int heads, int kv_heads, int hd, const int* step,
                                        int capacity, float eps) {
    start_dependents();
    wait_for_inputs();
    __shared__ float scratch[ATTN_MAX_HD], roped[ATTN_MAX_HD];
    const int t = blockIdx.x, head = blockIdx.y, pos = step[0] + t, half_dim = hd >> 1;
    const bool is_q = head < heads;
    const int kv = head - heads;
    const float* src = is_q ? q + ((size_t)t * heads + head) * hd : k + ((size_t)t * kv_heads + kv) * hd;
    warp_norm_rope(src, is_q ? q_norm : k_norm, cos_table + (size_t)pos * half_dim,
                   sin_table + (size_t)pos * half_dim, hd, eps, scratch, roped);
    __syncwarp();
    if (is_q) {
        half* dst = q_out + ((size_t)head * M + t) * hd;
        for (int i = threadIdx.x; i < hd; i += blockDim.x) dst[i] = __float2half(roped[i]);
        return;
    }
    const size_t row = (size_t)kv * capacity + pos;
    const float* v_row = v + ((size_t)t * kv_heads + kv) * hd;
    if (k_scales) {
        Fp8Cache::warp_write_row(k_cache, k_scales, row, roped, hd);
        Fp8Cache::warp_write_row(v_cache, v_scales, row, v_row, hd);
    } else {
        F16Cache::warp_write_row(k_cache, nullptr, row, roped, hd);
        F16Cache::warp_write_row(v_cache, nullptr, row, v_row, hd);
    }
}

// Decode attention for the token at position len - 1 (len = step[1]), split over the context
// (flash-decoding) in one kernel. Block (kv, part) serves the `group` query heads of KV head kv over
// `attn_tiles_per_part` consecutive tiles of ATTN_CHUNK positions (one tile until the context outgrows
// the grid), so each cached row is read once, not once per query head, and a long context's parts stay
// few enough for the join. Before waiting for its inputs it copies its first tile's cached rows into
// shared memory (cp.async: the cache before len - 1 was written by earlier steps); then warp w applies
// q_norm and RoPE to query head w of the group, and the block holding the new position also normalizes
// and rotates k and writes k and v to the cache (and to its last tile's staged rows). Per tile, scores,
// softmax and the weighted sum of V read shared memory only, and a running max and sum per head
// rescale the block's output (online softmax). Each block writes, per query head, its max, its sum of
// exponentials and its unnormalized output to partial[head][part], and the last block of a KV head to
// finish (a counter in arrivals[kv], reset for the next layer) joins the parts into out[head] (f16, the
// [heads·hd] row o_proj reads), unless out is null: then the decode GEMV of o_proj joins them as it
// reads its input. Blocks past len return at once, so one captured graph serves every length up to its
// grid, and every length beyond it once the grid is at its cap.
// hd % 8 == 0 (f16 cache) or hd % 16 == 0 (fp8), hd <= ATTN_MAX_HD, heads / kv_heads <= ATTN_MAX_GROUP
// (checked at load).
#define ATTN_MAX_GROUP 8
// Output pairs (query head, two dims) per thread of the 256.
#define ATTN_ITEMS ((ATTN_MAX_GROUP * ATTN_MAX_HD / 2 + 255) / 256)

// The cache is C's format (kv_cache.cuh); with Fp8Cache the rows' scales are staged beside them.
template <typename C>
__device__ __forceinline__ void attn_decode_body(const float* q, const float* k, const float* v, const float* q_norm,
                                                 const float* k_norm, const float* cos_table, const float* sin_table,
                                                 void* k_cache_raw, void* v_cache_raw, float* k_scales,
                                                 float* v_scales, float* partial, unsigned* arrivals, half* out,
                                                 const int* step, int heads, int kv_heads, int hd, int capacity,
                                                 float scale, float eps) {
    using T = typename C::T;
    // Values per staged row: 16-byte aligned for cp.async, and 4 banks further per row, so the eight
    // threads of a 16-byte shared load phase read eight different f16 rows without a bank conflict.
    constexpr int ROW = ATTN_MAX_HD + 16 / (int)sizeof(T);
    T* k_cache = static_cast<T*>(k_cache_raw);
    T* v_cache = static_cast<T*>(v_cache_raw);
    start_dependents();
    __shared__ __align__(16) T ks[ATTN_CHUNK][ROW];
    __shared__ __align__(16) T vs[ATTN_CHUNK][ROW];
    // The staged rows' scales (Fp8Cache only).
    __shared__ float k_row_scale[ATTN_CHUNK], v_row_scale[ATTN_CHUNK];
    __shared__ __align__(16) float qs[ATTN_MAX_GROUP][ATTN_MAX_HD];
    __shared__ float scratch[GEMV_WARPS][ATTN_MAX_HD];
    __shared__ float kn[ATTN_MAX_HD];
    __shared__ __align__(16) float norm_w[2][ATTN_MAX_HD];  // q_norm, k_norm
    __shared__ __align__(16) float rope[2][ATTN_MAX_HD / 2];  // cos, sin of the new position
    __shared__ float probs[ATTN_MAX_GROUP][ATTN_CHUNK];
    __shared__ float head_max[ATTN_MAX_GROUP], head_sum[ATTN_MAX_GROUP], rescale[ATTN_MAX_GROUP];
    __shared__ bool last_block;
    const int kv = blockIdx.x, part = blockIdx.y, splits = gridDim.y, group = heads / kv_heads;
    // step is written before the graph runs, and the cache rows before len - 1 by earlier steps.
    const int len = step[1], pos_new = len - 1, tiles = (len + ATTN_CHUNK - 1) / ATTN_CHUNK;
    const int per_part = attn_tiles_per_part(len, splits), tile_begin = part * per_part;
    if (tile_begin >= tiles) return;
    const int tile_end = min(tile_begin + per_part, tiles);
    const bool has_new = tile_end == tiles;
    const size_t cache_base = (size_t)kv * capacity;
    // Stages tile t's cached rows (not the new position's, which this kernel writes).
    auto stage_tile = [&](int t) {
        const int first = t * ATTN_CHUNK, cached = min(ATTN_CHUNK, pos_new - first), pieces = hd / C::PER_PIECE;
        for (int i = threadIdx.x; i < cached * pieces; i += blockDim.x) {
            const int r = i / pieces, p = C::PER_PIECE * (i % pieces);
            cp_async16(&ks[r][p], k_cache + (cache_base + first + r) * hd + p);
            cp_async16(&vs[r][p], v_cache + (cache_base + first + r) * hd + p);
        }
        if constexpr (C::scaled)
            for (int r = threadIdx.x; r < cached; r += blockDim.x) {
                cp_async4(&k_row_scale[r], k_scales + cache_base + first + r);
                cp_async4(&v_row_scale[r], v_scales + cache_base + first + r);
            }
        asm volatile("cp.async.commit_group;\n" ::);
    };
    // The norms' weights and this position's RoPE rows are constants: copied before the wait (their
    // own group, waited for first), so the q/k norm + RoPE after it waits on one read, not three in a row.
    const int half_dim = hd >> 1;
    for (int i = threadIdx.x; i < hd >> 2; i += blockDim.x) {
        cp_async16(&norm_w[0][4 * i], q_norm + 4 * i);
        cp_async16(&norm_w[1][4 * i], k_norm + 4 * i);
    }
    for (int i = threadIdx.x; i < half_dim >> 2; i += blockDim.x) {
        cp_async16(&rope[0][4 * i], cos_table + (size_t)pos_new * half_dim + 4 * i);
        cp_async16(&rope[1][4 * i], sin_table + (size_t)pos_new * half_dim + 4 * i);
    }
    asm volatile("cp.async.commit_group;\n" ::);
    stage_tile(tile_begin);
    wait_for_inputs();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");  // the older group: norms and RoPE rows
    __syncthreads();
    const float* c = rope[0];
    const float* s = rope[1];
    // Warps 0..group-1 take the query heads, the next one (or warp 0 again) the new key.
    for (int t = warp; t < group + has_new; t += GEMV_WARPS) {
        if (t < group) {
            warp_norm_rope(q + (size_t)(kv * group + t) * hd, norm_w[0], c, s, hd, eps, scratch[warp], qs[t]);
        } else {
            warp_norm_rope(k + (size_t)kv * hd, norm_w[1], c, s, hd, eps, scratch[warp], kn);
            __syncwarp();
            C::warp_write_row(k_cache, k_scales, cache_base + pos_new, kn, hd);
            C::warp_write_row(v_cache, v_scales, cache_base + pos_new, v + (size_t)kv * hd, hd);
        }
        __syncwarp();
    }
    if (threadIdx.x < group) {
        head_max[threadIdx.x] = -INFINITY;
        head_sum[threadIdx.x] = 0.f;
    }
    __syncthreads();  // kn, written by one warp, is read by all in the last tile
    const int pairs = hd >> 1;
    float2 acc[ATTN_ITEMS];
#pragma unroll
    for (int it = 0; it < ATTN_ITEMS; it++) acc[it] = make_float2(0.f, 0.f);
    for (int tile = tile_begin; tile < tile_end; tile++) {
        const int first = tile * ATTN_CHUNK, count = min(ATTN_CHUNK, len - first);
        if (tile != tile_begin) {
            __syncthreads();  // every thread is done with the previous tile's rows
            stage_tile(tile);
        }
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        if (first + count - 1 == pos_new) {  // the last tile: the new row as the cache holds it
            if constexpr (C::scaled) {
                // Written to the cache by one warp before the barrier above: visible to the block.
                for (int i = threadIdx.x; i < hd; i += blockDim.x) {
                    ks[count - 1][i] = k_cache[(cache_base + pos_new) * hd + i];
                    vs[count - 1][i] = v_cache[(cache_base + pos_new) * hd + i];
                }
                if (threadIdx.x == 0) {
                    k_row_scale[count - 1] = k_scales[cache_base + pos_new];
                    v_row_scale[count - 1] = v_scales[cache_base + pos_new];
                }
            } else {
                for (int i = threadIdx.x; i < hd; i += blockDim.x) {
                    ks[count - 1][i] = __float2half(kn[i]);
                    vs[count - 1][i] = __float2half(v[(size_t)kv * hd + i]);
                }
            }
        }
        __syncthreads();
        // Scores: one thread per (query head, position), 16-byte reads of its key row.
        for (int i = threadIdx.x; i < group * ATTN_CHUNK; i += blockDim.x) {
            const int h = i / ATTN_CHUNK, pos = i % ATTN_CHUNK;
            float dot = 0.f;
            if (pos < count) {
                const float* qh = qs[h];
                for (int d = 0; d < hd; d += 8) C::add_dot8(&ks[pos][d], qh + d, dot);
                if constexpr (C::scaled) dot *= k_row_scale[pos];
            }
            probs[h][pos] = pos < count ? dot * scale : -INFINITY;
        }
        __syncthreads();
        // Online softmax: warp h takes query head h, rescaling its running sum to the new max.
        for (int h = warp; h < group; h += GEMV_WARPS) {
            const float a = probs[h][lane], b = probs[h][lane + 32];
            const float m = fmaxf(head_max[h], warp_reduce<Max>(fmaxf(a, b)));
            const float ea = lane < count ? __expf(a - m) : 0.f, eb = lane + 32 < count ? __expf(b - m) : 0.f;
            probs[h][lane] = ea;
            probs[h][lane + 32] = eb;
            const float sum = warp_reduce<Sum>(ea + eb);
            __syncwarp();
            if (lane == 0) {
                const float r = __expf(head_max[h] - m);  // 0 at the first tile (max -inf)
                rescale[h] = r;
                head_sum[h] = head_sum[h] * r + sum;
                head_max[h] = m;
            }
        }
        __syncthreads();
        // Unnormalized output: thread (head, pair) sums dims 2·pair, 2·pair + 1 over the tile.
#pragma unroll
        for (int it = 0; it < ATTN_ITEMS; it++) {
            const int i = threadIdx.x + it * blockDim.x;
            if (i < group * pairs) {
                const int h = i / pairs, pair = i % pairs;
                float2 o = make_float2(acc[it].x * rescale[h], acc[it].y * rescale[h]);
#pragma unroll 8
                for (int j = 0; j < count; j++) {
                    const float2 vf = C::load2(vs[j], pair);
                    const float p = C::scaled ? probs[h][j] * v_row_scale[j] : probs[h][j];
                    o.x += p * vf.x;
                    o.y += p * vf.y;
                }
                acc[it] = o;
            }
        }
    }
#pragma unroll
    for (int it = 0; it < ATTN_ITEMS; it++) {
        const int i = threadIdx.x + it * blockDim.x;
        if (i < group * pairs) {
            const int h = i / pairs, pair = i % pairs;
            float* dst = partial + ((size_t)(kv * group + h) * splits + part) * (hd + 2);
            if (pair == 0) {
                dst[0] = head_max[h];
                dst[1] = head_sum[h];
            }
            dst[2 + 2 * pair] = acc[it].x;
            dst[3 + 2 * pair] = acc[it].y;
        }
    }
    if (!out) return;  // o_proj joins the parts (join_attention)
    // The last block of this KV head joins the parts: its partial writes must be visible before it counts.
    const int used = attn_parts(len, splits);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_block = atomicAdd(&arrivals[kv], 1u) == (unsigned)(used - 1);
    __syncthreads();
    if (!last_block) return;
    if (threadIdx.x == 0) arrivals[kv] = 0;
    // Warp h: the head's max over the parts and its total of exponentials.
    for (int h = warp; h < group; h += GEMV_WARPS) {
        const float* base = partial + (size_t)(kv * group + h) * splits * (hd + 2);
        float m = -INFINITY;
        for (int ci = lane; ci < used; ci += 32) m = fmaxf(m, __ldcg(base + (size_t)ci * (hd + 2)));
        m = warp_reduce<Max>(m);
        float total = 0.f;
        for (int ci = lane; ci < used; ci += 32) {
            const float* pc = base + (size_t)ci * (hd + 2);
            total += __expf(__ldcg(pc) - m) * __ldcg(pc + 1);
        }
        total = warp_reduce<Sum>(total);
        if (lane == 0) {
            head_max[h] = m;
            head_sum[h] = total;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < group * hd; i += blockDim.x) {
        const int h = i / hd, d = i % hd;
        const float* base = partial + (size_t)(kv * group + h) * splits * (hd + 2);
        const float m = head_max[h];
        float o = 0.f;
#pragma unroll 8
        for (int ci = 0; ci < used; ci++) {
            const float* pc = base + (size_t)ci * (hd + 2);
            o += __expf(__ldcg(pc) - m) * __ldcg(pc + 2 + d);
        }
        out[(size_t)(kv * group + h) * hd + d] = __float2half(o / head_sum[h]);
    }
}

#define ATTN_DECODE_PARAMS                                                                                        \
    const float *q, const float *k, const float *v, const float *q_norm, const float *k_norm,                    \
        const float *cos_table, const float *sin_table, void *k_cache, void *v_cache, float *k_scales,           \
        float *v_scales, float *partial, unsigned *arrivals, half *out, const int *step, int heads, int kv_heads, \
        int hd, int capacity, float scale, float eps
#define ATTN_DECODE_ARGS                                                                                    \
    q, k, v, q_norm, k_norm, cos_table, sin_table, k_cache, v_cache, k_scales, v_scales, partial, arrivals, out, \
        step, heads, kv_heads, hd, capacity, scale, eps

// Four blocks per multiprocessor (ATTN_BLOCKS_PER_SM in upload.rs): registers capped to fit them.
extern "C" __global__ void __launch_bounds__(256, 4) attn_decode(ATTN_DECODE_PARAMS) {
    attn_decode_body<F16Cache>(ATTN_DECODE_ARGS);
}
extern "C" __global__ void __launch_bounds__(256, 4) attn_decode_fp8(ATTN_DECODE_PARAMS) {
    attn_decode_body<Fp8Cache>(ATTN_DECODE_ARGS);
}

// act = silu(gate) * up, as f16.
extern "C" __global__ void silu_mul(const float* gate, const float* up, half* out, int n) {
    start_dependents();
    wait_for_inputs();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float g = gate[i];
        out[i] = __float2half(g / (1.f + __expf(-g)) * up[i]);
    }
}

#include "attn_prefill.cuh"
