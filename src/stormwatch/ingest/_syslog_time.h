/* Syslog headers and their times: BSD, ISO 8601, epoch and RFC 5424, as the reference parser
 * (stormwatch.ingest.syslog.parse_header) reads them. Part of the _netfilter module: included once
 * by _netfilter.c after its small parsers (is_digit). */

/* ---- syslog headers ---------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int m) {
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dm[m - 1];
}

/* Epoch microseconds of a valid date-time, or INT64_MIN when the date or time does not exist. */
static int64_t civil_micros(int64_t y, int mo, int d, int hh, int mi, int ss) {
    if (y < 1 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || hh > 23 || mi > 59 ||
        ss > 59)
        return INT64_MIN;
    return ((days_from_civil(y, mo, d) * 24 + hh) * 60 + mi) * 60000000LL + (int64_t)ss * 1000000LL;
}

static int two(const char *p) {
    return (is_digit(p[0]) && is_digit(p[1])) ? (p[0] - '0') * 10 + (p[1] - '0') : -1;
}

#define PACK3(a, b, c) ((uint32_t)(unsigned char)(a) | (uint32_t)(unsigned char)(b) << 8 | (uint32_t)(unsigned char)(c) << 16)

static int month_of(const char *p) {
    static const uint32_t names[12] = {PACK3('J', 'a', 'n'), PACK3('F', 'e', 'b'), PACK3('M', 'a', 'r'),
                                       PACK3('A', 'p', 'r'), PACK3('M', 'a', 'y'), PACK3('J', 'u', 'n'),
                                       PACK3('J', 'u', 'l'), PACK3('A', 'u', 'g'), PACK3('S', 'e', 'p'),
                                       PACK3('O', 'c', 't'), PACK3('N', 'o', 'v'), PACK3('D', 'e', 'c')};
    uint32_t k = PACK3(p[0], p[1], p[2]);
    for (int i = 0; i < 12; i++)
        if (names[i] == k) return i + 1;
    return 0;
}

#define MAX_MICROS (7258118400LL * 1000000LL) /* 2200-01-01, as normalize.MAX_MICROS */

typedef struct {
    int year;
    int has_latest;
    int64_t latest; /* epoch micros */
    char bsd[15];   /* the last BSD stamp decided and its time: consecutive lines share seconds */
    int64_t bsd_ts;
} clock_t_;

/* An ISO 8601 stamp and its space at s[0:n] (rsyslog's file format, journalctl -o short-iso,
 * RFC 5424's TIMESTAMP): sets *ts (UTC) and returns the index after the space, or -1. */
static int iso_stamp(const char *s, int n, int64_t *ts) {
    int i;
    if (n <= 20 || s[4] != '-') return -1;
    int y = 0;
    for (int k = 0; k < 4; k++) {
        if (!is_digit(s[k])) return -1;
        y = y * 10 + (s[k] - '0');
    }
    if (s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return -1;
    int mo = two(s + 5), d = two(s + 8), hh = two(s + 11), mi = two(s + 14), ss = two(s + 17);
    if (mo < 0 || d < 0 || hh < 0 || mi < 0 || ss < 0) return -1;
    int64_t t = civil_micros(y, mo, d, hh, mi, ss);
    if (t == INT64_MIN) return -1;
    i = 19;
    if (i < n && s[i] == '.') {
        int k = 0, us = 0;
        i++;
        while (i < n && is_digit(s[i]) && k < 6) { us = us * 10 + (s[i] - '0'); i++; k++; }
        if (k == 0 || (i < n && is_digit(s[i]))) return -1;
        while (k < 6) { us *= 10; k++; }
        t += us;
    }
    if (i < n && s[i] == 'Z') {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '-' ? -1 : 1;
        if (i + 5 >= n) return -1;
        int oh = two(s + i + 1), om;
        if (s[i + 3] == ':') { om = two(s + i + 4); i += 6; }
        else { om = two(s + i + 3); i += 5; }
        if (oh < 0 || om < 0 || oh > 23 || om > 59) return -1;
        t -= sign * ((int64_t)oh * 3600 + om * 60) * 1000000LL;
    }
    if (i >= n || s[i] != ' ' || t < 0 || t >= MAX_MICROS) return -1;
    *ts = t;
    return i + 1;
}

/* The host name at s[i:]: up to the next space, not empty, no '='; the index after its space or -1. */
static int host_end(const char *s, int i, int n) {
    int h = i;
    while (h < n && s[h] != ' ') {
        if (s[h] == '=') return -1;
        h++;
    }
    if (h == i || h >= n) return -1;
    return h + 1;
}

/* The syslog header: sets *ts and returns the index where the message starts (after the host
 * name), or -1 when this path cannot decide (the reference parser then does). */
static int header(const char *s, int n, clock_t_ *ck, int64_t *ts, int *tagged) {
    int i;
    *tagged = 1;
    if (n > 16 && s[15] == ' ' && memcmp(s, ck->bsd, 15) == 0) { /* the same BSD stamp as before */
        *ts = ck->bsd_ts;
        i = 16;
    } else if (n > 16 && s[0] >= 'A' && s[0] <= 'Z') { /* BSD: "Nov 26 10:00:01 " */
        int mo = month_of(s);
        if (!mo || s[3] != ' ' || !(s[4] == ' ' || (s[4] >= '0' && s[4] <= '3')) || !is_digit(s[5]) ||
            s[6] != ' ' || s[9] != ':' || s[12] != ':' || s[15] != ' ')
            return -1;
        int day = (s[4] == ' ' ? 0 : s[4] - '0') * 10 + (s[5] - '0');
        int hh = two(s + 7), mi = two(s + 10), ss = two(s + 13);
        if (hh < 0 || mi < 0 || ss < 0) return -1;
        int64_t t = civil_micros(ck->year, mo, day, hh, mi, ss);
        if (t == INT64_MIN || (ck->has_latest && t > ck->latest)) t = civil_micros(ck->year - 1, mo, day, hh, mi, ss);
        if (t == INT64_MIN) return -1;
        *ts = t;
        memcpy(ck->bsd, s, 15);
        ck->bsd_ts = t;
        i = 16;
    } else if (n > 20 && is_digit(s[0]) && s[4] == '-') { /* ISO 8601 */
        i = iso_stamp(s, n, ts);
        if (i < 0) return -1;
    } else if (s[0] == '<') { /* RFC 5424: <PRI>1 TIMESTAMP HOST kernel - - - MSG */
        int k = 1;
        while (k < 4 && k < n && is_digit(s[k])) k++;
        if (k == 1 || k + 3 >= n || s[k] != '>' || s[k + 1] != '1' || s[k + 2] != ' ') return -1;
        int e = iso_stamp(s + k + 3, n - k - 3, ts);
        if (e < 0) return -1;
        int h = host_end(s, k + 3 + e, n);
        if (h < 0 || h + 13 > n || memcmp(s + h, "kernel - - - ", 13) != 0) return -1;
        *tagged = 0; /* the message may start with the kernel: tag, need not */
        return h + 13;
    } else if (n > 11 && is_digit(s[0])) { /* epoch seconds: "1764151201[.123456] " */
        int k = 0;
        while (k < n && is_digit(s[k])) k++;
        if (k < 9 || k > 10) return -1;
        int e = k;
        if (e < n && s[e] == '.') {
            int f = e + 1;
            while (f < n && is_digit(s[f])) f++;
            if (f - e - 1 < 1 || f - e - 1 > 6) return -1;
            e = f;
        }
        if (e >= n || s[e] != ' ') return -1;
        char tmp[24];
        memcpy(tmp, s, (size_t)e);
        tmp[e] = 0;
        double v = nearbyint(strtod(tmp, NULL) * 1000000.0); /* as Python's round(float(x) * 1e6) */
        if (!(v >= 0 && v < (double)MAX_MICROS)) return -1;
        *ts = (int64_t)v;
        i = e + 1;
    } else {
        return -1;
    }
    return host_end(s, i, n);
}
