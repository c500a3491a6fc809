// The KV cache's row formats, included by kernels.cu after its helpers. A row is one position of one KV
// head: hd values, rows [kv_heads][capacity][hd] back to back.
//
// F16Cache: the values as f16 (the default).
// Fp8Cache (opt-in, `kv_cache: fp8`): e4m3 bytes of value / scale, with one f32 scale per row, max |value| /
// 448 (e4m3's largest finite), in a [kv_heads][capacity] table beside the cache. Half the bytes per
// position; each value keeps 3 mantissa bits, so its error is at most 1/16 of its own size (plus the
// subnormal step, 2^-9 of the row's largest value, for values far below it).
// Both give readers floats, so the attention math is one code path; readers multiply Fp8Cache dot
// products and weights by the row's scale.
#include <cuda_fp8.h>

#define FP8_E4M3_MAX 448.f

struct F16Cache {
    using T = half;
    // Values per 16 bytes (one cp.async piece).
    static constexpr int PER_PIECE = 8;
    static constexpr bool scaled = false;
    // Adds to `dot` the products of 8 values at 16-byte-aligned p with q[0..8).
    __device__ static __forceinline__ void add_dot8(const T* p, const float* q, float& dot) {
        const uint4 raw = *reinterpret_cast<const uint4*>(p);
        const half2* h = reinterpret_cast<const half2*>(&raw);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float2 f = __half22float2(h[j]);
            dot += q[2 * j] * f.x + q[2 * j + 1] * f.y;
        }
    }
    // Values 2·pair and 2·pair + 1 of a row.
    __device__ static __forceinline__ float2 load2(const T* row, int pair) {
        return __half22float2(reinterpret_cast<const half2*>(row)[pair]);
    }
    // Writes row `row` (its index in [kv_heads][capacity]) from hd floats, by one whole warp.
    __device__ static __forceinline__ void warp_write_row(void* cache, float*, size_t row, const float* src, int hd) {
        half* dst = static_cast<half*>(cache) + row * hd;
        for (int i = threadIdx.x & 31; i < hd; i += 32) dst[i] = __float2half(src[i]);
    }
};

struct Fp8Cache {
    using T = unsigned char;
    static constexpr int PER_PIECE = 16;
    static constexpr bool scaled = true;
    // Two e4m3 values (the low byte first) as floats.
    __device__ static __forceinline__ float2 to_float2(unsigned short two) {
        const __half2 h = __half2(__nv_cvt_fp8x2_to_halfraw2(two, __NV_E4M3));
        return __half22float2(h);
    }
    // Adds to `dot` the products of 8 values at 8-byte-aligned p with q[0..8), before the row's scale.
    __device__ static __forceinline__ void add_dot8(const T* p, const float* q, float& dot) {
        const uint2 raw = *reinterpret_cast<const uint2*>(p);
        const unsigned short* two = reinterpret_cast<const unsigned short*>(&raw);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float2 f = to_float2(two[j]);
            dot += q[2 * j] * f.x + q[2 * j + 1] * f.y;
        }
    }
    __device__ static __forceinline__ float2 load2(const T* row, int pair) {
        return to_float2(reinterpret_cast<const unsigned short*>(row)[pair]);
    }
    // Writes row `row` from hd floats, by one whole warp, and its scale into scales[row].
    __device__ static __forceinline__ void warp_write_row(void* cache, float* scales, size_t row, const float* src,
                                                          int hd) {
        const int lane = threadIdx.x & 31;
        float amax = 0.f;
        for (int i = lane; i < hd; i += 32) amax = fmaxf(amax, fabsf(src[i]));
        amax = warp_reduce<Max>(amax);
        const float scale = amax > 0.f ? amax / FP8_E4M3_MAX : 1.f, inv = 1.f / scale;
        unsigned short* dst = reinterpret_cast<unsigned short*>(static_cast<unsigned char*>(cache) + row * hd);
        for (int p = lane; p < hd >> 1; p += 32)
            dst[p] = __nv_cvt_float2_to_fp8x2(make_float2(src[2 * p] * inv, src[2 * p + 1] * inv), __NV_SATFINITE,
                                              __NV_E4M3);
        if (lane == 0) scales[row] = scale;
    }
};
