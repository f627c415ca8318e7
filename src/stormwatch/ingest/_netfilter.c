/* The compiled fast path of the iptables reader: netfilter LOG lines in syslog text -> columns.
 *
 * scan() walks a block of whole lines once and, for every line it can decide with certainty,
 * writes the fw.connection columns (time, addresses, ports, protocol, TCP flags, verdict, the
 * JSON data text, where the line is) and the event id: the 128-bit MD5 of
 * "fw.connection\0<sensor>\0<line>", exactly what the store's md5_number() computes. Every line it
 * cannot decide with certainty (another framing, a malformed packet part, non-ASCII text, a
 * value outside the canonical spelling) is listed for the reference parser in Python
 * (stormwatch.ingest.iptables.parse_syslog_line), so the fast path only has to be right about the
 * lines it accepts; tests hold it to the reference parser on those.
 *
 * The grammar accepted is the kernel's own layout (net/netfilter/nf_log_syslog.c) after a BSD,
 * ISO 8601 or epoch syslog header and the "kernel:" tag, or an RFC 5424 header of APP-NAME kernel
 * (_syslog_time.h); see docs/ingest.md. Event ids: _md5.h. Nothing here
 * allocates Python objects while the GIL is released: the caller hands in writable buffers sized
 * for the block (stormwatch.ingest.netfilter_fast).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_md5.h"

/* ---- small parsers ------------------------------------------------------------------------ */

#define MAX_TOKENS 48
#define MAX_LINE 8192

typedef struct { const char *p; int n; } tok_t;

static inline __attribute__((always_inline)) int starts(tok_t t, const char *lit, int n) {
    return t.n >= n && __builtin_memcmp(t.p, lit, (size_t)n) == 0;
}
static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A canonical unsigned decimal ("0" or [1-9][0-9]{0,8}) -> value, else -1. */
static long canon_num(const char *p, int n) {
    if (n < 1 || n > 9 || (n > 1 && p[0] == '0')) return -1;
    long v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i])) return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* Dotted-quad IPv4 without leading zeros, each part <= 255 (what Python's ipaddress accepts). */
static int v4_ok(const char *p, int n) {
    int parts = 0, i = 0;
    while (parts < 4) {
        int j = i, v = 0;
        while (j < n && is_digit(p[j]) && j - i < 4) { v = v * 10 + (p[j] - '0'); j++; }
        int len = j - i;
        if (len == 0 || len > 3 || v > 255 || (len > 1 && p[i] == '0')) return 0;
        parts++;
        if (parts < 4) {
            if (j >= n || p[j] != '.') return 0;
            i = j + 1;
        } else if (j != n) return 0;
    }
    return 1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The kernel's %pI6 (eight groups of four lower-case hex digits) -> RFC 5952 text as Python's
 * ipaddress writes it (leading zeros dropped, the leftmost longest run of two or more zero groups
 * as "::"). Returns the length written to out (at most 39), 0 if not in that form or if the
 * address is IPv4-mapped (whose text Python versions spell differently). */
static int v6_canon(const char *p, int n, char *out) {
    if (n != 39) return 0;
    unsigned g[8];
    for (int k = 0; k < 8; k++) {
        const char *q = p + 5 * k;
        unsigned v = 0;
        for (int j = 0; j < 4; j++) {
            int h = hexval(q[j]);
            if (h < 0) return 0;
            v = v * 16 + (unsigned)h;
        }
        if (k < 7 && q[4] != ':') return 0;
        g[k] = v;
    }
    if (!g[0] && !g[1] && !g[2] && !g[3] && !g[4] && g[5] == 0xffff) return 0;
    int best = -1, best_len = 0;
    for (int k = 0; k < 8;) {
        if (g[k]) { k++; continue; }
        int j = k;
        while (j < 8 && !g[j]) j++;
        if (j - k > best_len) { best = k; best_len = j - k; }
        k = j;
    }
    if (best_len < 2) best = -1;
    static const char hx[] = "0123456789abcdef";
    int o = 0;
    for (int k = 0; k < 8; k++) {
        if (k == best) {
            out[o++] = ':';
            if (k == 0) out[o++] = ':';
            k += best_len - 1;
            continue;
        }
        unsigned v = g[k];
        int started = 0;
        for (int s = 12; s >= 0; s -= 4) {
            unsigned d = (v >> s) & 15;
            if (d || started || s == 0) { out[o++] = hx[d]; started = 1; }
        }
        if (k < 7) out[o++] = ':';
    }
    return o;
}

#include "_syslog_time.h"

/* ---- one line ------------------------------------------------------------------------------ */

enum { ST_EVENT = 0, ST_OTHER = 1, ST_SLOW = 2 };
enum { P_TCP = 0, P_UDP = 1, P_ICMP = 2, P_ICMP6 = 3 };
enum { A_ACCEPT = 0, A_DROP = 1, A_REJECT = 2, A_LOG = 3 };
#define FLAGS_NULL 256

typedef struct {
    int64_t ts;
    char src[40], dst[40];
    int nsrc, ndst;
    int32_t sport, dport;
    uint8_t proto, action;
    uint16_t flags;
    const char *rule, *ifin, *ifout;
    int nrule, nifin, nifout;
    long len, ttl, itype, icode;
} row_t;

static int contains_ci(const char *p, int n, const char *w) {
    int m = (int)strlen(w);
    for (int i = 0; i + m <= n; i++) {
        int k = 0;
        while (k < m) {
            char c = p[i + k];
            if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
            if (c != w[k]) break;
            k++;
        }
        if (k == m) return 1;
    }
    return 0;
}

/* iptables.rule_action: the first verdict group one of whose words the prefix contains. */
static uint8_t rule_action(const char *p, int n) {
    if (contains_ci(p, n, "reject")) return A_REJECT;
    if (contains_ci(p, n, "drop") || contains_ci(p, n, "block") || contains_ci(p, n, "deny") ||
        contains_ci(p, n, "denied"))
        return A_DROP;
    if (contains_ci(p, n, "accept") || contains_ci(p, n, "allow") || contains_ci(p, n, "permit")) return A_ACCEPT;
    return A_LOG;
}

static int json_safe(const char *p, int n) {
    for (int i = 0; i < n; i++)
        if (p[i] == '"' || p[i] == '\\') return 0;
    return 1;
}

static int is_mid(tok_t t) {
    return t.n == 2 && (memcmp(t.p, "CE", 2) == 0 || memcmp(t.p, "DF", 2) == 0 || memcmp(t.p, "MF", 2) == 0);
}

static int flag_bit(tok_t t) {
    /* bit 7..0 = C E U A P R S F (FLAG_ORDER) */
    static const uint32_t words[8] = {PACK3('C', 'W', 'R'), PACK3('E', 'C', 'E'), PACK3('U', 'R', 'G'),
                                      PACK3('A', 'C', 'K'), PACK3('P', 'S', 'H'), PACK3('R', 'S', 'T'),
                                      PACK3('S', 'Y', 'N'), PACK3('F', 'I', 'N')};
    if (t.n != 3) return 0;
    uint32_t k = PACK3(t.p[0], t.p[1], t.p[2]);
    for (int i = 0; i < 8; i++)
        if (words[i] == k) return 1 << (7 - i);
    return 0;
}

/* The first "IN=" in s[from:n]: each '=' checked for the "IN" before it. */
static const char *find_in(const char *s, int from, int n) {
    const char *p = s + from, *end = s + n;
    while (p < end && (p = memchr(p, '=', (size_t)(end - p))) != NULL) {
        if (p - s >= from + 2 && p[-2] == 'I' && p[-1] == 'N') return p - 2;
        p++;
    }
    return NULL;
}

#define RULE_CACHE 8

typedef struct {
    clock_t_ clock;
    /* the verdicts of the last rule prefixes seen (a log holds few prefixes), round robin */
    char rule[RULE_CACHE][48];
    int nrule[RULE_CACHE];
    uint8_t action[RULE_CACHE];
    int next;
} ctx_t;

static uint8_t cached_action(ctx_t *cx, const char *rule, int n) {
    for (int i = 0; i < RULE_CACHE; i++)
        if (cx->nrule[i] == n && memcmp(cx->rule[i], rule, (size_t)n) == 0) return cx->action[i];
    uint8_t a = rule_action(rule, n);
    if (n <= (int)sizeof cx->rule[0]) {
        int i = cx->next;
        cx->next = (i + 1) % RULE_CACHE;
        memcpy(cx->rule[i], rule, (size_t)n);
        cx->nrule[i] = n;
        cx->action[i] = a;
    }
    return a;
}

/* Decide one non-blank line s[0:n] of printable ASCII: ST_OTHER (no "IN="), ST_SLOW, or
 * ST_EVENT with *r filled. */
static int parse_line(const char *s, int n, ctx_t *cx, row_t *r) {
    int tagged;
    int msg = header(s, n, &cx->clock, &r->ts, &tagged);
    if (msg < 0) return memmem(s, (size_t)n, "IN=", 3) ? ST_SLOW : ST_OTHER;
    /* a header that parses holds no '=', so the line's first "IN=" is in the message */
    const char *in = find_in(s, msg, n);
    if (!in) return ST_OTHER;
    int i = msg;
    if (msg + 7 <= n && memcmp(s + msg, "kernel:", 7) == 0) {
        i += 7;
        if (i < n && s[i] == ' ') i++;
    } else if (tagged) {
        return ST_SLOW; /* a BSD, ISO or epoch line without the tag: not the kernel's, maybe */
    }
    if (i < n && s[i] == '[') { /* the uptime stamp, if it is one: [ {0,9}\d{1,12}\.\d{1,9}\] ?  */
        int j = i + 1, sp = 0, d1 = 0, d2 = 0;
        while (j < n && s[j] == ' ' && sp < 9) { j++; sp++; }
        while (j < n && is_digit(s[j]) && d1 < 12) { j++; d1++; }
        if (d1 > 0 && j < n && s[j] == '.') {
            j++;
            while (j < n && is_digit(s[j]) && d2 < 9) { j++; d2++; }
            if (d2 > 0 && j < n && s[j] == ']') {
                i = j + 1;
                if (i < n && s[i] == ' ') i++;
            }
        }
    }
    int pin = (int)(in - s);
    if (pin < i) return ST_SLOW;
    int a = i, b = pin;
    while (a < b && s[a] == ' ') a++;
    while (b > a && s[b - 1] == ' ') b--;
    if (!json_safe(s + a, b - a)) return ST_SLOW;
    r->rule = s + a;
    r->nrule = b - a;

    /* the packet part split at single spaces, as Python's str.split(" "): the spaces are found
     * eight bytes at a time (exact zero-byte test of x ^ "        ") */
    tok_t t[MAX_TOKENS];
    int nt = 0, k0 = pin, q = pin;
    const uint64_t lows = 0x7f7f7f7f7f7f7f7fULL, spaces = 0x2020202020202020ULL;
    for (; q + 8 <= n && nt < MAX_TOKENS; q += 8) {
        uint64_t x;
        memcpy(&x, s + q, 8);
        x ^= spaces;
        uint64_t hit = ~(((x & lows) + lows) | x) & ~lows;
        while (hit && nt < MAX_TOKENS) {
            int at = q + (__builtin_ctzll(hit) >> 3);
            t[nt].p = s + k0;
            t[nt].n = at - k0;
            nt++;
            k0 = at + 1;
            hit &= hit - 1;
        }
    }
    for (; q <= n && nt < MAX_TOKENS; q++) {
        if (q == n || s[q] == ' ') {
            t[nt].p = s + k0;
            t[nt].n = q - k0;
            nt++;
            k0 = q + 1;
        }
    }
#define T(x) ((x) < nt ? t[x] : (tok_t){"", 0})
    /* IN=<if> OUT=<if>: no '=' in the input interface */
    if (!starts(T(1), "OUT=", 4)) return ST_SLOW;
    r->ifin = t[0].p + 3;
    r->nifin = t[0].n - 3;
    if (memchr(r->ifin, '=', (size_t)r->nifin)) return ST_SLOW;
    r->ifout = t[1].p + 4;
    r->nifout = t[1].n - 4;
    if (!json_safe(r->ifin, r->nifin) || !json_safe(r->ifout, r->nifout)) return ST_SLOW;
    int sI = starts(T(2), "MAC=", 4) ? 3 : 2;
    tok_t tsrc = T(sI), tdst = T(sI + 1), tlen = T(sI + 2);
    if (!starts(tsrc, "SRC=", 4) || !starts(tdst, "DST=", 4) || !starts(tlen, "LEN=", 4)) return ST_SLOW;
    r->len = canon_num(tlen.p + 4, tlen.n - 4);
    if (r->len < 0) return ST_SLOW;
    int k;
    if (starts(T(sI + 3), "TC=", 3)) { /* IPv6 */
        if (!starts(T(sI + 4), "HOPLIMIT=", 9) || !starts(T(sI + 5), "FLOWLBL=", 8)) return ST_SLOW;
        r->ttl = canon_num(t[sI + 4].p + 9, t[sI + 4].n - 9);
        k = sI + 6;
        r->nsrc = v6_canon(tsrc.p + 4, tsrc.n - 4, r->src);
        r->ndst = v6_canon(tdst.p + 4, tdst.n - 4, r->dst);
        if (!r->nsrc || !r->ndst) return ST_SLOW;
    } else {
        if (!starts(T(sI + 3), "TOS=", 4) || !starts(T(sI + 4), "PREC=", 5) || !starts(T(sI + 5), "TTL=", 4) ||
            !starts(T(sI + 6), "ID=", 3))
            return ST_SLOW;
        r->ttl = canon_num(t[sI + 5].p + 4, t[sI + 5].n - 4);
        k = sI + 7;
        if (!starts(T(k), "PROTO=", 6) && is_mid(T(k))) {
            k++;
            if (!starts(T(k), "PROTO=", 6) && is_mid(T(k))) k++;
        }
        if (!v4_ok(tsrc.p + 4, tsrc.n - 4) || !v4_ok(tdst.p + 4, tdst.n - 4)) return ST_SLOW;
        r->nsrc = tsrc.n - 4;
        memcpy(r->src, tsrc.p + 4, (size_t)r->nsrc);
        r->ndst = tdst.n - 4;
        memcpy(r->dst, tdst.p + 4, (size_t)r->ndst);
    }
    if (r->ttl < 0 || !starts(T(k), "PROTO=", 6)) return ST_SLOW;
    tok_t pr = T(k), x1 = T(k + 1), x2 = T(k + 2);
    const char *pn = pr.p + 6;
    int pl = pr.n - 6;
    r->flags = FLAGS_NULL;
    r->sport = r->dport = -1;
    if ((pl == 3 && memcmp(pn, "TCP", 3) == 0) || (pl == 3 && memcmp(pn, "UDP", 3) == 0)) {
        r->proto = pn[0] == 'T' ? P_TCP : P_UDP;
        if (!starts(x1, "SPT=", 4) || !starts(x2, "DPT=", 4)) return ST_SLOW;
        long p1 = canon_num(x1.p + 4, x1.n - 4), p2 = canon_num(x2.p + 4, x2.n - 4);
        if (p1 < 0 || p2 < 0 || p1 > 65535 || p2 > 65535) return ST_SLOW;
        r->sport = (int32_t)p1;
        r->dport = (int32_t)p2;
        if (r->proto == P_TCP) {
            int w = k + 3;
            if (starts(T(k + 3), "SEQ=", 4)) {
                if (!starts(T(k + 4), "ACK=", 4)) return ST_SLOW;
                w = k + 5;
            }
            if (!starts(T(w), "WINDOW=", 7) || !starts(T(w + 1), "RES=0x", 6) || T(w + 1).n != 8) return ST_SLOW;
            int u = -1;
            for (int j = w + 2; j <= w + 10 && j < nt; j++)
                if (starts(t[j], "URGP=", 5)) { u = j; break; }
            if (u < 0) return ST_SLOW;
            int bits = 0;
            for (int j = w + 2; j < u; j++) bits |= flag_bit(t[j]);
            r->flags = (uint16_t)bits;
        }
    } else if ((pl == 4 && memcmp(pn, "ICMP", 4) == 0) || (pl == 6 && memcmp(pn, "ICMPv6", 6) == 0)) {
        r->proto = pl == 4 ? P_ICMP : P_ICMP6;
        if (!starts(x1, "TYPE=", 5) || !starts(x2, "CODE=", 5)) return ST_SLOW;
        r->itype = canon_num(x1.p + 5, x1.n - 5);
        r->icode = canon_num(x2.p + 5, x2.n - 5);
        if (r->itype < 0 || r->icode < 0) return ST_SLOW;
    } else {
        return ST_SLOW;
    }
#undef T
    r->action = cached_action(cx, r->rule, r->nrule);
    return ST_EVENT;
}

/* ---- the block ---------------------------------------------------------------------------- */

typedef struct {
    Py_buffer b[18];
    int nb;
} bufs_t;

static void release_all(bufs_t *bs) {
    for (int i = 0; i < bs->nb; i++) PyBuffer_Release(&bs->b[i]);
    bs->nb = 0;
}

static int put_num(char *o, long v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = 0; i < n; i++) o[i] = tmp[n - 1 - i];
    return n;
}

#define LIT(o, s) (memcpy((o), (s), sizeof(s) - 1), (int)(sizeof(s) - 1))

/* ,"key":value (a number) or ,"key":"text" (JSON-safe text, checked by the parser) at o. */
static int put_field(char *o, const char *key, long num, const char *text, int ntext) {
    int w = 0;
    o[w++] = ',';
    o[w++] = '"';
    size_t nk = strlen(key);
    memcpy(o + w, key, nk);
    w += (int)nk;
    o[w++] = '"';
    o[w++] = ':';
    if (!text) return w + put_num(o + w, num);
    o[w++] = '"';
    memcpy(o + w, text, (size_t)ntext);
    w += ntext;
    o[w++] = '"';
    return w;
}

/* The data JSON as EventBatchBuilder writes it: keys sorted, no nulls, no spaces. */
static int put_json(char *o, const row_t *r) {
    int w = LIT(o, "{\"format\":\"iptables\"");
    if (r->proto == P_ICMP || r->proto == P_ICMP6) {
        w += put_field(o + w, "icmp_code", r->icode, NULL, 0);
        w += put_field(o + w, "icmp_type", r->itype, NULL, 0);
    }
    if (r->nifin) w += put_field(o + w, "in_iface", 0, r->ifin, r->nifin);
    w += put_field(o + w, "length", r->len, NULL, 0);
    if (r->nifout) w += put_field(o + w, "out_iface", 0, r->ifout, r->nifout);
    if (r->nrule) w += put_field(o + w, "rule", 0, r->rule, r->nrule);
    w += put_field(o + w, "ttl", r->ttl, NULL, 0);
    o[w++] = '}';
    return w;
}

/* True when p[0:n] holds only printable ASCII (0x20..0x7e), eight bytes at a time. */
static int printable(const char *p, size_t n) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        /* a byte < 0x20, or >= 0x7f (0x7f + 1 and anything >= 0x80 set the high bit) */
        if (((x - 0x20 * ones) & ~x & high) || ((x + ones) | x) & high) return 0;
    }
    for (; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e) return 0;
    return 1;
}

static const char *scan_doc =
    "scan(block, start, row0, prefix, year, latest, *outputs) -> (end, lines, read, other, rows, slow)\n\n"
    "Parse the lines of block[start:] (whole lines: block ends at a line end or the end of the input)\n"
    "into the outputs from row row0 on, until they are full; end is where the next call starts and rows\n"
    "the rows filled now (row0 included); slow lines are numbered from start. prefix is\n"
    "b'fw.connection\\0<sensor>\\0'; year the year of BSD dates; latest the epoch microseconds after\n"
    "which a BSD date is last year's, or None. outputs are writable buffers (see\n"
    "stormwatch.ingest.netfilter_fast): rows are limited by the ts buffer, slow lines by theirs.";

#define N_OUT 17

/* Output buffers, in order:
 *  0 ts int64, 1 src_port int32 (-1 null), 2 dst_port int32, 3 proto uint8, 4 flags uint16 (256 null),
 *  5 action uint8, 6 id_lo uint64, 7 id_hi uint64,
 *  8 src offsets int32 (rows+1), 9 src bytes, 10 dst offsets, 11 dst bytes,
 *  12 data offsets, 13 data bytes, 14 (start, end) int64 pairs of each event's line in the block,
 *  15 slow line numbers int64 (1-based from start), 16 slow (start, end) int64 pairs. */
static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer blk, pre;
    Py_ssize_t start, row0;
    int year;
    PyObject *latest_obj, *outs[N_OUT];
    if (!PyArg_ParseTuple(args, "y*nny*iOOOOOOOOOOOOOOOOOO", &blk, &start, &row0, &pre, &year, &latest_obj, &outs[0],
                          &outs[1], &outs[2], &outs[3], &outs[4], &outs[5], &outs[6], &outs[7], &outs[8], &outs[9],
                          &outs[10], &outs[11], &outs[12], &outs[13], &outs[14], &outs[15], &outs[16]))
        return NULL;
    bufs_t bs = {.nb = 0};
    ctx_t cx = {.clock = {.year = year}, .next = 0}; /* the BSD cache starts empty (NUL bytes match no stamp) */
    for (int i = 0; i < RULE_CACHE; i++) cx.nrule[i] = -1;
    if (start < 0 || start > blk.len) {
        PyErr_SetString(PyExc_ValueError, "start outside the block");
        goto fail;
    }
    if (row0 < 0) {
        PyErr_SetString(PyExc_ValueError, "row0 below 0");
        goto fail;
    }
    if (latest_obj != Py_None) {
        cx.clock.has_latest = 1;
        cx.clock.latest = PyLong_AsLongLong(latest_obj);
        if (cx.clock.latest == -1 && PyErr_Occurred()) goto fail;
    }
    for (int i = 0; i < N_OUT; i++) {
        if (PyObject_GetBuffer(outs[i], &bs.b[i], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) goto fail;
        bs.nb++;
    }
    const char *s = blk.buf;
    Py_ssize_t n = blk.len;
    Py_ssize_t cap = bs.b[0].len / 8, cap_slow = bs.b[15].len / 8;
    Py_ssize_t cap_src = bs.b[9].len, cap_dst = bs.b[11].len, cap_data = bs.b[13].len;
    if (bs.b[1].len / 4 < cap || bs.b[2].len / 4 < cap || bs.b[3].len < cap || bs.b[4].len / 2 < cap ||
        bs.b[5].len < cap || bs.b[6].len / 8 < cap || bs.b[7].len / 8 < cap || bs.b[8].len / 4 <= cap ||
        bs.b[10].len / 4 <= cap || bs.b[12].len / 4 <= cap || bs.b[14].len / 16 < cap || bs.b[16].len / 16 < cap_slow ||
        row0 >= cap || cap_src < 40 || cap_dst < 40 || cap_data < MAX_LINE + 200 || cap_slow < 1) {
        PyErr_SetString(PyExc_ValueError, "output buffers of unequal or too small sizes");
        goto fail;
    }
    int64_t *o_ts = bs.b[0].buf;
    int32_t *o_sp = bs.b[1].buf, *o_dp = bs.b[2].buf;
    uint8_t *o_pr = bs.b[3].buf, *o_ac = bs.b[5].buf;
    uint16_t *o_fl = bs.b[4].buf;
    uint64_t *o_lo = bs.b[6].buf, *o_hi = bs.b[7].buf;
    int32_t *off_src = bs.b[8].buf, *off_dst = bs.b[10].buf, *off_data = bs.b[12].buf;
    char *d_src = bs.b[9].buf, *d_dst = bs.b[11].buf, *d_data = bs.b[13].buf;
    int64_t *o_line = bs.b[14].buf, *o_slow = bs.b[15].buf, *o_span = bs.b[16].buf;
    long long lines = 0, nread = 0, other = 0, ev = row0, slow = 0;
    const uint8_t *pfx = pre.buf;
    size_t npfx = (size_t)pre.len;
    Py_ssize_t pos = start;
    int lanes = md5_lanes;

    Py_BEGIN_ALLOW_THREADS
    if (row0 == 0) off_src[0] = off_dst[0] = off_data[0] = 0;
    row_t r;
    const uint8_t *hm[16];
    size_t hl[16];
    int hn = 0;
    long long hrow = 0; /* the row of hm[0] */
    while (pos < n) {
        /* the line: up to \n, \r\n or a lone \r */
        const char *nl = memchr(s + pos, '\n', (size_t)(n - pos));
        Py_ssize_t e = nl ? nl - s : n, next = nl ? e + 1 : n;
        int clean = printable(s + pos, (size_t)(e - pos));
        if (!clean) {
            const char *cr = memchr(s + pos, '\r', (size_t)(e - pos));
            if (cr && cr + 1 < s + e) { /* a lone \r ends this line */
                e = cr - s;
                next = e + 1;
            } else if (cr) { /* \r\n */
                e--;
            }
            clean = printable(s + pos, (size_t)(e - pos));
        }
        /* room for one more line of either kind, else stop before it */
        if (ev >= cap || slow >= cap_slow || off_src[ev] + 40 > cap_src || off_dst[ev] + 40 > cap_dst ||
            off_data[ev] + ((e - pos) > MAX_LINE ? MAX_LINE : (e - pos)) + 200 > cap_data)
            break; /* (empty buffers always have room: checked below) */
        lines++;
        const char *ln = s + pos;
        int len = (int)((e - pos) > MAX_LINE ? MAX_LINE + 1 : (e - pos));
        int blank = 1;
        for (int i = 0; i < len; i++)
            if (ln[i] != ' ' && ln[i] != '\t') { blank = 0; break; }
        if (!blank) {
            nread++;
            int st;
            if (!clean || len > MAX_LINE)
                st = memmem(ln, (size_t)(e - pos), "IN=", 3) ? ST_SLOW : ST_OTHER;
            else
                st = parse_line(ln, len, &cx, &r);
            if (st == ST_OTHER) {
                other++;
            } else if (st == ST_SLOW) {
                o_slow[slow] = lines;
                o_span[2 * slow] = pos;
                o_span[2 * slow + 1] = e;
                slow++;
            } else {
                o_ts[ev] = r.ts;
                o_sp[ev] = r.sport;
                o_dp[ev] = r.dport;
                o_pr[ev] = r.proto;
                o_fl[ev] = r.flags;
                o_ac[ev] = r.action;
                if (hn == 0) hrow = ev;
                hm[hn] = (const uint8_t *)ln;
                hl[hn++] = (size_t)len;
                if (hn == 16) {
                    md5_many(lanes, pfx, npfx, hm, hl, hn, o_lo + hrow, o_hi + hrow);
                    hn = 0;
                }
                memcpy(d_src + off_src[ev], r.src, (size_t)r.nsrc);
                off_src[ev + 1] = off_src[ev] + r.nsrc;
                memcpy(d_dst + off_dst[ev], r.dst, (size_t)r.ndst);
                off_dst[ev + 1] = off_dst[ev] + r.ndst;
                off_data[ev + 1] = off_data[ev] + put_json(d_data + off_data[ev], &r);
                o_line[2 * ev] = pos;
                o_line[2 * ev + 1] = pos + len;
                ev++;
            }
        }
        pos = next;
    }
    if (hn) md5_many(lanes, pfx, npfx, hm, hl, hn, o_lo + hrow, o_hi + hrow);
    Py_END_ALLOW_THREADS

    release_all(&bs);
    PyBuffer_Release(&blk);
    PyBuffer_Release(&pre);
    return Py_BuildValue("(nLLLLL)", pos, lines, nread, other, ev, slow);
fail:
    release_all(&bs);
    PyBuffer_Release(&blk);
    PyBuffer_Release(&pre);
    return NULL;
}

/* md5_many(prefix, messages, lanes) -> [(lo, hi), ...] with the given implementation (1 scalar,
 * 8 AVX2, 16 AVX-512): for tests, which hold every width to hashlib. */
static PyObject *md5_list(PyObject *self, PyObject *args) {
    Py_buffer pre;
    PyObject *seq;
    int lanes;
    if (!PyArg_ParseTuple(args, "y*Oi", &pre, &seq, &lanes)) return NULL;
    PyObject *out = NULL, *fast = PySequence_Fast(seq, "messages must be a sequence of bytes");
    if (!fast) goto done;
    if (!(lanes == 1 || (lanes == 8 && md5_cpu_lanes() >= 8) || (lanes == 16 && md5_cpu_lanes() == 16))) {
        PyErr_Format(PyExc_ValueError, "%d lanes: not available on this CPU", lanes);
        goto done;
    }
    Py_ssize_t total = PySequence_Fast_GET_SIZE(fast);
    out = PyList_New(total);
    if (!out) goto done;
    for (Py_ssize_t at = 0; at < total; at += 16) {
        const uint8_t *m[16];
        size_t l[16];
        uint64_t lo[16], hi[16];
        int k = 0;
        for (; k < 16 && at + k < total; k++) {
            PyObject *item = PySequence_Fast_GET_ITEM(fast, at + k);
            if (!PyBytes_Check(item)) {
                PyErr_SetString(PyExc_TypeError, "messages must be bytes");
                Py_CLEAR(out);
                goto done;
            }
            m[k] = (const uint8_t *)PyBytes_AS_STRING(item);
            l[k] = (size_t)PyBytes_GET_SIZE(item);
        }
        md5_many(lanes, pre.buf, (size_t)pre.len, m, l, k, lo, hi);
        for (int j = 0; j < k; j++) {
            PyObject *pair = Py_BuildValue("(KK)", (unsigned long long)lo[j], (unsigned long long)hi[j]);
            if (!pair) {
                Py_CLEAR(out);
                goto done;
            }
            PyList_SET_ITEM(out, at + j, pair);
        }
    }
done:
    Py_XDECREF(fast);
    PyBuffer_Release(&pre);
    return out;
}

static PyObject *lanes_in_use(PyObject *self, PyObject *noargs) { return PyLong_FromLong(md5_lanes); }

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, NULL},
    {"md5_list", md5_list, METH_VARARGS, "md5_list(prefix, messages, lanes) -> [(lo, hi)]: MD5 of prefix + each message."},
    {"md5_lanes", lanes_in_use, METH_NOARGS, "md5_lanes() -> the MD5 lanes scan uses on this CPU (16, 8 or 1)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_netfilter",
    .m_doc = "Compiled fast path of the iptables LOG reader.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__netfilter(void) {
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1) {
        PyErr_SetString(PyExc_ImportError, "_netfilter supports little-endian hosts only");
        return NULL;
    }
    md5_init_table();
    md5_lanes = md5_cpu_lanes();
    methods[0].ml_doc = scan_doc;
    return PyModule_Create(&module);
}
