/*
 * nic_fault_spec.c - the fault stage's configuration: defaults, checks, the
 * netem-style spec parser and its printer. The stage that runs a
 * configuration is nic_fault.c.
 */
#include "nic_fault.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h> /* isfinite only: no libm needed */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NS_PER_US UINT64_C(1000)
#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S  UINT64_C(1000000000)

void nic_fault_cfg_init(struct nic_fault_cfg *cfg)
{
    *cfg = (struct nic_fault_cfg){
        .reorder_gap = NIC_FAULT_DEFAULT_GAP,
        .reorder_timeout_ns = NIC_FAULT_DEFAULT_REORDER_TIMEOUT,
    };
}

bool nic_fault_cfg_is_passthrough(const struct nic_fault_cfg *cfg)
{
    return cfg->loss_pct == 0 && cfg->duplicate_pct == 0 && cfg->corrupt_pct == 0 &&
           cfg->tamper_pct == 0 && cfg->reorder_pct == 0 && cfg->delay_ns == 0 &&
           cfg->jitter_ns == 0 && cfg->rate_bps == 0 && cfg->blackout_ns == 0;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool pct_ok(double p)
{
    return p >= 0 && p <= 100; /* false for NaN */
}

int nic_fault_cfg_check(const struct nic_fault_cfg *cfg, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
    } pcts[] = {
        {"loss", offsetof(struct nic_fault_cfg, loss_pct)},
        {"duplicate", offsetof(struct nic_fault_cfg, duplicate_pct)},
        {"corrupt", offsetof(struct nic_fault_cfg, corrupt_pct)},
        {"tamper", offsetof(struct nic_fault_cfg, tamper_pct)},
        {"reorder", offsetof(struct nic_fault_cfg, reorder_pct)},
    };
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        double p = *(const double *)((const char *)cfg + pcts[i].off);
        if (!pct_ok(p))
            return fail(err, errlen, "%s %g%% out of range 0..100", pcts[i].name, p);
    }
    if (cfg->reorder_gap < 1 || cfg->reorder_gap > NIC_FAULT_MAX_GAP)
        return fail(err, errlen, "gap %u out of range 1..%u", cfg->reorder_gap, NIC_FAULT_MAX_GAP);
    if (cfg->reorder_timeout_ns > NIC_FAULT_MAX_TIME_NS || cfg->delay_ns > NIC_FAULT_MAX_TIME_NS ||
        cfg->jitter_ns > NIC_FAULT_MAX_TIME_NS || cfg->blackout_ns > NIC_FAULT_MAX_TIME_NS)
        return fail(err, errlen, "delay, jitter, timeout and blackout must be at most 3600s");
    if (cfg->rate_bps > NIC_FAULT_MAX_RATE_BPS)
        return fail(err, errlen, "rate %" PRIu64 "bit out of range (max 1000tbit)", cfg->rate_bps);
    return 0;
}

#define TOKEN_MAX 64

struct lexer {
    const char *p;
};

/* Next whitespace-separated token into tok. Returns 1, 0 at end, -1 if too long. */
static int lex(struct lexer *lx, char *tok, char *err, size_t errlen)
{
    while (isspace((unsigned char)*lx->p))
        lx->p++;
    if (!*lx->p)
        return 0;
    size_t n = 0;
    while (lx->p[n] && !isspace((unsigned char)lx->p[n]))
        n++;
    if (n >= TOKEN_MAX)
        return fail(err, errlen, "token '%.*s...' too long", 16, lx->p);
    memcpy(tok, lx->p, n);
    tok[n] = '\0';
    lx->p += n;
    return 1;
}

/* Like lex() but leaves the lexer where it was. */
static int peek(const struct lexer *lx, char *tok)
{
    struct lexer tmp = *lx;
    return lex(&tmp, tok, NULL, 0);
}

/* Length of a strict decimal number at s (digits, optional fraction and
 * exponent; no sign, hex, inf or nan), 0 if none. */
static size_t scan_number(const char *s)
{
    size_t i = 0, digits = 0;
    for (; isdigit((unsigned char)s[i]); i++)
        digits++;
    if (s[i] == '.')
        for (i++; isdigit((unsigned char)s[i]); i++)
            digits++;
    if (!digits)
        return 0;
    if (s[i] == 'e' || s[i] == 'E') {
        size_t j = i + 1;
        if (s[j] == '+' || s[j] == '-')
            j++;
        if (isdigit((unsigned char)s[j])) {
            while (isdigit((unsigned char)s[j]))
                j++;
            i = j;
        }
    }
    return i;
}

/* Parses the number at the start of tok; *unit points past it. */
static bool parse_number(const char *tok, double *v, const char **unit)
{
    char num[TOKEN_MAX];
    size_t n = scan_number(tok);
    if (!n)
        return false;
    memcpy(num, tok, n);
    num[n] = '\0';
    *v = strtod(num, NULL);
    *unit = tok + n;
    return isfinite(*v);
}

static int parse_pct(const char *kw, const char *tok, double *out, char *err, size_t errlen)
{
    double v;
    const char *unit;
    if (!parse_number(tok, &v, &unit) || (*unit && strcmp(unit, "%") != 0))
        return fail(err, errlen, "bad percentage '%s' for '%s'", tok, kw);
    if (!pct_ok(v))
        return fail(err, errlen, "percentage '%s' for '%s' out of range 0..100", tok, kw);
    *out = v;
    return 0;
}

static int parse_time(const char *kw, const char *tok, uint64_t *out, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        double ns;
    } units[] = {
        {"", NS_PER_MS}, {"ns", 1}, {"us", NS_PER_US}, {"ms", NS_PER_MS}, {"s", NS_PER_S},
    };
    double v;
    const char *unit;
    if (!parse_number(tok, &v, &unit))
        return fail(err, errlen, "bad time '%s' for '%s'", tok, kw);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i].name) != 0)
            continue;
        double ns = v * units[i].ns;
        if (ns > (double)NIC_FAULT_MAX_TIME_NS)
            return fail(err, errlen, "time '%s' for '%s' out of range (max 3600s)", tok, kw);
        *out = (uint64_t)(ns + 0.5); /* ns >= 0: round to nearest */
        return 0;
    }
    return fail(err, errlen, "bad time unit in '%s' for '%s' (use ns, us, ms or s)", tok, kw);
}

static int parse_rate(const char *tok, uint64_t *out, char *err, size_t errlen)
{
    /* tc(8) units: "bit" forms are bits/s, "bps" forms are bytes/s; k = 1000. */
    static const struct {
        const char *name;
        double bits;
    } units[] = {
        {"", 1},    {"bit", 1},    {"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9},  {"tbit", 1e12},
        {"bps", 8}, {"kbps", 8e3}, {"mbps", 8e6}, {"gbps", 8e9}, {"tbps", 8e12},
    };
    double v;
    const char *unit;
    if (!parse_number(tok, &v, &unit))
        return fail(err, errlen, "bad rate '%s'", tok);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(unit, units[i].name) != 0)
            continue;
        double bps = v * units[i].bits;
        if (bps < 1 || bps > (double)NIC_FAULT_MAX_RATE_BPS)
            return fail(err, errlen, "rate '%s' out of range 1bit..1000tbit", tok);
        *out = (uint64_t)(bps + 0.5);
        return 0;
    }
    return fail(err, errlen, "bad rate unit in '%s' (use bit, kbit, mbit, gbit, bps, kbps, ...)",
                tok);
}

static int parse_u64(const char *kw, const char *tok, uint64_t max, uint64_t *out, char *err,
                     size_t errlen)
{
    char *end;
    if (!isdigit((unsigned char)tok[0])) /* strtoull would accept '-' and spaces */
        return fail(err, errlen, "bad number '%s' for '%s'", tok, kw);
    /* Decimal, or hex with 0x; never octal, so "010" is ten. */
    int base = tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X') ? 16 : 10;
    errno = 0;
    unsigned long long v = strtoull(tok, &end, base);
    if (*end)
        return fail(err, errlen, "bad number '%s' for '%s'", tok, kw);
    if (errno == ERANGE || v > max)
        return fail(err, errlen, "number '%s' for '%s' out of range", tok, kw);
    *out = v;
    return 0;
}

int nic_fault_seed_parse(const char *s, uint64_t *out, char *err, size_t errlen)
{
    char *end;
    /* Decimal, or hex with 0x; never octal; no sign or space (strtoull would take them). */
    int base = s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? 16 : 10;
    errno = 0;
    unsigned long long v = isdigit((unsigned char)s[0]) ? strtoull(s, &end, base) : 0;
    if (!isdigit((unsigned char)s[0]) || *end || errno == ERANGE)
        return fail(err, errlen,
                    "bad seed '%s': expected a decimal or 0x-hex integer 0..18446744073709551615",
                    s);
    *out = v;
    return 0;
}

enum kw_id {
    KW_LOSS,
    KW_DUPLICATE,
    KW_CORRUPT,
    KW_TAMPER,
    KW_REORDER,
    KW_DELAY,
    KW_RATE,
    KW_BLACKOUT,
    KW_SEED
};

static const char *const kw_names[] = {
    [KW_LOSS] = "loss",     [KW_DUPLICATE] = "duplicate", [KW_CORRUPT] = "corrupt",
    [KW_TAMPER] = "tamper", [KW_REORDER] = "reorder",     [KW_DELAY] = "delay",
    [KW_RATE] = "rate",     [KW_BLACKOUT] = "blackout",   [KW_SEED] = "seed",
};
#define KW_COUNT (sizeof(kw_names) / sizeof(kw_names[0]))

/* Reads the value that keyword kw requires. */
static int need_value(struct lexer *lx, const char *kw, char *tok, char *err, size_t errlen)
{
    int rc = lex(lx, tok, err, errlen);
    if (rc == 0)
        return fail(err, errlen, "'%s' needs a value", kw);
    return rc < 0 ? -1 : 0;
}

/* The optional "gap N" and "timeout T" after "reorder P". */
static int parse_reorder_opts(struct lexer *lx, struct nic_fault_cfg *cfg, char *err, size_t errlen)
{
    char tok[TOKEN_MAX];
    bool gap_seen = false, timeout_seen = false;
    while (peek(lx, tok) > 0) {
        bool is_gap = strcmp(tok, "gap") == 0;
        if (!is_gap && strcmp(tok, "timeout") != 0)
            return 0;
        bool *seen = is_gap ? &gap_seen : &timeout_seen;
        if (*seen)
            return fail(err, errlen, "'%s' given twice", tok);
        *seen = true;
        lex(lx, tok, NULL, 0);
        char val[TOKEN_MAX];
        const char *kw = is_gap ? "gap" : "timeout";
        if (need_value(lx, kw, val, err, errlen) < 0)
            return -1;
        if (is_gap) {
            uint64_t gap;
            if (parse_u64(kw, val, UINT64_MAX, &gap, err, errlen) < 0)
                return -1;
            if (gap < 1 || gap > NIC_FAULT_MAX_GAP)
                return fail(err, errlen, "gap '%s' out of range 1..%u", val, NIC_FAULT_MAX_GAP);
            cfg->reorder_gap = (unsigned)gap;
        } else if (parse_time(kw, val, &cfg->reorder_timeout_ns, err, errlen) < 0) {
            return -1;
        }
    }
    return 0;
}

static double *pct_field(struct nic_fault_cfg *cfg, enum kw_id id)
{
    switch (id) {
    case KW_LOSS:
        return &cfg->loss_pct;
    case KW_DUPLICATE:
        return &cfg->duplicate_pct;
    case KW_CORRUPT:
        return &cfg->corrupt_pct;
    case KW_TAMPER:
        return &cfg->tamper_pct;
    case KW_REORDER:
        return &cfg->reorder_pct;
    default:
        return NULL;
    }
}

int nic_fault_cfg_parse(struct nic_fault_cfg *out, const char *spec, char *err, size_t errlen)
{
    struct nic_fault_cfg cfg;
    nic_fault_cfg_init(&cfg);
    if (err && errlen)
        err[0] = '\0';
    struct lexer lx = {spec ? spec : ""};
    char tok[TOKEN_MAX], val[TOKEN_MAX];
    bool seen[KW_COUNT] = {false};
    unsigned ntok = 0;
    bool none = false;
    int rc;
    while ((rc = lex(&lx, tok, err, errlen)) > 0) {
        ntok++;
        if (strcmp(tok, "none") == 0) {
            none = true;
            continue;
        }
        if (strcmp(tok, "gap") == 0 || strcmp(tok, "timeout") == 0)
            return fail(err, errlen, "'%s' is only valid right after 'reorder P%%'", tok);
        if (strcmp(tok, "after") == 0)
            return fail(err, errlen, "'after' is only valid right after 'blackout T'");
        size_t id = 0;
        while (id < KW_COUNT && strcmp(tok, kw_names[id]) != 0)
            id++;
        if (id == KW_COUNT)
            return fail(err, errlen, "unknown keyword '%s'", tok);
        if (seen[id])
            return fail(err, errlen, "keyword '%s' given twice", tok);
        seen[id] = true;
        if (need_value(&lx, tok, val, err, errlen) < 0)
            return -1;

        double *pct = pct_field(&cfg, (enum kw_id)id);
        if (pct) {
            if (parse_pct(tok, val, pct, err, errlen) < 0)
                return -1;
            if (id == KW_REORDER && parse_reorder_opts(&lx, &cfg, err, errlen) < 0)
                return -1;
        } else if (id == KW_DELAY) {
            if (parse_time(tok, val, &cfg.delay_ns, err, errlen) < 0)
                return -1;
            /* Optional jitter: keywords never start with a digit or '.'. */
            char next[TOKEN_MAX];
            if (peek(&lx, next) > 0 && (isdigit((unsigned char)next[0]) || next[0] == '.')) {
                lex(&lx, next, NULL, 0);
                if (parse_time("delay jitter", next, &cfg.jitter_ns, err, errlen) < 0)
                    return -1;
            }
        } else if (id == KW_RATE) {
            if (parse_rate(val, &cfg.rate_bps, err, errlen) < 0)
                return -1;
        } else if (id == KW_BLACKOUT) {
            if (parse_time(tok, val, &cfg.blackout_ns, err, errlen) < 0)
                return -1;
            if (!cfg.blackout_ns)
                return fail(err, errlen, "blackout '%s' must be a positive time", val);
            char next[TOKEN_MAX];
            if (peek(&lx, next) > 0 && strcmp(next, "after") == 0) {
                lex(&lx, next, NULL, 0);
                if (need_value(&lx, "after", val, err, errlen) < 0 ||
                    parse_u64("after", val, UINT64_MAX, &cfg.blackout_after, err, errlen) < 0)
                    return -1;
            }
        } else {
            assert(id == KW_SEED);
            if (nic_fault_seed_parse(val, &cfg.seed, err, errlen) < 0)
                return -1;
            cfg.seed_set = true;
        }
    }
    if (rc < 0)
        return -1;
    if (none && ntok > 1)
        return fail(err, errlen, "'none' must be the whole spec");
    *out = cfg;
    return 0;
}

/* Appends to a NUL-terminated buffer, truncating safely. */
struct strbuf {
    char *buf;
    size_t cap, len;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
    if (sb->len >= sb->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb->len = sb->len + (size_t)n < sb->cap ? sb->len + (size_t)n : sb->cap - 1;
}

/* Shortest plain decimal that reads back as exactly v; %.17g as a last resort. */
static void fmt_double(char *out, size_t cap, double v)
{
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(out, cap, "%.*f", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
    snprintf(out, cap, "%.17g", v);
}

static void fmt_time(struct strbuf *sb, uint64_t ns)
{
    if (ns % NS_PER_S == 0 && ns)
        sb_printf(sb, "%" PRIu64 "s", ns / NS_PER_S);
    else if (ns % NS_PER_MS == 0)
        sb_printf(sb, "%" PRIu64 "ms", ns / NS_PER_MS);
    else if (ns % NS_PER_US == 0)
        sb_printf(sb, "%" PRIu64 "us", ns / NS_PER_US);
    else
        sb_printf(sb, "%" PRIu64 "ns", ns);
}

static void fmt_rate(struct strbuf *sb, uint64_t bps)
{
    static const struct {
        const char *name;
        uint64_t bits;
    } units[] = {{"tbit", 1000000000000ull},
                 {"gbit", 1000000000ull},
                 {"mbit", 1000000ull},
                 {"kbit", 1000ull}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (bps % units[i].bits == 0) {
            sb_printf(sb, "%" PRIu64 "%s", bps / units[i].bits, units[i].name);
            return;
        }
    }
    sb_printf(sb, "%" PRIu64 "bit", bps);
}

static void fmt_pct(struct strbuf *sb, const char *kw, double pct, bool force)
{
    char num[64];
    if (pct == 0 && !force)
        return;
    fmt_double(num, sizeof(num), pct);
    sb_printf(sb, "%s%s %s%%", sb->len ? " " : "", kw, num);
}

void nic_fault_cfg_format(const struct nic_fault_cfg *cfg, char *buf, size_t len)
{
    if (!len)
        return;
    struct strbuf sb = {buf, len, 0};
    buf[0] = '\0';
    fmt_pct(&sb, "loss", cfg->loss_pct, false);
    fmt_pct(&sb, "duplicate", cfg->duplicate_pct, false);
    /* Reorder options only exist after "reorder", so print it whenever they differ. */
    bool reorder_opts = cfg->reorder_gap != NIC_FAULT_DEFAULT_GAP ||
                        cfg->reorder_timeout_ns != NIC_FAULT_DEFAULT_REORDER_TIMEOUT;
    if (cfg->reorder_pct != 0 || reorder_opts) {
        fmt_pct(&sb, "reorder", cfg->reorder_pct, true);
        sb_printf(&sb, " gap %u", cfg->reorder_gap);
        if (cfg->reorder_timeout_ns != NIC_FAULT_DEFAULT_REORDER_TIMEOUT) {
            sb_printf(&sb, " timeout ");
            fmt_time(&sb, cfg->reorder_timeout_ns);
        }
    }
    fmt_pct(&sb, "corrupt", cfg->corrupt_pct, false);
    fmt_pct(&sb, "tamper", cfg->tamper_pct, false);
    if (cfg->delay_ns || cfg->jitter_ns) {
        sb_printf(&sb, "%sdelay ", sb.len ? " " : "");
        fmt_time(&sb, cfg->delay_ns);
        if (cfg->jitter_ns) {
            sb_printf(&sb, " ");
            fmt_time(&sb, cfg->jitter_ns);
        }
    }
    if (cfg->rate_bps) {
        sb_printf(&sb, "%srate ", sb.len ? " " : "");
        fmt_rate(&sb, cfg->rate_bps);
    }
    if (cfg->blackout_ns) {
        sb_printf(&sb, "%sblackout ", sb.len ? " " : "");
        fmt_time(&sb, cfg->blackout_ns);
        if (cfg->blackout_after)
            sb_printf(&sb, " after %" PRIu64, cfg->blackout_after);
    }
    if (cfg->seed_set)
        sb_printf(&sb, "%sseed %" PRIu64, sb.len ? " " : "", cfg->seed);
    if (!sb.len)
        sb_printf(&sb, "none");
}
