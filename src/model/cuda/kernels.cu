// Kernels of the CUDA engine (src/model/cuda/mod.rs). Activations between layers are f32 (the residual
// stream) or f16 (inputs of matrix products); weights stay in the checkpoint's AWQ GEMM packing.
//
// AWQ packing: qweight is [K][N/8] u32, nibble i of a word holding logical column PACK_ORDER[i] with
// PACK_ORDER = {0,2,4,6,1,3,5,7}, so (w >> 4p) & 0x000F000F holds columns 2p (low half) and 2p+1 (high
// half): one mask turns a word into four f16 pairs of consecutive columns. qzeros [K/group][N/8] is
// packed the same way, scales are [K/group][N] f16, and W[k][n] = (q - z) * s.
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

// Four f16 pairs (columns 2p, 2p+1 for p = 0..3) of one packed word, as exact small integers: OR-ing a
// nibble into the mantissa of 1024.0 gives 1024 + q, and subtracting 1024 is exact.
__device__ __forceinline__ void unpack_pairs(uint32_t w, half2 out[4]) {
    const uint32_t magic = 0x64006400u;
    const half2 bias = __halves2half2(__float2half(1024.f), __float2half(1024.f));
#pragma unroll
    for (int p = 0; p < 4; p++) {
        uint32_t bits = ((w >> (4 * p)) & 0x000F000Fu) | magic;
        out[p] = __hsub2(*reinterpret_cast<half2*>(&bits), bias);
    }
}

// hidden[t] = table[ids[t]] for an f16 [vocab][h] table.
extern "C" __global__ void embed_f16(const half* table, const int* ids, float* hidden, int h) {
    start_dependents();
    wait_for_inputs();
    const half* row = table + (size_t)ids[blockIdx.x] * h;
    for (int i = threadIdx.x; i < h; i += blockDim.x) hidden[(size_t)blockIdx.x * h + i] = __half2float(row[i]);
}

// hidden[t] = column ids[t] of an AWQ-packed [h][vocab] matrix (a tied embedding packed as the lm_head).
extern "C" __global__ void embed_awq(const uint32_t* qweight, const uint32_t* qzeros, const half* scales,
                                     const int* ids, float* hidden, int h, int vocab, int group) {
    start_dependents();
    wait_for_inputs();
    const int nibble_of[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    int id = ids[blockIdx.x];
    int word = id >> 3, shift = 4 * nibble_of[id & 7], words = vocab >> 3;
    for (int k = threadIdx.x; k < h; k += blockDim.x) {
        int g = k / group;
        float q = (float)((qweight[(size_t)k * words + word] >> shift) & 0xF);
        float z = (float)((qzeros[(size_t)g * words + word] >> shift) & 0xF);
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
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < zero_len; i += gridDim.x * blockDim.x) zero[i] = 0.f;
    if (blockIdx.x >= rows) return;
    const float* xr = x + (size_t)blockIdx.x * n;
    float ss = 0.f;
#pragma unroll 4
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    float inv = rsqrtf(block_reduce<Sum>(ss) / n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[(size_t)blockIdx.x * n + i] = __float2half(xr[i] * inv * w[i]);
}

// Decode GEMV over AWQ weights: y[N] += x[K] · W[K][N]; y must hold zeros or the residual to add to.
// Up to three matrices sharing x and K (q/k/v, gate/up) run in one launch: blockIdx.z picks one.
// A block covers 256 columns (8 threads × one 16-byte load of 4 words each) and 32 slices of 16 rows
// (each slice inside one quantization group, so a thread needs one zero word and 32 scales per slice);
// gridDim.y splits K further, and the blocks meet in atomicAdd. The input is x, or silu(gate) · up when
// gate is set (the MLP's down projection, without a kernel of its own). A block loads its weights before
// it waits for the previous kernel, so they stream in while that kernel runs. Products are summed in f16 over a
// thread's 16 rows (exact integer weights times f16 activations), then scaled into f32. 16 rows rather
// than 8: 3% faster decode on an H200 (BENCHMARKS.md), half the reduction work per weight byte.
#define GEMV_ROWS 16
#define GEMV_SLICES 32
struct AwqMatrix {
    const uint4* qweight;
    const uint32_t* qzeros;
    const half* scales;
    float* y;
    int N;
};

extern "C" __global__ void __launch_bounds__(256) awq_gemv(AwqMatrix m0, AwqMatrix m1, AwqMatrix m2,
                                                           const half* x, const float* gate,
                                                           const float* up, int K, int group) {
    start_dependents();
    __shared__ float reduce[GEMV_SLICES][8 * 33];
    // Field by field: selecting a whole struct would copy it to local memory.
    const int z = blockIdx.z;
    const int N = z == 0 ? m0.N : (z == 1 ? m1.N : m2.N);
    if (blockIdx.x * 256 >= N) return;
    const uint4* qweight = z == 0 ? m0.qweight : (z == 1 ? m1.qweight : m2.qweight);
    const uint32_t* qzeros = z == 0 ? m0.qzeros : (z == 1 ? m1.qzeros : m2.qzeros);
    const half* scales = z == 0 ? m0.scales : (z == 1 ? m1.scales : m2.scales);
    float* y = z == 0 ? m0.y : (z == 1 ? m1.y : m2.y);
    const int tx = threadIdx.x & 7, slice = threadIdx.x >> 3;
    const int vec = blockIdx.x * 8 + tx;             // which 4-word (32-column) vector
    const int vecs = N >> 5;                          // N is a multiple of 32
    const int k0 = (blockIdx.y * GEMV_SLICES + slice) * GEMV_ROWS;
    const bool active = vec < vecs && k0 < K;
    uint4 w[GEMV_ROWS], z4 = {}, s4[4] = {};
    if (active) {
#pragma unroll
        for (int r = 0; r < GEMV_ROWS; r++) w[r] = qweight[(size_t)(k0 + r) * vecs + vec];
        const int g = k0 / group;
        z4 = reinterpret_cast<const uint4*>(qzeros + (size_t)g * (N >> 3))[vec];
#pragma unroll
        for (int u = 0; u < 4; u++) s4[u] = reinterpret_cast<const uint4*>(scales + (size_t)g * N + vec * 32)[u];
    }
    wait_for_inputs();
    float acc[32];
#pragma unroll
    for (int j = 0; j < 32; j++) acc[j] = 0.f;
    if (active) {
        half2 xs[GEMV_ROWS];
        float xsum = 0.f;
#pragma unroll
        for (int r = 0; r < GEMV_ROWS; r++) {
            half xv;
            if (gate) {
                const float gv = gate[k0 + r];
                xv = __float2half(gv / (1.f + __expf(-gv)) * up[k0 + r]);
            } else {
                xv = x[k0 + r];
            }
            xs[r] = __halves2half2(xv, xv);
            xsum += __half2float(xv);
        }
        const uint32_t zw[4] = {z4.x, z4.y, z4.z, z4.w};
#pragma unroll
        for (int u = 0; u < 4; u++) {
            half2 sum[4];
#pragma unroll
            for (int p = 0; p < 4; p++) sum[p] = __float2half2_rn(0.f);
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++) {
                const uint32_t ww[4] = {w[r].x, w[r].y, w[r].z, w[r].w};
                half2 q[4];
                unpack_pairs(ww[u], q);
#pragma unroll
                for (int p = 0; p < 4; p++) sum[p] = __hfma2(xs[r], q[p], sum[p]);
            }
            half2 z[4];
            unpack_pairs(zw[u], z);
            const half2* s = reinterpret_cast<const half2*>(&s4[u]);
#pragma unroll
            for (int p = 0; p < 4; p++) {
                float2 sf = __half22float2(s[p]);
                float2 qf = __half22float2(sum[p]);
                float2 zf = __half22float2(z[p]);
                acc[u * 8 + 2 * p] = sf.x * (qf.x - zf.x * xsum);
                acc[u * 8 + 2 * p + 1] = sf.y * (qf.y - zf.y * xsum);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < 32; j++) reduce[slice][tx * 33 + j] = acc[j];
    __syncthreads();
    // Thread t sums column t of the block's 256 over the 32 slices.
    const int col_vec = threadIdx.x >> 5, col_in = threadIdx.x & 31;
    float total = 0.f;
#pragma unroll 8
    for (int s = 0; s < GEMV_SLICES; s++) total += reduce[s][col_vec * 33 + col_in];
    const int n = (blockIdx.x * 8 + col_vec) * 32 + col_in;
    if (n < N) atomicAdd(&y[n], total);
}

// Dequantizes an AWQ matrix into f16 [K][N] for the prefill GEMM; one thread per packed word.
extern "C" __global__ void awq_dequant(const uint32_t* qweight, const uint32_t* qzeros, const half* scales,
                                       half* out, int K, int N, int group) {
    start_dependents();
    wait_for_inputs();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t words = (size_t)K * (N >> 3);
    if (i >= words) return;
    int k = i / (N >> 3), word = i % (N >> 3), g = k / group;
    half2 q[4], z[4];
    unpack_pairs(qweight[i], q);
    unpack_pairs(qzeros[(size_t)g * (N >> 3) + word], z);
    const half2* s = reinterpret_cast<const half2*>(scales + (size_t)g * N + word * 8);
    half2* o = reinterpret_cast<half2*>(out + (size_t)k * N + word * 8);
#pragma unroll
    for (int p = 0; p < 4; p++) o[p] = __hmul2(__hsub2(q[p], z[p]), s[p]);
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

// Per (token, head): RMSNorm over head_dim (q_norm / k_norm), rotary embedding (rotate-half), then q to
// f16 [heads][M][hd] and k, v into the f16 cache [kv_heads][capacity][hd] at position start + t, where
// start = step[0] (device memory, so a captured decode graph serves every position).
// grid (M, heads + kv_heads); block 64 threads; cos/sin are [positions][hd/2] tables.
extern "C" __global__ void qk_norm_rope(const float* q, const float* k, const float* v, const float* q_norm,
                                        const float* k_norm, const float* cos_table, const float* sin_table,
                                        half* q_out, half* k_cache, half* v_cache, int M, int heads,
                                        int kv_heads, int hd, const int* step, int capacity, float eps) {
    start_dependents();
    wait_for_inputs();
    __shared__ float normed[512];
    const int start = step[0];
    const int t = blockIdx.x, head = blockIdx.y, half_dim = hd >> 1;
    const bool is_q = head < heads;
    const int kv = head - heads;
    const float* src = is_q ? q + ((size_t)t * heads + head) * hd : k + ((size_t)t * kv_heads + kv) * hd;
    const float* w = is_q ? q_norm : k_norm;
    float ss = 0.f;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) ss += src[i] * src[i];
    float inv = rsqrtf(block_reduce<Sum>(ss) / hd + eps);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) normed[i] = src[i] * inv * w[i];
    __syncthreads();
    const int pos = start + t;
    const float* c = cos_table + (size_t)pos * half_dim;
    const float* s = sin_table + (size_t)pos * half_dim;
    half* dst = is_q ? q_out + ((size_t)head * M + t) * hd : k_cache + ((size_t)kv * capacity + pos) * hd;
    for (int i = threadIdx.x; i < half_dim; i += blockDim.x) {
        float a = normed[i], b = normed[i + half_dim];
        dst[i] = __float2half(a * c[i] - b * s[i]);
        dst[i + half_dim] = __float2half(b * c[i] + a * s[i]);
    }
    if (!is_q) {
        const float* vs = v + ((size_t)t * kv_heads + kv) * hd;
        half* vd = v_cache + ((size_t)kv * capacity + pos) * hd;
        for (int i = threadIdx.x; i < hd; i += blockDim.x) vd[i] = __float2half(vs[i]);
    }
}

// Decode attention, split over the context (flash-decoding): block (head, chunk) scores 64 positions and
// writes its max, its sum of exponentials and its unnormalized output to partial[head][chunk]. Blocks past
// len = step[1] return at once, so one captured graph serves every length up to its grid. hd % 8 == 0.
#define ATTN_CHUNK 64
extern "C" __global__ void __launch_bounds__(256) attn_decode_partial(const half* q, const half* k_cache,
                                                                      const half* v_cache, float* partial,
                                                                      const int* step, int heads, int kv_heads,
                                                                      int hd, int capacity, float scale) {
    start_dependents();
    wait_for_inputs();
    __shared__ float qs[256];
    __shared__ float weights[ATTN_CHUNK];
    __shared__ float2 out_part[4][128];
    const int head = blockIdx.x, chunk = blockIdx.y, kv = head / (heads / kv_heads);
    const int chunks = gridDim.y, len = step[1], first = chunk * ATTN_CHUNK;
    if (first >= len) return;
    const int count = min(ATTN_CHUNK, len - first);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = __half2float(q[(size_t)head * hd + i]);
    __syncthreads();
    // Scores: four threads per position, each over a quarter of head_dim, joined by two shuffles.
    const int pos = threadIdx.x >> 2, part = threadIdx.x & 3, quarter = hd >> 2;
    float dot = 0.f;
    if (pos < count) {
        const half2* kr = reinterpret_cast<const half2*>(
            k_cache + ((size_t)kv * capacity + first + pos) * hd + part * quarter);
        const float* qp = qs + part * quarter;
#pragma unroll 4
        for (int i = 0; i < (quarter >> 1); i++) {
            float2 kf = __half22float2(kr[i]);
            dot += qp[2 * i] * kf.x + qp[2 * i + 1] * kf.y;
        }
    }
    dot += __shfl_xor_sync(FULL_MASK, dot, 1);
    dot += __shfl_xor_sync(FULL_MASK, dot, 2);
    const float score = pos < count ? dot * scale : -INFINITY;
    const float m = block_reduce<Max>(score);
    const float e = pos < count ? __expf(score - m) : 0.f;
    if (part == 0) weights[pos] = e;
    const float sum = block_reduce<Sum>(part == 0 ? e : 0.f);
    // Output: thread (group, pair) sums dims 2·pair, 2·pair+1 over the positions ≡ group (mod groups).
    const int pairs = hd >> 1, groups = min(4, (int)blockDim.x / pairs);
    const int pair = threadIdx.x % pairs, grp = threadIdx.x / pairs;
    if (grp < groups) {
        const half2* vb = reinterpret_cast<const half2*>(v_cache + ((size_t)kv * capacity + first) * hd) + pair;
        float2 o = make_float2(0.f, 0.f);
#pragma unroll 4
        for (int j = grp; j < count; j += groups) {
            float2 vf = __half22float2(vb[(size_t)j * pairs]);
            o.x += weights[j] * vf.x;
            o.y += weights[j] * vf.y;
        }
        out_part[grp][pair] = o;
    }
    __syncthreads();
    float* dst = partial + ((size_t)head * chunks + chunk) * (hd + 2);
    if (threadIdx.x == 0) {
        dst[0] = m;
        dst[1] = sum;
    }
    for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
        float2 t = out_part[0][p];
        for (int g = 1; g < groups; g++) {
            t.x += out_part[g][p].x;
            t.y += out_part[g][p].y;
        }
        dst[2 + 2 * p] = t.x;
        dst[3 + 2 * p] = t.y;
    }
}

// Joins the chunks of attn_decode_partial (those below len = step[1]; `stride` is its grid's chunk count):
// out[head] (f16, [heads·hd] row) = Σ e^(m_c - M) o_c / Σ e^(m_c - M) s_c.
extern "C" __global__ void attn_decode_combine(const float* partial, half* out, const int* step, int stride,
                                               int hd) {
    start_dependents();
    wait_for_inputs();
    const int head = blockIdx.x, chunks = (step[1] + ATTN_CHUNK - 1) / ATTN_CHUNK;
    const float* base = partial + (size_t)head * stride * (hd + 2);
    float m = -INFINITY;
    for (int c = 0; c < chunks; c++) m = fmaxf(m, base[(size_t)c * (hd + 2)]);
    float total = 0.f;
    for (int c = 0; c < chunks; c++) total += __expf(base[(size_t)c * (hd + 2)] - m) * base[(size_t)c * (hd + 2) + 1];
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.f;
        for (int c = 0; c < chunks; c++) {
            const float* pc = base + (size_t)c * (hd + 2);
            o += __expf(pc[0] - m) * pc[2 + d];
        }
        out[(size_t)head * hd + d] = __float2half(o / total);
    }
}

// Prefill: causal softmax of scores [heads][M][len] (already scaled) into f16 probabilities, where
// query t of the chunk sits at position start + t and sees positions 0..start + t. One block per row.
extern "C" __global__ void softmax_causal(const float* scores, half* probs, int M, int len, int start) {
    start_dependents();
    wait_for_inputs();
    const size_t row = blockIdx.x;
    const int t = row % M, visible = start + t + 1;
    const float* s = scores + row * len;
    half* p = probs + row * len;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < visible; i += blockDim.x) m = fmaxf(m, s[i]);
    m = block_reduce<Max>(m);
    float sum = 0.f;
    for (int i = threadIdx.x; i < visible; i += blockDim.x) sum += __expf(s[i] - m);
    const float inv = 1.f / block_reduce<Sum>(sum);
    for (int i = threadIdx.x; i < len; i += blockDim.x) p[i] = __float2half(i < visible ? __expf(s[i] - m) * inv : 0.f);
}

// [heads][M][hd] → [M][heads·hd] (the o_proj input layout).
extern "C" __global__ void heads_to_rows(const half* in, half* out, int M, int heads, int hd) {
    start_dependents();
    wait_for_inputs();
    const int t = blockIdx.x, head = blockIdx.y;
    for (int i = threadIdx.x; i < hd; i += blockDim.x)
        out[((size_t)t * heads + head) * hd + i] = in[((size_t)head * M + t) * hd + i];
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
