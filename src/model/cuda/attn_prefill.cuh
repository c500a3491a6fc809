// Prefill attention (flash attention 2 on tensor cores), included by kernels.cu after its helpers.
//
// Causal attention of a chunk's M queries, at positions start..start+M, over the cached positions
// 0..start+M, with no score matrix in memory: per 64-position tile of the cache, each warp multiplies its
// 16 query rows by the tile's keys (mma.sync m16n8k16, f16 in, f32 accumulate), applies the causal mask
// and an online softmax (a running max and sum per row rescale its output), and multiplies the
// probabilities, kept in registers, by the tile's values. The block's four warps serve the query heads of
// one KV head that share the staged K and V tiles (GQA: HEADS_PER_BLOCK = gcd(group, 4) heads, each with
// 4 / HEADS_PER_BLOCK strips of 16 rows), so each tile is read from the cache once per block, not once
// per query head. Tiles stream through shared memory with cp.async: the next tile's keys load while the
// warps work on this tile's values, and its values while they score the next keys.
//
// q is [heads][M][hd] f16 (normed and rotated by qk_norm_rope), the caches [kv_heads][capacity][hd] in
// C's format (kv_cache.cuh); out is [M][heads·hd] f16 (the o_proj input). An fp8 cache's tiles are
// read into registers (the next tile's while the warps work on this one), scaled to f16 and stored to
// the same shared tiles, so the products are the f16 kernel's. HD is hd rounded up to 32, 64 or 128: the padded dims
// are zero in both operands, so they add nothing. Grid (row blocks, heads / heads_per_block), 128 threads;
// row blocks run heaviest (latest rows, most tiles) first.

#define FLASH_TILE 64
#define FLASH_WARPS 4

// D (+)= A · B for one m16n8k16 tile: A 16×16 row-major (four f16 pairs), B 16×8 column-major (two).
__device__ __forceinline__ void mma_m16n8k16(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8×8 f16 matrices from shared memory; thread t names row t % 8 of matrix t / 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const half* row) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// The same, each matrix transposed.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, const half* row) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// 16 bytes global → shared, or zeros where !valid (then global is not read).
__device__ __forceinline__ void cp_async16_or_zero(void* smem, const void* global, bool valid) {
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
}

// Stages rows first..first+64 of one KV head's cache (rows at or past len, and dims past hd, as zeros).
template <int HD>
__device__ __forceinline__ void flash_stage_tile(half (*dst)[HD + 8], const half* cache, int first, int len,
                                                 int hd) {
    constexpr int PIECES = HD / 8;
    for (int c = threadIdx.x; c < FLASH_TILE * PIECES; c += FLASH_WARPS * 32) {
        const int r = c / PIECES, p = c % PIECES;
        const bool valid = first + r < len && p * 8 < hd;
        cp_async16_or_zero(&dst[r][p * 8], valid ? cache + (size_t)(first + r) * hd + p * 8 : cache, valid);
    }
    asm volatile("cp.async.commit_group;\n" ::);
}

// A tile of an fp8 cache on its way to shared memory: this thread's 16-byte pieces (16 values each) and
// their rows' scales, loaded into registers by `load`, scaled to f16 into a staged tile by `store`.
template <int HD>
struct Fp8TileLoad {
    static constexpr int PIECES_PER_ROW = HD / 16;
    static constexpr int PIECES = FLASH_TILE * PIECES_PER_ROW / (FLASH_WARPS * 32);
    uint4 raw[PIECES];
    float scale[PIECES];

    // Rows first..first+64 (rows at or past len, and dims past hd, as zeros).
    __device__ __forceinline__ void load(const unsigned char* cache, const float* scales, int first, int len,
                                         int hd) {
#pragma unroll
        for (int i = 0; i < PIECES; i++) {
            const int c = threadIdx.x + i * FLASH_WARPS * 32, r = c / PIECES_PER_ROW, p = c % PIECES_PER_ROW;
            const bool valid = first + r < len && p * 16 < hd;
            raw[i] = valid ? *reinterpret_cast<const uint4*>(cache + (size_t)(first + r) * hd + p * 16)
                           : make_uint4(0, 0, 0, 0);
            scale[i] = valid ? scales[first + r] : 0.f;
        }
    }

    __device__ __forceinline__ void store(half (*dst)[HD + 8]) const {
#pragma unroll
        for (int i = 0; i < PIECES; i++) {
            const int c = threadIdx.x + i * FLASH_WARPS * 32, r = c / PIECES_PER_ROW, p = c % PIECES_PER_ROW;
            const unsigned short* two = reinterpret_cast<const unsigned short*>(&raw[i]);
            uint32_t h[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float2 f = Fp8Cache::to_float2(two[j]);
                h[j] = pack_half2(f.x * scale[i], f.y * scale[i]);
            }
            *reinterpret_cast<uint4*>(&dst[r][p * 16]) = make_uint4(h[0], h[1], h[2], h[3]);
            *reinterpret_cast<uint4*>(&dst[r][p * 16 + 8]) = make_uint4(h[4], h[5], h[6], h[7]);
        }
    }
};

template <int HD, typename C>
__device__ __forceinline__ void flash_prefill_body(const half* __restrict__ q, const void* __restrict__ k_raw,
                                                   const void* __restrict__ v_raw,
                                                   const float* __restrict__ k_scales,
                                                   const float* __restrict__ v_scales, half* __restrict__ out, int M,
                                                   int start, int heads, int group, int heads_per_block, int hd,
                                                   int capacity, float scale_log2) {
    using T = typename C::T;
    static_assert(C::scaled || sizeof(T) == 2, "an unscaled cache is f16");
    // Rows padded by 8 halves: the eight rows of an ldmatrix phase fall in eight different bank groups.
    __shared__ __align__(16) half ks[FLASH_TILE][HD + 8];
    __shared__ __align__(16) half vs[FLASH_TILE][HD + 8];
    start_dependents();
    wait_for_inputs();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int strips = FLASH_WARPS / heads_per_block, block_rows = 16 * strips;
    const int row0 = (gridDim.x - 1 - blockIdx.x) * block_rows;
    const int head = blockIdx.y * heads_per_block + warp % heads_per_block;
    const int kv = head / group;
    const int warp_row0 = row0 + (warp / heads_per_block) * 16;
    const int len = start + M;
    const int block_last = min(row0 + block_rows, M) - 1;
    const int tiles = (start + block_last) / FLASH_TILE + 1;
    const T* kc = static_cast<const T*>(k_raw) + (size_t)kv * capacity * hd;
    const T* vc = static_cast<const T*>(v_raw) + (size_t)kv * capacity * hd;
    const float* ksc = C::scaled ? k_scales + (size_t)kv * capacity : nullptr;
    const float* vsc = C::scaled ? v_scales + (size_t)kv * capacity : nullptr;
    // The fp8 path's next tile in registers (unused for f16).
    Fp8TileLoad<HD> next;
    if constexpr (C::scaled) {
        next.load(reinterpret_cast<const unsigned char*>(kc), ksc, 0, len, hd);
        next.store(ks);
        next.load(reinterpret_cast<const unsigned char*>(vc), vsc, 0, len, hd);
        next.store(vs);
    } else {
        flash_stage_tile<HD>(ks, reinterpret_cast<const half*>(kc), 0, len, hd);
        flash_stage_tile<HD>(vs, reinterpret_cast<const half*>(vc), 0, len, hd);
    }

    // This warp's 16 query rows as A fragments: rows g and g + 8, dims t4·2 (+8) of each 16-dim step.
    uint32_t qa[HD / 16][4];
    const half* qh = q + (size_t)head * M * hd;
    for (int kk = 0; kk < HD / 16; kk++)
        for (int i = 0; i < 4; i++) {
            const int r = warp_row0 + g + (i & 1) * 8, d = kk * 16 + t4 * 2 + (i >> 1) * 8;
            qa[kk][i] = r < M && d < hd ? *reinterpret_cast<const uint32_t*>(qh + (size_t)r * hd + d) : 0u;
        }
    float o[HD / 8][4];
    for (int dt = 0; dt < HD / 8; dt++)
        for (int i = 0; i < 4; i++) o[dt][i] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
    // Positions of rows g and g + 8: each sees the cache up to and including its own position.
    const int pos[2] = {start + warp_row0 + g, start + warp_row0 + g + 8};
    const int mat = lane >> 3, mrow = lane & 7;

    for (int tile = 0; tile < tiles; tile++) {
        const int base = tile * FLASH_TILE;
        // A warp whose rows all precede the tile has nothing to add (its rows past M included).
        const bool active = base <= start + warp_row0 + 15;
        asm volatile("cp.async.wait_group 1;\n" ::: "memory");  // this tile's keys
        __syncthreads();
        if constexpr (C::scaled)  // the next keys load while this tile's are scored
            if (tile + 1 < tiles)
                next.load(reinterpret_cast<const unsigned char*>(kc), ksc, base + FLASH_TILE, len, hd);
        float s[FLASH_TILE / 8][4];
        if (active) {
            for (int nt = 0; nt < FLASH_TILE / 8; nt++)
                for (int i = 0; i < 4; i++) s[nt][i] = 0.f;
            for (int kk = 0; kk < HD / 16; kk++)
                for (int nt = 0; nt < FLASH_TILE / 8; nt += 2) {
                    uint32_t b[4];
                    ldmatrix_x4(b, &ks[(nt + (mat >> 1)) * 8 + mrow][kk * 16 + (mat & 1) * 8]);
                    mma_m16n8k16(s[nt], qa[kk], b[0], b[1]);
                    mma_m16n8k16(s[nt + 1], qa[kk], b[2], b[3]);
                }
        }
        __syncthreads();  // every warp is done with the keys: stage the next tile's
        if constexpr (C::scaled) {
            if (tile + 1 < tiles) {
                next.store(ks);
                next.load(reinterpret_cast<const unsigned char*>(vc), vsc, base + FLASH_TILE, len, hd);
            }
        } else if (tile + 1 < tiles) {
            flash_stage_tile<HD>(ks, reinterpret_cast<const half*>(kc), base + FLASH_TILE, len, hd);
        } else {
            asm volatile("cp.async.commit_group;\n" ::);
        }
        uint32_t pa[FLASH_TILE / 16][4];
        if (active) {
            const bool masked = base + FLASH_TILE - 1 > start + warp_row0;
            float tile_max[2] = {-INFINITY, -INFINITY};
            for (int nt = 0; nt < FLASH_TILE / 8; nt++)
                for (int i = 0; i < 4; i++) {
                    const int key = base + nt * 8 + t4 * 2 + (i & 1);
                    float v = s[nt][i] * scale_log2;
                    if (masked && key > pos[i >> 1]) v = -INFINITY;
                    s[nt][i] = v;
                    tile_max[i >> 1] = fmaxf(tile_max[i >> 1], v);
                }
            float alpha[2];
            for (int r = 0; r < 2; r++) {
                tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(FULL_MASK, tile_max[r], 1));
                tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(FULL_MASK, tile_max[r], 2));
                // Tile 0 holds position 0, which every row sees: the max is finite from then on.
                const float new_max = fmaxf(row_max[r], tile_max[r]);
                alpha[r] = exp2f(row_max[r] - new_max);
                row_max[r] = new_max;
                row_sum[r] *= alpha[r];
            }
            for (int nt = 0; nt < FLASH_TILE / 8; nt++)
                for (int i = 0; i < 4; i++) {
                    s[nt][i] = exp2f(s[nt][i] - row_max[i >> 1]);
                    row_sum[i >> 1] += s[nt][i];
                }
            for (int dt = 0; dt < HD / 8; dt++)
                for (int i = 0; i < 4; i++) o[dt][i] *= alpha[i >> 1];
            // The score tiles 2j and 2j + 1 (C fragments) are exactly the A fragment of keys 16j..16j+16.
            for (int j = 0; j < FLASH_TILE / 16; j++) {
                pa[j][0] = pack_half2(s[2 * j][0], s[2 * j][1]);
                pa[j][1] = pack_half2(s[2 * j][2], s[2 * j][3]);
                pa[j][2] = pack_half2(s[2 * j + 1][0], s[2 * j + 1][1]);
                pa[j][3] = pack_half2(s[2 * j + 1][2], s[2 * j + 1][3]);
            }
        }
        asm volatile("cp.async.wait_group 1;\n" ::: "memory");  // this tile's values
        __syncthreads();
        if (active)
            for (int j = 0; j < FLASH_TILE / 16; j++)
                for (int dt = 0; dt < HD / 8; dt += 2) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, &vs[j * 16 + (mat & 1) * 8 + mrow][(dt + (mat >> 1)) * 8]);
                    mma_m16n8k16(o[dt], pa[j], b[0], b[1]);
                    mma_m16n8k16(o[dt + 1], pa[j], b[2], b[3]);
                }
        __syncthreads();  // every warp is done with the values: stage the next tile's
        if constexpr (C::scaled) {
            if (tile + 1 < tiles) next.store(vs);
        } else if (tile + 1 < tiles) {
            flash_stage_tile<HD>(vs, reinterpret_cast<const half*>(vc), base + FLASH_TILE, len, hd);
        } else {
            asm volatile("cp.async.commit_group;\n" ::);
        }
    }

    for (int r = 0; r < 2; r++) {
        row_sum[r] += __shfl_xor_sync(FULL_MASK, row_sum[r], 1);
        row_sum[r] += __shfl_xor_sync(FULL_MASK, row_sum[r], 2);
    }
    const size_t row_stride = (size_t)heads * hd;
    for (int r = 0; r < 2; r++) {
        const int row = warp_row0 + g + r * 8;
        if (row >= M) continue;
        const float inv = 1.f / row_sum[r];
        half* dst = out + row * row_stride + (size_t)head * hd;
        for (int dt = 0; dt < HD / 8; dt++) {
            const int d = dt * 8 + t4 * 2;
            if (d < hd)
                *reinterpret_cast<uint32_t*>(dst + d) = pack_half2(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
        }
    }
}

#define FLASH_PREFILL_PARAMS                                                                                  \
    const half *q, const void *k_cache, const void *v_cache, const float *k_scales, const float *v_scales,    \
        half *out, int M, int start, int heads, int group, int heads_per_block, int hd, int capacity,         \
        float scale_log2
#define FLASH_PREFILL_ARGS \
    q, k_cache, v_cache, k_scales, v_scales, out, M, start, heads, group, heads_per_block, hd, capacity, scale_log2
#define FLASH_PREFILL_KERNEL(NAME, HD, CACHE)                                                \
    extern "C" __global__ void __launch_bounds__(FLASH_WARPS * 32) NAME(FLASH_PREFILL_PARAMS) { \
        flash_prefill_body<HD, CACHE>(FLASH_PREFILL_ARGS);                                   \
    }

FLASH_PREFILL_KERNEL(flash_prefill_32, 32, F16Cache)
FLASH_PREFILL_KERNEL(flash_prefill_64, 64, F16Cache)
FLASH_PREFILL_KERNEL(flash_prefill_128, 128, F16Cache)
FLASH_PREFILL_KERNEL(flash_prefill_fp8_32, 32, Fp8Cache)
FLASH_PREFILL_KERNEL(flash_prefill_fp8_64, 64, Fp8Cache)
FLASH_PREFILL_KERNEL(flash_prefill_fp8_128, 128, Fp8Cache)
