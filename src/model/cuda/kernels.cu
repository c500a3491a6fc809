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

// Zeroes zero[0..len) with every thread of the grid: outputs the next GEMVs accumulate into, cleared
// by a kernel already in the chain rather than by a memset of their own.
__device__ __forceinline__ void zero_fill(float* zero, int len) {
    const int threads = gridDim.x * gridDim.y * gridDim.z * blockDim.x;
    const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    for (int i = block * blockDim.x + threadIdx.x; i < len; i += threads) zero[i] = 0.f;
}

// hidden[t] = table[ids[t]] for an f16 [vocab][h] table; zeroes zero[0..zero_len) (layer 0's q/k/v).
extern "C" __global__ void embed_f16(const half* table, const int* ids, float* hidden, int h, float* zero,
                                     int zero_len) {
    start_dependents();
    wait_for_inputs();
    zero_fill(zero, zero_len);
    const half* row = table + (size_t)ids[blockIdx.x] * h;
    for (int i = threadIdx.x; i < h; i += blockDim.x) hidden[(size_t)blockIdx.x * h + i] = __half2float(row[i]);
}

// hidden[t] = column ids[t] of an AWQ-packed [h][vocab] matrix (a tied embedding packed as the lm_head);
// zeroes zero[0..zero_len) as embed_f16 does.
extern "C" __global__ void embed_awq(const uint32_t* qweight, const uint32_t* qzeros, const half* scales,
                                     const int* ids, float* hidden, int h, int vocab, int group, float* zero,
                                     int zero_len) {
    start_dependents();
    wait_for_inputs();
    zero_fill(zero, zero_len);
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
    zero_fill(zero, zero_len);
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
// Block (strip, split, z) covers 256 columns (lane l of every warp reads packed word 32·strip + l of a
// row: one coalesced 128-byte segment per warp and row) and rows_per_block rows of K, which its 8 warps
// share in contiguous runs of GEMV_BATCH-row batches. Each warp keeps the next batch's loads in flight
// while it multiplies the current one, and an SM holds many such warps, so the memory never waits for
// the math. The input is x; or silu(gate) · up when gate is set (the MLP's down projection); or
// RMSNorm(norm_x) · norm_w when norm_x is set (each block takes the sum of squares of the whole f32 row
// itself): the block writes its rows of the input to shared memory once, so neither needs a kernel of
// its own. After the wait the grid zeroes zero[0..zero_len): the outputs of a later GEMV, whose readers
// have finished by then. The first batch's weights are loaded before the wait, so they stream in while
// the previous kernel finishes. Products are summed in f16 over a batch (exact integer weights times f16
// activations), then scaled into f32; the warps meet in shared memory, the blocks in atomicAdd.
#define GEMV_WARPS 8
#define GEMV_BATCH 16
#define GEMV_MAX_ROWS 1024
struct AwqMatrix {
    const uint32_t* qweight;
    const uint32_t* qzeros;
    const half* scales;
    float* y;
    int N;
};

// One batch of one lane: GEMV_BATCH packed words of a column of words, and their group's zero word and
// eight scales (a batch never crosses a group: groups are multiples of GEMV_BATCH rows).
struct GemvBatch {
    uint32_t w[GEMV_BATCH];
    uint32_t zero;
    uint4 scales;
};

__device__ __forceinline__ void gemv_load(GemvBatch& b, const uint32_t* qweight, const uint32_t* qzeros,
                                          const half* scales, int k0, int word, int words, int group) {
#pragma unroll
    for (int r = 0; r < GEMV_BATCH; r++) b.w[r] = __ldcs(qweight + (size_t)(k0 + r) * words + word);
    const int g = k0 / group;
    b.zero = __ldg(qzeros + (size_t)g * words + word);
    b.scales = __ldg(reinterpret_cast<const uint4*>(scales + ((size_t)g * words + word) * 8));
}

extern "C" __global__ void __launch_bounds__(256, 4) awq_gemv(AwqMatrix m0, AwqMatrix m1, AwqMatrix m2,
                                                           const half* x, const float* gate,
                                                           const float* up, const float* norm_x,
                                                           const float* norm_w, float eps, float* zero,
                                                           int zero_len, int K, int group,
                                                           int rows_per_block) {
    start_dependents();
    __shared__ half xs[GEMV_MAX_ROWS];
    __shared__ float xsums[GEMV_MAX_ROWS / GEMV_BATCH];
    __shared__ float red[GEMV_WARPS][32 * 9];
    // Field by field: selecting a whole struct would copy it to local memory.
    const int z = blockIdx.z;
    const int N = z == 0 ? m0.N : (z == 1 ? m1.N : m2.N);
    if (blockIdx.x * 256 >= N) {
        wait_for_inputs();
        zero_fill(zero, zero_len);
        return;
    }
    const uint32_t* qweight = z == 0 ? m0.qweight : (z == 1 ? m1.qweight : m2.qweight);
    const uint32_t* qzeros = z == 0 ? m0.qzeros : (z == 1 ? m1.qzeros : m2.qzeros);
    const half* scales = z == 0 ? m0.scales : (z == 1 ? m1.scales : m2.scales);
    float* y = z == 0 ? m0.y : (z == 1 ? m1.y : m2.y);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int words = N >> 3, word = blockIdx.x * 32 + lane;
    const bool has_word = word < words;
    const int k_block = blockIdx.y * rows_per_block;
    const int block_rows = min(rows_per_block, K - k_block);
    const int per_warp = rows_per_block / GEMV_WARPS;
    const int k_first = k_block + warp * per_warp, k_end = min(k_first + per_warp, K);
    GemvBatch cur;
    if (has_word && k_first < k_end) gemv_load(cur, qweight, qzeros, scales, k_first, word, words, group);
    wait_for_inputs();
    zero_fill(zero, zero_len);
    float inv_rms = 0.f;
    if (norm_x) {
        float ss = 0.f;
        for (int i = threadIdx.x; i < K; i += blockDim.x) ss += norm_x[i] * norm_x[i];
        inv_rms = rsqrtf(block_reduce<Sum>(ss) / K + eps);
    }
    for (int i = threadIdx.x; i < block_rows; i += blockDim.x) {
        const int k = k_block + i;
        float xv;
        if (gate) {
            const float gv = gate[k];
            xv = gv / (1.f + __expf(-gv)) * up[k];
        } else if (norm_x) {
            xv = norm_x[k] * inv_rms * norm_w[k];
        } else {
            xv = __half2float(x[k]);
        }
        xs[i] = __float2half(xv);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < block_rows / GEMV_BATCH; b += blockDim.x) {
        float sum = 0.f;
#pragma unroll
        for (int r = 0; r < GEMV_BATCH; r++) sum += __half2float(xs[b * GEMV_BATCH + r]);
        xsums[b] = sum;
    }
    __syncthreads();
    float acc[8];
#pragma unroll
    for (int j = 0; j < 8; j++) acc[j] = 0.f;
    if (has_word) {
        for (int k0 = k_first; k0 < k_end; k0 += GEMV_BATCH) {
            GemvBatch next;
            if (k0 + GEMV_BATCH < k_end) gemv_load(next, qweight, qzeros, scales, k0 + GEMV_BATCH, word, words, group);
            const half* xb = xs + (k0 - k_block);
            half2 sum[4];
#pragma unroll
            for (int p = 0; p < 4; p++) sum[p] = __float2half2_rn(0.f);
#pragma unroll
            for (int r = 0; r < GEMV_BATCH; r++) {
                const half2 xv = __half2half2(xb[r]);
                half2 q[4];
                unpack_pairs(cur.w[r], q);
#pragma unroll
                for (int p = 0; p < 4; p++) sum[p] = __hfma2(xv, q[p], sum[p]);
            }
            const float xsum = xsums[(k0 - k_block) / GEMV_BATCH];
            half2 zp[4];
            unpack_pairs(cur.zero, zp);
            const half2* sc = reinterpret_cast<const half2*>(&cur.scales);
#pragma unroll
            for (int p = 0; p < 4; p++) {
                const float2 sf = __half22float2(sc[p]), qf = __half22float2(sum[p]), zf = __half22float2(zp[p]);
                acc[2 * p] += sf.x * (qf.x - zf.x * xsum);
                acc[2 * p + 1] += sf.y * (qf.y - zf.y * xsum);
            }
            cur = next;
        }
    }
#pragma unroll
    for (int j = 0; j < 8; j++) red[warp][lane * 9 + j] = acc[j];
    __syncthreads();
    // Thread t sums column t of the block's 256 (word t / 8, pair position t % 8) over the warps.
    const int t = threadIdx.x;
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < GEMV_WARPS; w++) total += red[w][(t >> 3) * 9 + (t & 7)];
    const int n = blockIdx.x * 256 + t;
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

// RMSNorm of one head's hd values (weight w), then rotate-half RoPE with this position's cos/sin rows,
// into roped[0..hd) (shared memory; normed is scratch of the same size). Every thread of the block calls it.
__device__ void norm_rope(const float* src, const float* w, const float* c, const float* s, int hd, float eps,
                          float* normed, float* roped) {
    float ss = 0.f;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) ss += src[i] * src[i];
    const float inv = rsqrtf(block_reduce<Sum>(ss) / hd + eps);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) normed[i] = src[i] * inv * w[i];
    __syncthreads();
    const int half_dim = hd >> 1;
    for (int i = threadIdx.x; i < half_dim; i += blockDim.x) {
        const float a = normed[i], b = normed[i + half_dim];
        roped[i] = a * c[i] - b * s[i];
        roped[i + half_dim] = b * c[i] + a * s[i];
    }
    __syncthreads();
}

// Prefill, per (token, head): q_norm / k_norm and RoPE (norm_rope), then q to f16 [heads][M][hd] and k, v
// into the f16 cache [kv_heads][capacity][hd] at position start + t, where start = step[0].
// grid (M, heads + kv_heads); block 64 threads; cos/sin are [positions][hd/2] tables.
extern "C" __global__ void qk_norm_rope(const float* q, const float* k, const float* v, const float* q_norm,
                                        const float* k_norm, const float* cos_table, const float* sin_table,
                                        half* q_out, half* k_cache, half* v_cache, int M, int heads,
                                        int kv_heads, int hd, const int* step, int capacity, float eps) {
    start_dependents();
    wait_for_inputs();
    __shared__ float normed[256], roped[256];
    const int t = blockIdx.x, head = blockIdx.y, pos = step[0] + t, half_dim = hd >> 1;
    const bool is_q = head < heads;
    const int kv = head - heads;
    const float* src = is_q ? q + ((size_t)t * heads + head) * hd : k + ((size_t)t * kv_heads + kv) * hd;
    norm_rope(src, is_q ? q_norm : k_norm, cos_table + (size_t)pos * half_dim, sin_table + (size_t)pos * half_dim,
              hd, eps, normed, roped);
    half* dst = is_q ? q_out + ((size_t)head * M + t) * hd : k_cache + ((size_t)kv * capacity + pos) * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) dst[i] = __float2half(roped[i]);
    if (!is_q) {
        const float* vs = v + ((size_t)t * kv_heads + kv) * hd;
        half* vd = v_cache + ((size_t)kv * capacity + pos) * hd;
        for (int i = threadIdx.x; i < hd; i += blockDim.x) vd[i] = __float2half(vs[i]);
    }
}

// Decode attention for the token at position len - 1 (len = step[1]), split over the context
// (flash-decoding), in one kernel: block (head, chunk) applies q_norm and RoPE to its head's q itself;
// the blocks whose chunk holds the new position also normalize and rotate k and write k and v to the
// cache (the query heads of one KV group write the same values); each block then scores its 64 positions
// and writes its max, its sum of exponentials and its unnormalized output to partial[head][chunk]; the
// last block of a head to finish (a counter in arrivals[head], reset for the next layer) joins the
// chunks into out[head] (f16, the [heads·hd] row o_proj reads). Blocks past len return at once, so one
// captured graph serves every length up to its grid. hd % 8 == 0, hd <= 256.
#define ATTN_CHUNK 64
extern "C" __global__ void __launch_bounds__(256, 8) attn_decode(
    const float* q, const float* k, const float* v, const float* q_norm, const float* k_norm,
    const float* cos_table, const float* sin_table, half* k_cache, half* v_cache, float* partial,
    unsigned* arrivals, half* out, const int* step, int heads, int kv_heads, int hd, int capacity, float scale,
    float eps) {
    start_dependents();
    wait_for_inputs();
    __shared__ float qs[256], normed[256], ks[256];
    __shared__ float weights[ATTN_CHUNK];
    __shared__ float2 out_part[4][128];
    __shared__ bool last_block;
    const int head = blockIdx.x, chunk = blockIdx.y, kv = head / (heads / kv_heads);
    const int chunks = gridDim.y, len = step[1], first = chunk * ATTN_CHUNK, pos_new = len - 1;
    if (first >= len) return;
    const int count = min(ATTN_CHUNK, len - first), half_dim = hd >> 1;
    const float* c = cos_table + (size_t)pos_new * half_dim;
    const float* s = sin_table + (size_t)pos_new * half_dim;
    norm_rope(q + (size_t)head * hd, q_norm, c, s, hd, eps, normed, qs);
    if (pos_new < first + ATTN_CHUNK) {
        norm_rope(k + (size_t)kv * hd, k_norm, c, s, hd, eps, normed, ks);
        half* kd = k_cache + ((size_t)kv * capacity + pos_new) * hd;
        half* vd = v_cache + ((size_t)kv * capacity + pos_new) * hd;
        for (int i = threadIdx.x; i < hd; i += blockDim.x) {
            kd[i] = __float2half(ks[i]);
            vd[i] = __float2half(v[(size_t)kv * hd + i]);
        }
        __syncthreads();  // the block reads these cache rows below
    }
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
    float* base = partial + (size_t)head * chunks * (hd + 2);
    float* dst = base + (size_t)chunk * (hd + 2);
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
    // The last block of this head joins the chunks: its partial writes must be visible before it counts.
    const int used = (len + ATTN_CHUNK - 1) / ATTN_CHUNK;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_block = atomicAdd(&arrivals[head], 1u) == (unsigned)(used - 1);
    __syncthreads();
    if (!last_block) return;
    if (threadIdx.x == 0) arrivals[head] = 0;
    float mc = -INFINITY;
    for (int ci = threadIdx.x; ci < used; ci += blockDim.x) mc = fmaxf(mc, __ldcg(base + (size_t)ci * (hd + 2)));
    const float m_all = block_reduce<Max>(mc);
    float tc = 0.f;
    for (int ci = threadIdx.x; ci < used; ci += blockDim.x) {
        const float* pc = base + (size_t)ci * (hd + 2);
        tc += __expf(__ldcg(pc) - m_all) * __ldcg(pc + 1);
    }
    const float total = block_reduce<Sum>(tc);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.f;
        for (int ci = 0; ci < used; ci++) {
            const float* pc = base + (size_t)ci * (hd + 2);
            o += __expf(__ldcg(pc) - m_all) * __ldcg(pc + 2 + d);
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
