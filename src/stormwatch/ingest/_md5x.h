/* Multi-buffer MD5: MD5X_LANES independent messages hashed side by side in the lanes of one
 * vector, one MD5 step for all of them at a time (the round functions are lane-wise; the message
 * words are gathered per lane). Included by _netfilter.c once per vector width with MD5X_NAME,
 * MD5X_LANES and MD5X_TARGET defined; the function is compiled for that instruction set only and
 * called only when the CPU has it.
 *
 * Each message is prefix + msg[i]; lanes past n are idle. Messages must fit MD5X_BLOCKS blocks
 * with their padding (the caller hashes longer ones with the scalar code). */

#define MD5X_V__(name) name##_v
#define MD5X_V_(name) MD5X_V__(name)
#define MD5X_V MD5X_V_(MD5X_NAME)

typedef uint32_t MD5X_V __attribute__((vector_size(4 * MD5X_LANES)));

__attribute__((target(MD5X_TARGET))) static void MD5X_NAME(const uint8_t *pfx, size_t npfx,
                                                          const uint8_t *const *msg, const size_t *len, int n,
                                                          uint64_t *lo, uint64_t *hi) {
    uint8_t buf[MD5X_LANES][MD5X_BLOCKS * 64];
    uint32_t nb[MD5X_LANES];
    uint32_t maxb = 0;
    for (int l = 0; l < MD5X_LANES; l++) {
        if (l >= n) {
            nb[l] = 0;
            continue;
        }
        size_t total = npfx + len[l];
        uint32_t blocks = (uint32_t)((total + 8) / 64 + 1);
        memcpy(buf[l], pfx, npfx);
        memcpy(buf[l] + npfx, msg[l], len[l]);
        buf[l][total] = 0x80;
        memset(buf[l] + total + 1, 0, blocks * 64 - total - 9);
        uint64_t bits = (uint64_t)total * 8;
        memcpy(buf[l] + blocks * 64 - 8, &bits, 8);
        nb[l] = blocks;
        if (blocks > maxb) maxb = blocks;
    }
    MD5X_V nbv, a0, b0, c0, d0;
    for (int l = 0; l < MD5X_LANES; l++) {
        nbv[l] = nb[l];
        a0[l] = 0x67452301u;
        b0[l] = 0xefcdab89u;
        c0[l] = 0x98badcfeu;
        d0[l] = 0x10325476u;
    }
    for (uint32_t blk = 0; blk < maxb; blk++) {
        /* the block's sixteen words of every lane, transposed through memory */
        uint32_t mw[16][MD5X_LANES] __attribute__((aligned(64)));
        for (int l = 0; l < MD5X_LANES; l++) {
            const uint8_t *src = buf[l] + (blk < nb[l] ? blk : 0) * 64;
            for (int i = 0; i < 16; i++) mw[i][l] = load32(src + 4 * i);
        }
        MD5X_V m[16];
        memcpy(m, mw, sizeof m);
        MD5X_V a = a0, b = b0, c = c0, d = d0, f, t;
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            f = d ^ (b & (c ^ d));
            t = d; d = c; c = b;
            f = a + f + md5_k[i] + m[i];
            b = b + ((f << md5_r[i]) | (f >> (32 - md5_r[i])));
            a = t;
        }
#pragma GCC unroll 16
        for (int i = 16; i < 32; i++) {
            f = c ^ (d & (b ^ c));
            t = d; d = c; c = b;
            f = a + f + md5_k[i] + m[(5 * i + 1) & 15];
            b = b + ((f << md5_r[i]) | (f >> (32 - md5_r[i])));
            a = t;
        }
#pragma GCC unroll 16
        for (int i = 32; i < 48; i++) {
            f = b ^ c ^ d;
            t = d; d = c; c = b;
            f = a + f + md5_k[i] + m[(3 * i + 5) & 15];
            b = b + ((f << md5_r[i]) | (f >> (32 - md5_r[i])));
            a = t;
        }
#pragma GCC unroll 16
        for (int i = 48; i < 64; i++) {
            f = c ^ (b | ~d);
            t = d; d = c; c = b;
            f = a + f + md5_k[i] + m[(7 * i) & 15];
            b = b + ((f << md5_r[i]) | (f >> (32 - md5_r[i])));
            a = t;
        }
        MD5X_V blkv = nbv - nbv + blk;
        MD5X_V live = (MD5X_V)(blkv < nbv); /* all ones in the lanes still hashing */
        a0 += a & live;
        b0 += b & live;
        c0 += c & live;
        d0 += d & live;
    }
    for (int l = 0; l < n; l++) {
        lo[l] = (uint64_t)a0[l] | ((uint64_t)b0[l] << 32);
        hi[l] = (uint64_t)c0[l] | ((uint64_t)d0[l] << 32);
    }
}

#undef MD5X_V
#undef MD5X_V_
#undef MD5X_V__
