// The decode GEMVs of src/model/cuda/kernels.cu timed alone on the Qwen3-8B shapes (the engine's block
// sizing and other row splits), each checked against an f32 reference, plus the decode attention (the
// "rows" column is the context length there, "blocks" its grid), the f16 and int8 lm_heads, a grid-wide
// barrier (what a persistent decode kernel would pay per phase) and a device copy for scale. Weights
// rotate through copies larger than the L2 cache, so every call reads its bytes from memory as it does
// in a decode step. Launches are back to back on one stream (no graph, no programmatic dependent
// launch), so each time includes its launch gap.
//
// Built here by `scripts/build-cuda.sh --check` (→ target/cuda/kernel-bench, CUDA runtime linked
// statically), then carried to the GPU machine:  kernel-bench [REPS]
#include "../../src/model/cuda/kernels.cu"

#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                                  \
    do {                                                                          \
        cudaError_t e = (x);                                                      \
        if (e != cudaSuccess) {                                                   \
            fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

__device__ uint32_t hash(uint64_t i) {
    uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)(z ^ (z >> 31));
}
__global__ void fill_u32(uint32_t* p, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = hash(i + seed);
}
// Uniform in [lo, hi).
__global__ void fill_f32(float* p, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = lo + (hi - lo) * (hash(i + seed) >> 8) * (1.f / 16777216.f);
}
__global__ void f32_to_f16(const float* a, half* b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        b[i] = __float2half(a[i]);
}
// y[n] = Σ_k x[k] · W[k][n] in f32 from the checkpoint layout; one thread per column.
__global__ void ref_gemv(const uint32_t* qw, const uint32_t* qz, const half* sc, const float* x, float* y, int K,
                         int N, int group) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    int words = N / 8, shift = awq_shift(n);
    double acc = 0;
    for (int k = 0; k < K; k++) {
        int g = k / group;
        float q = (qw[(size_t)k * words + n / 8] >> shift) & 0xF, z = (qz[(size_t)g * words + n / 8] >> shift) & 0xF;
        acc += (double)x[k] * (q - z) * __half2float(sc[(size_t)g * N + n]);
    }
    y[n] = (float)acc;
}
// The input each mode feeds the matrix, in f32, for the reference.
__global__ void effective_input(const half* x, const float* gate, const float* up, const float* norm_x,
                                const float* norm_w, float eps, float* out, int K) {
    float inv = 0.f;
    if (norm_x) {
        float ss = 0.f;
        for (int i = threadIdx.x; i < K; i += blockDim.x) ss += norm_x[i] * norm_x[i];
        ss = block_reduce<Sum>(ss);
        inv = rsqrtf(ss / K + eps);
    }
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        float v;
        if (gate) v = gate[k] / (1.f + expf(-gate[k])) * up[k];
        else if (norm_x) v = norm_x[k] * inv * norm_w[k];
        else v = __half2float(x[k]);
        out[k] = v;
    }
}

// A grid-wide barrier, as a persistent decode kernel (all blocks resident at once) would need: is it
// cheaper than a kernel boundary? bar[0]
// counts arrivals, bar[1] is the generation; the last block to arrive resets the count and starts the
// next generation, so nothing needs clearing between launches. `generation` is the block's copy of
// bar[1] (read once at launch: no barrier can complete before every block has arrived).
__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void store_release(unsigned* p, unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void grid_sync(unsigned* bar, unsigned& generation) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();  // the block's writes before the arrival
        const unsigned blocks = gridDim.x * gridDim.y * gridDim.z;
        if (atomicAdd(bar, 1u) == blocks - 1) {
            bar[0] = 0;
            store_release(bar + 1, generation + 1);
        } else {
            while (load_acquire(bar + 1) == generation) {
            }
        }
        __threadfence();
    }
    generation++;
    __syncthreads();
}

// reps grid-wide barriers back to back.
__global__ void barrier_bench(unsigned* bar, int reps) {
    __shared__ unsigned generation_shared;
    if (threadIdx.x == 0) generation_shared = load_acquire(bar + 1);
    __syncthreads();
    unsigned generation = generation_shared;
    for (int i = 0; i < reps; i++) grid_sync(bar, generation);
}

enum Input { PLAIN, NORM, SILU };
struct Shape {
    const char* name;
    int K;
    std::vector<int> N;
    Input input;
};

static int sms;
static uint32_t* pool;  // random words: packed weights and zeros of every copy
static size_t pool_words;
static half* scale_pool;
static size_t scale_len;

static float gbps(size_t bytes, float us) { return bytes / (us * 1e3f); }

int main(int argc, char** argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 200;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("%s, %d SMs, L2 %d MB\n", prop.name, sms, prop.l2CacheSize >> 20);
    pool_words = (size_t)1 << 29;  // 2 GiB
    CHECK(cudaMalloc(&pool, pool_words * 4));
    fill_u32<<<4096, 256>>>(pool, pool_words, 1);
    scale_len = (size_t)1 << 26;
    float* tmp;
    CHECK(cudaMalloc(&tmp, scale_len * 4));
    CHECK(cudaMalloc(&scale_pool, scale_len * 2));
    fill_f32<<<4096, 256>>>(tmp, scale_len, 7, 0.002f, 0.02f);
    f32_to_f16<<<4096, 256>>>(tmp, scale_pool, scale_len);
    const int K_MAX = 12288;
    half* x;
    float *gate, *up, *norm_x, *norm_w, *xin, *y, *yref, *zero;
    CHECK(cudaMalloc(&x, K_MAX * 2));
    CHECK(cudaMalloc(&gate, K_MAX * 4));
    CHECK(cudaMalloc(&up, K_MAX * 4));
    CHECK(cudaMalloc(&norm_x, K_MAX * 4));
    CHECK(cudaMalloc(&norm_w, K_MAX * 4));
    CHECK(cudaMalloc(&xin, K_MAX * 4));
    CHECK(cudaMalloc(&y, 3 * 12288 * 4));
    CHECK(cudaMalloc(&yref, 3 * 12288 * 4));
    CHECK(cudaMalloc(&zero, 16));
    fill_f32<<<64, 256>>>(tmp, K_MAX, 11, -1.f, 1.f);
    f32_to_f16<<<64, 256>>>(tmp, x, K_MAX);
    fill_f32<<<64, 256>>>(gate, K_MAX, 12, -4.f, 4.f);
    fill_f32<<<64, 256>>>(up, K_MAX, 13, -2.f, 2.f);
    fill_f32<<<64, 256>>>(norm_x, K_MAX, 14, -3.f, 3.f);
    fill_f32<<<64, 256>>>(norm_w, K_MAX, 15, 0.5f, 1.5f);
    const int group = 128;

    std::vector<Shape> shapes = {
        {"q/k/v", 4096, {4096, 1024, 1024}, NORM},
        {"qkv-x", 4096, {4096, 1024, 1024}, PLAIN},
        {"o_proj", 4096, {4096}, PLAIN},
        {"gate/up", 4096, {12288, 12288}, NORM},
        {"down", 12288, {4096}, SILU},
    };
    printf("%-8s %-10s %6s %7s %9s %8s %10s\n", "matrix", "kernel", "rows", "blocks", "us/call", "GB/s", "rel.err");
    for (const Shape& sh : shapes) {
        const int K = sh.K, nm = sh.N.size();
        size_t wwords = 0, zwords = 0, slen = 0, bytes = 0;
        for (int N : sh.N) {
            wwords += (size_t)K * N / 8;
            zwords += (size_t)K / group * N / 8;
            slen += (size_t)K / group * N;
        }
        bytes = wwords * 4 + zwords * 4 + slen * 2;
        const int copies = (int)std::min<size_t>(pool_words / (wwords + zwords), 64);
        // Matrix i of copy c.
        auto matrix = [&](int c, int i, bool repacked, uint32_t* repack_buf) {
            size_t wo = c * (wwords + zwords), zo = wo + wwords, so = (size_t)c * slen % (scale_len - slen);
            for (int j = 0; j < i; j++) {
                wo += (size_t)K * sh.N[j] / 8;
                zo += (size_t)K / group * sh.N[j] / 8;
                so += (size_t)K / group * sh.N[j];
            }
            AwqMatrix m;
            m.qweight = repacked ? repack_buf : pool + wo;
            m.qzeros = pool + zo;
            m.scales = scale_pool + so;
            m.y = y + i * 12288;
            m.N = sh.N[i];
            return m;
        };
        const half* xa = sh.input == PLAIN ? x : nullptr;
        const float* ga = sh.input == SILU ? gate : nullptr;
        const float* ua = sh.input == SILU ? up : nullptr;
        const float* nx = sh.input == NORM ? norm_x : nullptr;
        const float* nw = sh.input == NORM ? norm_w : nullptr;
        // Reference of copy 0, and copy 0 repacked for the correctness run.
        effective_input<<<1, 1024>>>(xa, ga, ua, nx, nw, 1e-6f, xin, K);
        std::vector<uint32_t*> repacked(nm);
        for (int i = 0; i < nm; i++) {
            AwqMatrix m = matrix(0, i, false, nullptr);
            ref_gemv<<<(m.N + 127) / 128, 128>>>(m.qweight, m.qzeros, m.scales, xin, yref + i * 12288, K, m.N, group);
            CHECK(cudaMalloc(&repacked[i], (size_t)K * m.N / 2));
            size_t words = (size_t)K * m.N / 8;
            awq_repack<<<(words + 255) / 256, 256>>>(m.qweight, repacked[i], K, m.N);
        }
        CHECK(cudaDeviceSynchronize());
        // The repacked copies exist once: the timed runs read the other copies' checkpoint-layout bytes
        // (the same size; contents only matter for the correctness run).
        auto run = [&](int rows, int c, bool check) {
            AwqMatrix m[3];
            for (int i = 0; i < 3; i++) {
                m[i] = matrix(c, i < nm ? i : 0, check, repacked[i < nm ? i : 0]);
                if (i >= nm) m[i].N = 0;  // no strips
            }
            int strips = 0;
            for (int N : sh.N) strips += (N + 255) / 256;
            dim3 grid(strips, (K + rows - 1) / rows);
            awq_gemv<<<grid, 256>>>(m[0], m[1], m[2], xa, ga, ua, nx, nw, nullptr, nullptr, 0, 0, 1e-6f, zero, 0, K,
                                    2, rows);
            return grid.x * grid.y * grid.z;
        };
        auto measure = [&](const char* label, int rows) {
            CHECK(cudaMemset(y, 0, 3 * 12288 * 4));
            int blocks = run(rows, 0, true);
            CHECK(cudaDeviceSynchronize());
            std::vector<float> a(3 * 12288), b(3 * 12288);
            CHECK(cudaMemcpy(a.data(), y, a.size() * 4, cudaMemcpyDeviceToHost));
            CHECK(cudaMemcpy(b.data(), yref, b.size() * 4, cudaMemcpyDeviceToHost));
            double num = 0, den = 0;
            for (int i = 0; i < nm; i++)
                for (int n = 0; n < sh.N[i]; n++) {
                    double d = a[i * 12288 + n] - b[i * 12288 + n];
                    num += d * d;
                    den += (double)b[i * 12288 + n] * b[i * 12288 + n];
                }
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0);
            cudaEventCreate(&e1);
            for (int r = 0; r < 10; r++) run(rows, r % copies, false);
            cudaEventRecord(e0);
            for (int r = 0; r < reps; r++) run(rows, r % copies, false);
            cudaEventRecord(e1);
            CHECK(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            float us = ms * 1e3f / reps;
            printf("%-8s %-10s %6d %7d %9.2f %8.0f %10.2e\n", sh.name, label, rows, blocks, us, gbps(bytes, us),
                   sqrt(num / den));
        };
        // The engine's sizing (CudaQwen3::awq_gemv): at most 6 blocks per SM, whole groups, rows in
        // [128, 1024].
        int strips = 0;
        for (int N : sh.N) strips += (N + 255) / 256;
        int splits = std::max(1, 6 * sms / strips);
        int sized = std::min(((K + splits - 1) / splits + 127) / 128 * 128, 1024);
        measure("engine", sized);
        for (int rows : {128, 256, 512, 1024})
            if (rows != sized) measure("awq_gemv", rows);
        for (int i = 0; i < nm; i++) cudaFree(repacked[i]);
    }
    // Decode attention (one layer: 32 heads, 8 KV heads, head_dim 128) after 512, 2048 and 4096 positions;
    // blocks = heads × 64-position chunks, as the engine's graph launches it for a power-of-two length.
    {
        const int heads = 32, kv_heads = 8, hd = 128, capacity = 4096;
        float *q, *kv_new, *norm, *cos_t, *sin_t, *partial;
        half *k_cache, *v_cache, *out;
        unsigned* head_arrivals;
        int* step;
        CHECK(cudaMalloc(&q, heads * hd * 4));
        CHECK(cudaMalloc(&kv_new, 2 * kv_heads * hd * 4));
        CHECK(cudaMalloc(&norm, hd * 4));
        CHECK(cudaMalloc(&cos_t, (size_t)capacity * hd / 2 * 4));
        CHECK(cudaMalloc(&sin_t, (size_t)capacity * hd / 2 * 4));
        CHECK(cudaMalloc(&partial, (size_t)heads * (capacity / 64) * (hd + 2) * 4));
        CHECK(cudaMalloc(&k_cache, (size_t)kv_heads * capacity * hd * 2));
        CHECK(cudaMalloc(&v_cache, (size_t)kv_heads * capacity * hd * 2));
        CHECK(cudaMalloc(&out, heads * hd * 2));
        CHECK(cudaMalloc(&head_arrivals, heads * 4));
        CHECK(cudaMalloc(&step, 8));
        CHECK(cudaMemset(head_arrivals, 0, heads * 4));
        fill_f32<<<64, 256>>>(q, heads * hd, 21, -2.f, 2.f);
        fill_f32<<<64, 256>>>(kv_new, 2 * kv_heads * hd, 22, -2.f, 2.f);
        fill_f32<<<64, 256>>>(norm, hd, 23, 0.5f, 1.5f);
        fill_f32<<<256, 256>>>(cos_t, (size_t)capacity * hd / 2, 24, -1.f, 1.f);
        fill_f32<<<256, 256>>>(sin_t, (size_t)capacity * hd / 2, 25, -1.f, 1.f);
        fill_f32<<<1024, 256>>>(tmp, (size_t)kv_heads * capacity * hd, 26, -2.f, 2.f);
        f32_to_f16<<<1024, 256>>>(tmp, k_cache, (size_t)kv_heads * capacity * hd);
        f32_to_f16<<<1024, 256>>>(tmp, v_cache, (size_t)kv_heads * capacity * hd);
        for (int len : {512, 2048, 4096}) {
            const int host_step[2] = {len - 1, len};
            CHECK(cudaMemcpy(step, host_step, 8, cudaMemcpyHostToDevice));
            auto launch = [&] {
                attn_decode<<<dim3(kv_heads, len / 64), 256>>>(q, kv_new, kv_new + kv_heads * hd, norm, norm, cos_t, sin_t,
                                                           k_cache, v_cache, nullptr, nullptr, partial, head_arrivals,
                                                           out, step, heads,
                                                           kv_heads, hd, capacity, 0.088f, 1e-6f);
            };
            launch();
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0);
            cudaEventCreate(&e1);
            cudaEventRecord(e0);
            for (int r = 0; r < reps; r++) launch();
            cudaEventRecord(e1);
            CHECK(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            const float us = ms * 1e3f / reps;
            const size_t bytes = (size_t)2 * kv_heads * len * hd * 2;
            printf("%-8s %-10s %6d %7d %9.2f %8.0f\n", "attn", "attn_decode", len, kv_heads * len / 64, us, gbps(bytes, us));
        }
    }
    // The f16 lm_head.
    {
        const int K = 4096, N = 151936;
        size_t bytes = (size_t)K * N * 2;
        int copies = (int)(pool_words * 4 / bytes);
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0);
        cudaEventCreate(&e1);
        float* logits;
        CHECK(cudaMalloc(&logits, N * 4));
        cudaEventRecord(e0);
        for (int r = 0; r < 50; r++)
            dense_gemv<<<(N + 7) / 8, 256>>>(reinterpret_cast<const half*>(pool) + (r % copies) * (size_t)K * N, x, logits, K, N, 0);
        cudaEventRecord(e1);
        CHECK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        printf("%-8s %-10s %6s %7d %9.2f %8.0f\n", "lm_head", "dense_f16", "-", (N + 7) / 8, ms * 20, gbps(bytes, ms * 20));
    }
    // The int8 lm_head (the engine's choice for an untied f16 head).
    {
        const int K = 4096, N = 151936;
        size_t bytes = (size_t)K * N + (size_t)N * (K / 128) * 4;
        int copies = (int)(pool_words * 4 / bytes);
        float* logits;
        CHECK(cudaMalloc(&logits, N * 4));
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0);
        cudaEventCreate(&e1);
        auto launch = [&](int r) {
            const int8_t* w = reinterpret_cast<const int8_t*>(pool) + (r % copies) * bytes;
            i8_gemv<<<dim3((N + 63) / 64, 1), 256>>>(w, reinterpret_cast<const float*>(w + (size_t)K * N), x, logits, K, N);
        };
        launch(0);
        cudaEventRecord(e0);
        for (int r = 0; r < 50; r++) launch(r);
        cudaEventRecord(e1);
        CHECK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        printf("%-8s %-10s %6s %7d %9.2f %8.0f\n", "lm_head", "i8_gemv", "-", (N + 63) / 64, ms * 20, gbps(bytes, ms * 20));
    }
    // The grid barrier (grid_sync), per barrier, at 1, 2 and 6 blocks of 256 per SM.
    {
        unsigned* bar;
        CHECK(cudaMalloc(&bar, 8));
        CHECK(cudaMemset(bar, 0, 8));
        const int barriers = 2000;
        for (int per_sm : {1, 2, 6}) {
            barrier_bench<<<sms * per_sm, 256>>>(bar, 10);
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0);
            cudaEventCreate(&e1);
            cudaEventRecord(e0);
            barrier_bench<<<sms * per_sm, 256>>>(bar, barriers);
            cudaEventRecord(e1);
            CHECK(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            printf("%-8s %-10s %6s %7d %9.2f\n", "barrier", "grid_sync", "-", sms * per_sm, ms * 1e3f / barriers);
        }
    }
    // Copy bandwidth for scale.
    {
        size_t n = (size_t)1 << 30;
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0);
        cudaEventCreate(&e1);
        cudaEventRecord(e0);
        for (int r = 0; r < 10; r++) cudaMemcpyAsync(reinterpret_cast<char*>(pool) + n, pool, n, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        CHECK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        printf("device copy: %.0f GB/s (read + write)\n", 2.0 * n * 10 / (ms * 1e6));
    }
    return 0;
}
