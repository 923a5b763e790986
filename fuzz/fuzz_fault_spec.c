/* fuzz_fault_spec.c - libFuzzer target: the fault-spec parser and printer of
 * nic/nic_fault_spec.c, and the fault stage (nic/nic_fault.c) running the config that was parsed.
 *
 * Input: the spec text (up to its first NUL). Properties checked:
 *   parse    - returns 0 or -1; on -1 a message, NUL-terminated, the same (as a
 *              prefix) with a smaller buffer or none, and *cfg untouched; on 0
 *              the config passes nic_fault_cfg_check and does not depend on
 *              the error buffer.
 *   format   - nic_fault_cfg_format fits NIC_FAULT_FMT_LEN, parses back to the
 *              identical config, is a fixed point (formatting that again gives
 *              the same text), and truncates to a NUL-terminated prefix.
 *   stage    - with the config (a fixed seed if none was given), a set of
 *              IPv4/TCP packets pushed and drained on a virtual clock: the
 *              counters balance, every output is one of the inputs (byte-exact
 *              unless corrupt/tamper), order is kept unless reorder is on,
 *              nothing leaves before its minimum delay, disabled faults never
 *              count, and a second run gives the same output at the same times.
 */
#include "fuzz_util.h"
#include "nic_fault.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool cfg_equal(const struct nic_fault_cfg *a, const struct nic_fault_cfg *b)
{
    return a->loss_pct == b->loss_pct && a->duplicate_pct == b->duplicate_pct &&
           a->corrupt_pct == b->corrupt_pct && a->tamper_pct == b->tamper_pct &&
           a->reorder_pct == b->reorder_pct && a->reorder_gap == b->reorder_gap &&
           a->reorder_timeout_ns == b->reorder_timeout_ns && a->delay_ns == b->delay_ns &&
           a->jitter_ns == b->jitter_ns && a->rate_bps == b->rate_bps &&
           a->seed_set == b->seed_set && (!a->seed_set || a->seed == b->seed);
}

/* ---- Parse and format ----------------------------------------------------- */

static void check_error_paths(const char *spec, int rc, const char *err,
                              const struct nic_fault_cfg *cfg)
{
    char small[8];
    struct nic_fault_cfg c2, c3;

    memset(&c2, 0, sizeof(c2));
    memset(&c3, 0, sizeof(c3));
    memset(small, 'x', sizeof(small));
    FUZZ_CHECK(nic_fault_cfg_parse(&c2, spec, small, sizeof(small)) == rc, "rc with errlen 8");
    FUZZ_CHECK(memchr(small, '\0', sizeof(small)) != NULL, "short error not NUL-terminated");
    FUZZ_CHECK(strncmp(small, err, strlen(small)) == 0, "short error '%s' not a prefix of '%s'",
               small, err);
    FUZZ_CHECK(nic_fault_cfg_parse(&c3, spec, NULL, 0) == rc, "rc without an error buffer");
    if (rc == 0)
        FUZZ_CHECK(cfg_equal(cfg, &c2) && cfg_equal(cfg, &c3),
                   "config depends on the error buffer");
}

static void check_format(const struct nic_fault_cfg *cfg)
{
    char text[NIC_FAULT_FMT_LEN], again[NIC_FAULT_FMT_LEN], err[160];
    struct nic_fault_cfg back;

    memset(text, 'x', sizeof(text));
    nic_fault_cfg_format(cfg, text, sizeof(text));
    size_t len = strnlen(text, sizeof(text));
    FUZZ_CHECK(len < sizeof(text) - 1, "formatted spec fills the buffer: truncated?");
    FUZZ_CHECK(len > 0, "empty formatted spec");

    FUZZ_CHECK(nic_fault_cfg_parse(&back, text, err, sizeof(err)) == 0,
               "formatted spec '%s' does not parse: %s", text, err);
    FUZZ_CHECK(cfg_equal(cfg, &back), "'%s' parses to a different config", text);
    nic_fault_cfg_format(&back, again, sizeof(again));
    FUZZ_CHECK(strcmp(text, again) == 0, "format not a fixed point: '%s' then '%s'", text, again);
    /* A spec of nothing but a seed configures no fault. */
    if (strcmp(text, "none") == 0 || strncmp(text, "seed ", 5) == 0)
        FUZZ_CHECK(nic_fault_cfg_is_passthrough(cfg), "'%s' is not passthrough", text);

    /* Short buffers: a NUL-terminated prefix of the full text. */
    size_t caps[] = {1, 2, 7, len / 2 + 1, len, len + 1};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        char cut[NIC_FAULT_FMT_LEN];
        memset(cut, 'x', sizeof(cut));
        nic_fault_cfg_format(cfg, cut, caps[i]);
        size_t n = strnlen(cut, caps[i]);
        FUZZ_CHECK(n < caps[i], "cap %zu: not NUL-terminated", caps[i]);
        FUZZ_CHECK(memcmp(cut, text, n) == 0, "cap %zu: '%s' not a prefix of '%s'", caps[i], cut,
                   text);
        if (caps[i] < sizeof(cut))
            FUZZ_CHECK(cut[caps[i]] == 'x', "cap %zu: wrote past the buffer", caps[i]);
    }
}

/* ---- Stage ---------------------------------------------------------------- */

#define NPKT         24
#define IP_TCP_HDR   40
#define PUSH_GAP_NS  50000u /* 50 us between pushes */
#define DEFAULT_SEED 0x5eedu

struct pkt_in {
    uint8_t b[IP_TCP_HDR + 300];
    size_t len;
    uint64_t t;
};

/* An unfragmented IPv4/TCP packet with a payload (what tamper acts on); its
 * length identifies it: 41..340 bytes, distinct for i < 300. */
static void make_packet(struct pkt_in *p, unsigned i)
{
    size_t payload = 1 + (i * 53u) % 300u;

    memset(p->b, 0, sizeof(p->b));
    p->len = IP_TCP_HDR + payload;
    p->b[0] = 0x45;
    p->b[2] = (uint8_t)(p->len >> 8);
    p->b[3] = (uint8_t)p->len;
    p->b[8] = 64;
    p->b[9] = 6; /* TCP */
    memcpy(p->b + 12, "\x0a\x4d\x00\x02\x0a\x4d\x00\x01", 8);
    p->b[20 + 12] = 5 << 4; /* data offset: 20 bytes */
    memset(p->b + IP_TCP_HDR, (int)(0x30 + i), payload);
    p->t = (uint64_t)i * PUSH_GAP_NS;
}

static int packet_index(const struct pkt_in *in, size_t len)
{
    for (int i = 0; i < NPKT; i++)
        if (in[i].len == len)
            return i;
    return -1;
}

struct stage_out {
    struct fuzz_buf log; /* per packet: time, length, bytes */
    struct nic_fault_stats st;
};

static void stage_pop_due(struct nic_fault *f, const struct nic_fault_cfg *cfg,
                          const struct pkt_in *in, uint64_t now, struct stage_out *o,
                          int *last_index)
{
    static uint8_t buf[NIC_FAULT_MAX_PKT];
    size_t n;

    while ((n = nic_fault_pop(f, now, buf, sizeof(buf))) > 0) {
        int i = packet_index(in, n);
        FUZZ_CHECK(i >= 0, "output of %zu bytes matches no input", n);
        uint64_t min_lat = cfg->delay_ns > cfg->jitter_ns ? cfg->delay_ns - cfg->jitter_ns : 0;
        FUZZ_CHECK(now >= in[i].t + min_lat, "packet %d left at %llu, pushed %llu, min %llu", i,
                   (unsigned long long)now, (unsigned long long)in[i].t,
                   (unsigned long long)min_lat);
        if (cfg->corrupt_pct == 0 && cfg->tamper_pct == 0)
            FUZZ_CHECK(memcmp(buf, in[i].b, n) == 0, "packet %d changed without corrupt/tamper", i);
        if (cfg->corrupt_pct == 0)
            FUZZ_CHECK(memcmp(buf, in[i].b, 20) == 0, "IP header of %d changed by tamper", i);
        if (cfg->reorder_pct == 0)
            FUZZ_CHECK(i >= *last_index, "packet %d after %d without reorder", i, *last_index);
        *last_index = i;
        fuzz_buf_u64(&o->log, now);
        fuzz_buf_u64(&o->log, n);
        fuzz_buf_put(&o->log, buf, n);
    }
}

static void stage_run(const struct nic_fault_cfg *cfg, const struct pkt_in *in, struct stage_out *o)
{
    struct nic_fault *f = nic_fault_create(cfg);
    int last_index = 0;
    uint64_t now = 0;

    FUZZ_CHECK(f != NULL, "nic_fault_create refused a config that parsed");
    o->log = (struct fuzz_buf){0};
    nic_fault_push(f, in[0].b, 0, 0); /* invalid: counted, never queued */
    for (int i = 0; i < NPKT; i++) {
        now = in[i].t;
        nic_fault_push(f, in[i].b, in[i].len, now);
        stage_pop_due(f, cfg, in, now, o, &last_index);
    }
    /* Drain on the virtual clock: each deadline either releases a packet or
     * moves one into the hold FIFO. */
    for (unsigned k = 0; nic_fault_queued(f) > 0; k++) {
        FUZZ_CHECK(k < 8 * NPKT, "stage does not drain (%zu queued)", nic_fault_queued(f));
        uint64_t t = nic_fault_next_deadline(f);
        FUZZ_CHECK(t != UINT64_MAX, "packets queued but no deadline");
        if (t > now)
            now = t;
        stage_pop_due(f, cfg, in, now, o, &last_index);
    }
    FUZZ_CHECK(nic_fault_next_deadline(f) == UINT64_MAX, "empty stage with a deadline");
    nic_fault_get_stats(f, &o->st);
    nic_fault_destroy(f);

    const struct nic_fault_stats *s = &o->st;
    FUZZ_CHECK(s->packets_in == NPKT + 1 && s->invalid_drops == 1, "in %llu invalid %llu",
               (unsigned long long)s->packets_in, (unsigned long long)s->invalid_drops);
    FUZZ_CHECK(s->packets_in + s->duplicated == s->packets_out + s->dropped + s->blackout_drops +
                                                    s->queue_full_drops + s->invalid_drops +
                                                    s->nomem_drops,
               "counters do not balance");
    FUZZ_CHECK(cfg->loss_pct > 0 || s->dropped == 0, "loss without loss");
    FUZZ_CHECK(cfg->blackout_ns > 0 || s->blackout_drops == 0, "blackout without blackout");
    FUZZ_CHECK(cfg->loss_pct < 100 || s->packets_out == 0, "loss 100%% let packets through");
    FUZZ_CHECK(cfg->duplicate_pct > 0 || s->duplicated == 0, "duplicate without duplicate");
    FUZZ_CHECK(cfg->corrupt_pct > 0 || s->corrupted == 0, "corrupt without corrupt");
    FUZZ_CHECK(cfg->tamper_pct > 0 || s->tampered == 0, "tamper without tamper");
    FUZZ_CHECK(cfg->reorder_pct > 0 || s->reordered == 0, "reorder without reorder");
}

static void check_stage(const struct nic_fault_cfg *parsed)
{
    static struct pkt_in in[NPKT];
    struct nic_fault_cfg cfg = *parsed;
    struct stage_out a, b;

    if (in[0].len == 0)
        for (unsigned i = 0; i < NPKT; i++)
            make_packet(&in[i], i);
    if (!cfg.seed_set) { /* the stage would draw a random one */
        cfg.seed_set = true;
        cfg.seed = DEFAULT_SEED;
    }
    stage_run(&cfg, in, &a);
    stage_run(&cfg, in, &b);
    FUZZ_CHECK(fuzz_buf_eq(&a.log, &b.log), "same seed, different output at byte %zu",
               fuzz_buf_diff_at(&a.log, &b.log));
    FUZZ_CHECK(memcmp(&a.st, &b.st, sizeof(a.st)) == 0, "same seed, different counters");
    fuzz_buf_free(&a.log);
    fuzz_buf_free(&b.log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1);
    char err[160];
    struct nic_fault_cfg cfg, untouched;

    FUZZ_CHECK(spec != NULL, "out of memory");
    memcpy(spec, data, size);
    spec[size] = '\0';
    memset(&cfg, 0xa5, sizeof(cfg));
    untouched = cfg;
    memset(err, 'x', sizeof(err));

    int rc = nic_fault_cfg_parse(&cfg, spec, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);
    FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL, "error not NUL-terminated");
    check_error_paths(spec, rc, err, &cfg);
    if (rc < 0) {
        FUZZ_CHECK(err[0] != '\0', "rejected '%s' without a message", spec);
        FUZZ_CHECK(memcmp(&cfg, &untouched, sizeof(cfg)) == 0, "rejected spec changed *cfg");
    } else {
        FUZZ_CHECK(nic_fault_cfg_check(&cfg, err, sizeof(err)) == 0, "'%s' parsed to: %s", spec,
                   err);
        check_format(&cfg);
        check_stage(&cfg);
    }
    free(spec);
    return 0;
}
