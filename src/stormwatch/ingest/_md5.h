/* MD5 for the event ids: the scalar RFC 1321 code and the multi-buffer dispatch (_md5x.h).
 * Part of the _netfilter module: included once by _netfilter.c. */

/* ---- MD5 (RFC 1321) ------------------------------------------------------------------------- */

static uint32_t md5_k[64];
static const int md5_r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                              5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                              4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                              6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void md5_init_table(void) {
    /* RFC 1321 §3.4: T[i] is the integer part of 4294967296 * abs(sin(i)), i = 1..64. */
    for (int i = 0; i < 64; i++) md5_k[i] = (uint32_t)(fabs(sin((double)(i + 1))) * 4294967296.0);
}

#define ROTL(x, c) (((x) << (c)) | ((x) >> (32 - (c))))

static inline uint32_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4); /* little-endian hosts only: checked at import */
    return v;
}

static void md5_block(uint32_t h[4], const uint8_t *blk) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++) m[i] = load32(blk + 4 * i);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], f, t;
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        f = d ^ (b & (c ^ d));
        t = d; d = c; c = b;
        b = b + ROTL(a + f + md5_k[i] + m[i], md5_r[i]);
        a = t;
    }
#pragma GCC unroll 16
    for (int i = 16; i < 32; i++) {
        f = c ^ (d & (b ^ c));
        t = d; d = c; c = b;
        b = b + ROTL(a + f + md5_k[i] + m[(5 * i + 1) & 15], md5_r[i]);
        a = t;
    }
#pragma GCC unroll 16
    for (int i = 32; i < 48; i++) {
        f = b ^ c ^ d;
        t = d; d = c; c = b;
        b = b + ROTL(a + f + md5_k[i] + m[(3 * i + 5) & 15], md5_r[i]);
        a = t;
    }
#pragma GCC unroll 16
    for (int i = 48; i < 64; i++) {
        f = c ^ (b | ~d);
        t = d; d = c; c = b;
        b = b + ROTL(a + f + md5_k[i] + m[(7 * i) & 15], md5_r[i]);
        a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
}

/* MD5 of pre[0:npre] + msg[0:n] as DuckDB's md5_number reads it: the digest as a little-endian
 * 128-bit number, returned as its low and high 64 bits. */
static void md5_two(const uint8_t *pre, size_t npre, const uint8_t *msg, size_t n, uint64_t *lo,
                    uint64_t *hi) {
    uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    uint8_t blk[64];
    size_t total = npre + n, fill = 0;
    const uint8_t *parts[2] = {pre, msg};
    size_t lens[2] = {npre, n};
    for (int p = 0; p < 2; p++) {
        const uint8_t *s = parts[p];
        size_t left = lens[p];
        if (fill) { /* top up a partial block first */
            size_t take = 64 - fill < left ? 64 - fill : left;
            memcpy(blk + fill, s, take);
            fill += take; s += take; left -= take;
            if (fill == 64) { md5_block(h, blk); fill = 0; }
        }
        while (left >= 64) { md5_block(h, s); s += 64; left -= 64; }
        if (left) { memcpy(blk, s, left); fill = left; }
    }
    blk[fill++] = 0x80;
    if (fill > 56) {
        memset(blk + fill, 0, 64 - fill);
        md5_block(h, blk);
        fill = 0;
    }
    memset(blk + fill, 0, 56 - fill);
    uint64_t bits = (uint64_t)total * 8;
    memcpy(blk + 56, &bits, 8);
    md5_block(h, blk);
    *lo = (uint64_t)h[0] | ((uint64_t)h[1] << 32);
    *hi = (uint64_t)h[2] | ((uint64_t)h[3] << 32);
}

/* Multi-buffer MD5 for 8 lanes (AVX2) and 16 lanes (AVX-512), chosen at import by the CPU. */
#define MD5X_BLOCKS 8
#if (defined(__x86_64__) || defined(__i386__)) && !defined(MD5X_NO_SIMD) /* -DMD5X_NO_SIMD: the generic build */
#define MD5X_SIMD 1 /* other CPUs hash one line at a time */
#define MD5X_NAME md5_x8
#define MD5X_LANES 8
#define MD5X_TARGET "avx2"
#include "_md5x.h"
#undef MD5X_NAME
#undef MD5X_LANES
#undef MD5X_TARGET
#define MD5X_NAME md5_x16
#define MD5X_LANES 16
#define MD5X_TARGET "avx512f"
#include "_md5x.h"
#undef MD5X_NAME
#undef MD5X_LANES
#undef MD5X_TARGET
#endif

/* The lanes this CPU supports: 16 (AVX-512), 8 (AVX2) or 1. */
static int md5_cpu_lanes(void) {
#ifdef MD5X_SIMD
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 16 : __builtin_cpu_supports("avx2") ? 8 : 1;
#else
    return 1;
#endif
}

static int md5_lanes = 1; /* 16, 8 or 1 (scalar) */

/* Hash n <= 16 messages prefix + msg[i] into lo[i], hi[i] with `lanes` lanes. */
static void md5_many(int lanes, const uint8_t *pfx, size_t npfx, const uint8_t *const *msg, const size_t *len,
                     int n, uint64_t *lo, uint64_t *hi) {
#ifdef MD5X_SIMD
    const uint8_t *vm[16];
    size_t vl[16];
    int vi[16], nv = 0;
    for (int i = 0; i < n; i++) {
        if (lanes > 1 && npfx + len[i] + 9 <= MD5X_BLOCKS * 64) {
            vm[nv] = msg[i];
            vl[nv] = len[i];
            vi[nv++] = i;
        } else {
            md5_two(pfx, npfx, msg[i], len[i], &lo[i], &hi[i]);
        }
    }
    uint64_t l2[16], h2[16];
    for (int at = 0; at < nv; at += lanes) {
        int k = nv - at < lanes ? nv - at : lanes;
        if (lanes == 16) md5_x16(pfx, npfx, vm + at, vl + at, k, l2 + at, h2 + at);
        else md5_x8(pfx, npfx, vm + at, vl + at, k, l2 + at, h2 + at);
    }
    for (int j = 0; j < nv; j++) {
        lo[vi[j]] = l2[j];
        hi[vi[j]] = h2[j];
    }
#else
    (void)lanes;
    for (int i = 0; i < n; i++) md5_two(pfx, npfx, msg[i], len[i], &lo[i], &hi[i]);
#endif
}
