/*
 * nic_tls_rx.c - autonomous TLS receive offload (docs/design.md §5).
 *
 * In sequence, the NIC walks the records of each segment, decrypts payload
 * in place (AES-GCM), checks every tag, and marks the packet DECRYPTED only
 * if every record byte in it was decrypted and every record ending in it
 * authenticated; otherwise the packet keeps its original bytes.
 *
 * What this NIC does beyond the paper's design: it knows where the current
 * record ends, and CTR keystream positions don't need order. A segment that
 * arrives ahead of a hole (reordering, loss) is copied into a bounded reorder
 * buffer (ciphertext, for GHASH later) and, when it lies inside the current
 * record and holds no record end, decrypted in place with the keystream at
 * its offset and marked. When the hole is filled, the buffered ciphertext is
 * fed through GCM in order, so the record still authenticates and the NIC
 * stays in sync with no help from the host. Only when the buffer overflows
 * does it lose track: then, if it knows where the next record starts, it
 * jumps there; otherwise it searches for the magic pattern (`17 03 03` + a
 * plausible length), asks the host to confirm the candidate (resync request
 * in the completion), tracks the length chain while waiting, and resumes at
 * the next record boundary once the host confirms (resync response). In hint
 * mode it does no searching and waits for the host to tell it where a
 * future record starts. rx_reorder_bytes = 0 gives the paper's behaviour.
 */
#include "nic_csum.h"
#include "nic_tls.h"

#include <assert.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define RX_REORDER_MAX_SEGS      512
#define RX_CHAIN_KEEP            64
#define RX_HEADERLESS_HOLD_BYTES (6 * 1460) /* a few segments: reordering, not loss */

static_assert(NIC_TLS_HEADER_LEN + NIC_TLS_MAX_LENFIELD <= UINT16_MAX,
              "a record offset fits struct nic_cqe view_rec_off");

enum rx_state {
    RX_IN_SYNC,   /* walking records in order (possibly waiting at a future start) */
    RX_SEARCHING, /* lost: scanning payloads for a record header */
    RX_TRACKING,  /* candidate requested: following its length chain */
    RX_WAIT_HINT  /* lost, hint mode: waiting for the host's next-record hint */
};

struct rx_walker {
    uint32_t walk; /* number of this uninterrupted pass (struct nic_cqe view_walk) */
    uint32_t seq;  /* next stream byte the in-order walker needs */
    uint64_t record_sn;
    uint32_t rec_off; /* bytes of the current record walked */
    uint32_t rec_len; /* valid once rec_off >= header length */
    uint8_t hdr[NIC_TLS_PAYLOAD_OFF];
    uint8_t tag[NIC_TLS_TAG_LEN];
    EVP_CIPHER_CTX *gcm;
};

struct rx_seg {
    uint32_t seq, len;
    uint8_t *data; /* ciphertext copy */
};

struct nic_tls_rx_flow {
    uint32_t flow_id;
    enum rx_state state;
    bool hint_mode;
    struct rx_walker w;
    EVP_CIPHER_CTX *ctr;
    uint8_t salt[4];
    uint32_t high_seq;           /* end of the highest stream byte seen */
    const struct nic_flow *flow; /* its slot: the window edge (rx_wnd_*) */
    /* reorder buffer: ciphertext after w.seq, sorted by seq, non-overlapping */
    struct rx_seg segs[RX_REORDER_MAX_SEGS];
    unsigned nsegs;
    size_t buf_bytes, buf_cap;
    /* search / track */
    uint32_t cand_seq;   /* header seq we asked the host about */
    uint32_t track_next; /* next predicted header */
    uint32_t track_end;  /* stream position checked up to */
    uint64_t tracked;    /* headers verified after the candidate */
    uint8_t track_hdr[NIC_TLS_HEADER_LEN];
    unsigned track_have; /* bytes of a predicted header split across segments */
    /* Hint mode: while waiting, the NIC follows a candidate chain without
       asking (passive); the seqs of the last verified headers let a hint for
       a record it has already passed still resume it. */
    bool passive;
    uint32_t chain[RX_CHAIN_KEEP];
    uint64_t chain_total;    /* headers verified in the current chain */
    struct nic_tls_ctx *ctx; /* the device: shared buffers, reorder pool */
};

/* Serial-number comparisons for TCP sequence numbers. */
static bool seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static bool seq_leq(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

/* --- install / free --- */

int nic_tls_rx_install(struct nic_tls_ctx *ctx, struct nic_flow *flow, uint32_t flow_id)
{
    struct nic_tls_rx_flow *f = calloc(1, sizeof(*f));
    if (!f)
        return NIC_TX_ERR_NO_CTX;
    bool aes256 = flow->st.cipher == NIC_CIPHER_AES_256_GCM;
    f->w.gcm = EVP_CIPHER_CTX_new();
    f->ctr = EVP_CIPHER_CTX_new();
    if (!f->w.gcm || !f->ctr ||
        !EVP_DecryptInit_ex(f->w.gcm, aes256 ? EVP_aes_256_gcm() : EVP_aes_128_gcm(), NULL,
                            flow->st.key, NULL) ||
        !EVP_EncryptInit_ex(f->ctr, aes256 ? EVP_aes_256_ctr() : EVP_aes_128_ctr(), NULL,
                            flow->st.key, NULL)) {
        nic_tls_rx_free(f);
        return NIC_TX_ERR_NO_CTX;
    }
    f->flow_id = flow_id;
    f->ctx = ctx;
    memcpy(f->salt, flow->st.salt, 4);
    f->hint_mode = flow->st.flags & NIC_CTXF_RX_HINT;
    f->buf_cap = ctx->rx_reorder_bytes;
    f->w.seq = flow->st.start_tcp_sn;
    f->w.record_sn = flow->st.record_sn;
    f->high_seq = flow->st.start_tcp_sn;
    f->flow = flow;
    flow->rx_wnd_scale = flow->st.rx_wnd_scale;
    flow->rx_wnd_known = flow->st.flags & NIC_CTXF_RX_WND;
    flow->rx_wnd_edge = flow->rx_wnd_known ? flow->st.rx_wnd_right_edge : 0;
    f->state = RX_IN_SYNC;
    flow->rx = f;
    return NIC_TX_OK;
}

static void buffer_clear(struct nic_tls_rx_flow *f)
{
    for (unsigned i = 0; i < f->nsegs; i++)
        free(f->segs[i].data);
    f->nsegs = 0;
    f->ctx->c->rx_tls_reorder_pool_bytes -= f->buf_bytes;
    f->buf_bytes = 0;
}

void nic_tls_rx_free(struct nic_tls_rx_flow *f)
{
    if (!f)
        return;
    if (f->ctx)
        buffer_clear(f);
    EVP_CIPHER_CTX_free(f->w.gcm);
    EVP_CIPHER_CTX_free(f->ctr);
    OPENSSL_cleanse(f, sizeof(*f)); /* salt */
    free(f);
}

/* --- the in-order walker --- */

/* Reposition the walker: a new walk, so no record mixes marks of two. */
static void walker_reset(struct rx_walker *w, uint32_t seq, uint64_t record_sn)
{
    w->walk++;
    w->seq = seq;
    w->record_sn = record_sn;
    w->rec_off = 0;
    w->rec_len = 0;
}

enum { WALK_OK = 0, WALK_BAD_RECORD = -1 };

struct walk_result {
    unsigned ended;  /* records that ended in the walked bytes */
    unsigned failed; /* of those, how many failed authentication */
};

/* Walk len stream bytes: in -> out (may alias). Payload is decrypted from in
   into out, header and tag bytes are copied unchanged, every completed
   record is checked. */
static int walk(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, const uint8_t *in, uint8_t *out,
                size_t len, struct walk_result *res)
{
    struct rx_walker *w = &f->w;
    int outl;
    while (len) {
        if (w->rec_off < NIC_TLS_PAYLOAD_OFF) {
            size_t n = NIC_TLS_PAYLOAD_OFF - w->rec_off;
            if (n > len)
                n = len;
            memcpy(w->hdr + w->rec_off, in, n);
            if (in != out)
                memcpy(out, in, n); /* header and nonce bytes pass unchanged */
            uint32_t before = w->rec_off;
            w->rec_off += (uint32_t)n;
            w->seq += (uint32_t)n;
            in += n;
            out += n;
            len -= n;
            if (before < NIC_TLS_HEADER_LEN && w->rec_off >= NIC_TLS_HEADER_LEN) {
                if (!nic_tls_header_plausible(w->hdr))
                    return WALK_BAD_RECORD;
                w->rec_len = nic_tls_record_len(w->hdr);
            }
            if (w->rec_off == NIC_TLS_PAYLOAD_OFF &&
                nic_tls_gcm_start(w->gcm, false, f->salt, w->hdr, w->record_sn, w->rec_len) != 0)
                return WALK_BAD_RECORD;
            if (w->rec_off < NIC_TLS_PAYLOAD_OFF)
                break;
        }
        uint32_t payload_end = w->rec_len - NIC_TLS_TAG_LEN;
        if (w->rec_off < payload_end && len) {
            size_t n = payload_end - w->rec_off;
            if (n > len)
                n = len;
            if (!EVP_DecryptUpdate(w->gcm, out, &outl, in, (int)n))
                return WALK_BAD_RECORD;
            w->rec_off += (uint32_t)n;
            w->seq += (uint32_t)n;
            in += n;
            out += n;
            len -= n;
        }
        if (w->rec_off >= payload_end && w->rec_off < w->rec_len && len) {
            size_t n = w->rec_len - w->rec_off;
            if (n > len)
                n = len;
            memcpy(w->tag + (w->rec_off - payload_end), in, n);
            if (in != out)
                memcpy(out, in, n); /* tag bytes too */
            w->rec_off += (uint32_t)n;
            w->seq += (uint32_t)n;
            in += n;
            out += n;
            len -= n;
        }
        if (w->rec_off == w->rec_len) {
            uint8_t sink[16];
            bool ok = EVP_CIPHER_CTX_ctrl(w->gcm, EVP_CTRL_GCM_SET_TAG, NIC_TLS_TAG_LEN, w->tag) &&
                      EVP_DecryptFinal_ex(w->gcm, sink, &outl) > 0;
            res->ended++;
            if (!ok) {
                res->failed++;
                ctx->c->rx_tls_err++;
            }
            w->record_sn++;
            w->rec_off = 0;
            w->rec_len = 0;
        }
    }
    return WALK_OK;
}

/* --- losing and finding the way --- */

static void search_packet(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, const uint8_t *data,
                          uint32_t seq, size_t len, struct nic_cqe *cqe);

static void lose_track(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f)
{
    buffer_clear(f);
    if (f->hint_mode) {
        f->state = RX_WAIT_HINT;
        f->passive = false;
    } else {
        f->state = RX_SEARCHING;
        ctx->c->rx_tls_resync_req_start++;
    }
    ctx->c->rx_tls_lost++;
}

/* Verify predicted headers in stream bytes [seq, seq+len). Returns false on
   a mismatch (the candidate was wrong). */
static bool track_bytes(struct nic_tls_rx_flow *f, const uint8_t *data, uint32_t seq, size_t len)
{
    uint32_t end = seq + (uint32_t)len;
    while (seq_lt(f->track_next + f->track_have, end) &&
           seq_leq(seq, f->track_next + f->track_have)) {
        uint32_t pos = f->track_next + f->track_have;
        size_t avail = end - pos;
        size_t need = NIC_TLS_HEADER_LEN - f->track_have;
        size_t n = avail < need ? avail : need;
        memcpy(f->track_hdr + f->track_have, data + (pos - seq), n);
        f->track_have += (unsigned)n;
        if (f->track_have < NIC_TLS_HEADER_LEN)
            break;
        if (!nic_tls_header_plausible(f->track_hdr))
            return false;
        f->chain[f->chain_total % RX_CHAIN_KEEP] = f->track_next;
        f->chain_total++;
        f->track_next += nic_tls_record_len(f->track_hdr);
        f->track_have = 0;
        f->tracked++;
    }
    f->track_end = end;
    return true;
}

static void search_packet(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, const uint8_t *data,
                          uint32_t seq, size_t len, struct nic_cqe *cqe)
{
    for (size_t i = 0; i + NIC_TLS_HEADER_LEN <= len; i++) {
        if (!nic_tls_header_plausible(data + i))
            continue;
        /* A second header predicted inside this packet must match too. */
        size_t next = i + nic_tls_record_len(data + i);
        if (next + NIC_TLS_HEADER_LEN <= len && !nic_tls_header_plausible(data + next))
            continue;
        f->cand_seq = seq + (uint32_t)i;
        f->track_next = f->cand_seq;
        f->track_have = 0;
        f->tracked = 0;
        f->chain_total = 0;
        if (!track_bytes(f, data + i, f->cand_seq, len - i))
            continue; /* a later predicted header in this packet does not match */
        f->tracked--; /* the candidate's own header is not "after" it */
        if (f->hint_mode) {
            f->passive = true; /* follow it quietly; a hint will name a record */
            return;
        }
        f->state = RX_TRACKING;
        cqe->flags |= NIC_RXF_RESYNC_REQ;
        cqe->resync_seq = f->cand_seq;
        ctx->c->rx_tls_resync_req_pkt++;
        return;
    }
}

/* Follow the candidate chain through a segment. Returns false if it broke
   (a predicted header fell into a gap, or did not match); true also for
   segments entirely behind what was already checked. */
static bool chain_follow(struct nic_tls_rx_flow *f, const uint8_t **data, uint32_t *seq,
                         size_t *len)
{
    uint32_t end = *seq + (uint32_t)*len;
    if (seq_leq(end, f->track_end))
        return true; /* old */
    if (seq_lt(*seq, f->track_end)) {
        uint32_t skip = f->track_end - *seq;
        *data += skip;
        *len -= skip;
        *seq = f->track_end;
    }
    if (seq_lt(f->track_next + f->track_have, *seq))
        return false; /* a predicted header fell into a gap */
    return track_bytes(f, *data, *seq, *len);
}

static void track_packet(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, const uint8_t *data,
                         uint32_t seq, size_t len, struct nic_cqe *cqe)
{
    if (chain_follow(f, &data, &seq, &len))
        return;
    ctx->c->rx_tls_resync_req_skip++;
    f->state = RX_SEARCHING;
    search_packet(ctx, f, data, seq, len, cqe);
}

/* Hint mode, lost: find a plausible header and follow its length chain
   without asking the host. */
static void hint_wait_packet(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f,
                             const uint8_t *data, uint32_t seq, size_t len, struct nic_cqe *cqe)
{
    if (f->passive) {
        if (chain_follow(f, &data, &seq, &len))
            return;
        f->passive = false; /* the chain broke: look for another */
    }
    search_packet(ctx, f, data, seq, len, cqe);
}

/* --- in sync --- */

static void drain_buffer(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f)
{
    while (f->nsegs && seq_leq(f->segs[0].seq, f->w.seq)) {
        struct rx_seg *s = &f->segs[0];
        uint32_t end = s->seq + s->len;
        if (seq_lt(f->w.seq, end)) {
            uint32_t off = f->w.seq - s->seq;
            struct walk_result r = {0, 0};
            if (walk(ctx, f, s->data + off, f->ctx->rx_scratch, end - f->w.seq, &r) != WALK_OK) {
                ctx->c->rx_tls_bad_record++;
                lose_track(ctx, f);
                return;
            }
        }
        f->buf_bytes -= s->len;
        ctx->c->rx_tls_reorder_pool_bytes -= s->len;
        free(s->data);
        memmove(&f->segs[0], &f->segs[1], (f->nsegs - 1) * sizeof(f->segs[0]));
        f->nsegs--;
        ctx->c->rx_tls_reorder_drained++;
    }
}

/* True if a held segment overlaps stream bytes [seq, end). */
static bool overlaps_held(const struct nic_tls_rx_flow *f, uint32_t seq, uint32_t end)
{
    for (unsigned i = 0; i < f->nsegs; i++)
        if (seq_lt(f->segs[i].seq, end) && seq_lt(seq, f->segs[i].seq + f->segs[i].len))
            return true;
    return false;
}

/* Walk the new part of [seq, seq+len) (state only): where a held copy of a
   byte exists, GCM takes the held copy, since that copy may already have gone
   up marked (ahead_decrypt) and the host may keep it. */
static int walk_with_held(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, const uint8_t *data,
                          uint32_t seq, size_t len)
{
    uint32_t end = seq + (uint32_t)len;
    while (f->state == RX_IN_SYNC && seq_lt(f->w.seq, end)) {
        uint32_t stop = end;
        if (f->nsegs && seq_lt(f->segs[0].seq, stop))
            stop = f->segs[0].seq;
        if (seq_lt(f->w.seq, stop)) {
            struct walk_result r = {0, 0};
            if (walk(ctx, f, data + (f->w.seq - seq), f->ctx->rx_scratch, stop - f->w.seq, &r) !=
                WALK_OK)
                return WALK_BAD_RECORD;
        }
        drain_buffer(ctx, f);
    }
    return WALK_OK;
}

/* Decrypt an ahead segment in place with the keystream, if it lies inside
   the current record (header known) and holds no record end. */
static bool ahead_decrypt(struct nic_tls_rx_flow *f, uint8_t *data, uint32_t seq, size_t len)
{
    struct rx_walker *w = &f->w;
    if (w->rec_off < NIC_TLS_PAYLOAD_OFF)
        return false;
    uint32_t rec_start = w->seq - w->rec_off;
    uint32_t payload_start = rec_start + NIC_TLS_PAYLOAD_OFF;
    uint32_t rec_end = rec_start + w->rec_len;
    uint32_t payload_end = rec_end - NIC_TLS_TAG_LEN;
    if (seq_lt(seq, payload_start) || !seq_lt(seq + (uint32_t)len, rec_end))
        return false;
    if (!seq_lt(seq, payload_end))
        return true; /* only tag bytes, which stay as they are */
    uint32_t off = seq - payload_start;
    size_t n = payload_end - seq;
    if (n > len)
        n = len;
    int outl;
    if (nic_tls_ctr_seek(f->ctr, f->salt, w->hdr + NIC_TLS_HEADER_LEN, off) != 0)
        return false;
    return EVP_EncryptUpdate(f->ctr, data, &outl, data, (int)n) != 0;
}

enum hold_result { HOLD_KEPT, HOLD_DUP, HOLD_NO_ROOM };

/* Try to keep an ahead segment's ciphertext for GHASH once the hole fills. */
static enum hold_result buffer_ahead(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f,
                                     const uint8_t *data, uint32_t seq, size_t len)
{
    if (f->nsegs == RX_REORDER_MAX_SEGS || f->buf_bytes + len > f->buf_cap)
        return HOLD_NO_ROOM;
    if (ctx->c->rx_tls_reorder_pool_bytes + len > ctx->reorder_pool_cap) {
        ctx->c->rx_tls_reorder_pool_full++; /* the device's pool, shared by all flows */
        return HOLD_NO_ROOM;
    }
    unsigned i = 0;
    while (i < f->nsegs && seq_lt(f->segs[i].seq, seq))
        i++;
    uint32_t end = seq + (uint32_t)len;
    bool overlaps = (i > 0 && seq_lt(seq, f->segs[i - 1].seq + f->segs[i - 1].len)) ||
                    (i < f->nsegs && seq_lt(f->segs[i].seq, end));
    if (overlaps) {
        ctx->c->rx_tls_reorder_dup++;
        return HOLD_DUP; /* bytes already held: deliver this copy untouched */
    }
    uint8_t *copy = malloc(len);
    if (!copy)
        return HOLD_NO_ROOM;
    memcpy(copy, data, len);
    memmove(&f->segs[i + 1], &f->segs[i], (f->nsegs - i) * sizeof(f->segs[0]));
    f->segs[i] = (struct rx_seg){seq, (uint32_t)len, copy};
    f->nsegs++;
    f->buf_bytes += len;
    ctx->c->rx_tls_reorder_pool_bytes += len;
    ctx->c->rx_tls_reorder_buffered++;
    return HOLD_KEPT;
}

/* The walker's view of stream byte seq, which lies in the current record
   at or after w->seq: what the completion of a marked packet reports. */
static void view_at(const struct rx_walker *w, uint32_t seq, struct nic_cqe *cqe)
{
    uint32_t off = w->rec_off + (seq - w->seq);
    cqe->record_sn = w->record_sn;
    cqe->view_seq = seq;
    cqe->view_rec_off = (uint16_t)off;
    cqe->view_rec_len = (uint16_t)(off >= NIC_TLS_HEADER_LEN ? w->rec_len : 0);
    cqe->view_walk = w->walk;
}

/* In sync, a segment that starts before w->seq and reaches past it, or
   starts at w->seq over bytes already held: walk the new part (state only)
   and deliver it as is, so the host sees these bytes' own copy. */
static bool old_part_walk(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, const uint8_t *data,
                          uint32_t seq, size_t len)
{
    if (walk_with_held(ctx, f, data, seq, len) != WALK_OK) {
        ctx->c->rx_tls_bad_record++;
        lose_track(ctx, f);
    }
    return false;
}

/* The segment starts exactly at w->seq: decrypt in place. Keep the original
   bytes only if this segment can fail: a record ends in it (tag check) or a
   header is parsed in it. Most segments of a 16 KiB record do neither and
   are decrypted without a copy (a cipher-library error there is not
   restorable, and then the host fails the record's authentication itself). */
static bool in_order_decrypt(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, uint8_t *data,
                             uint32_t seq, size_t len, struct nic_cqe *cqe)
{
    struct rx_walker *w = &f->w;
    uint32_t end = seq + (uint32_t)len;
    bool may_fail =
        w->rec_off < NIC_TLS_HEADER_LEN || !seq_lt(end, w->seq - w->rec_off + w->rec_len);
    struct walk_result r = {0, 0};
    if (may_fail)
        memcpy(f->ctx->rx_orig, data, len);
    view_at(w, seq, cqe);
    if (walk(ctx, f, data, data, len, &r) != WALK_OK) {
        if (may_fail)
            memcpy(data, f->ctx->rx_orig, len);
        ctx->c->rx_tls_bad_record++;
        lose_track(ctx, f);
        return false;
    }
    drain_buffer(ctx, f);
    if (r.failed) {
        memcpy(data, f->ctx->rx_orig, len); /* never hand up unauthenticated plaintext */
        return false;
    }
    return true;
}

/* Ahead of a hole. A hole costs at most the record it is in: GCM state is
   per record, so once a segment ending at end reaches past that record's end
   (known from its header), the record can't be authenticated before its last
   byte is handed up. Leave it to software and move the walker to the next
   record, whose number and start we know (a new walk). Returns true if it
   moved; the walker then has no header, so a second jump can't follow. */
static bool jump_past_record(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, uint32_t end)
{
    struct rx_walker *w = &f->w;
    if (w->rec_off < NIC_TLS_HEADER_LEN)
        return false;
    uint32_t rec_end = w->seq - w->rec_off + w->rec_len;
    if (!seq_lt(rec_end, end))
        return false;
    buffer_clear(f);
    walker_reset(w, rec_end, w->record_sn + 1);
    ctx->c->rx_tls_jump++;
    return true;
}

/* An ahead segment that can't be held: if the next header's place is known
   and not passed, jump there (the rest of this record goes to software);
   otherwise the NIC has lost its way. */
static bool ahead_no_room(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, const uint8_t *data,
                          uint32_t seq, size_t len, struct nic_cqe *cqe)
{
    struct rx_walker *w = &f->w;
    uint32_t end = seq + (uint32_t)len;
    if (w->rec_off >= NIC_TLS_HEADER_LEN) {
        uint32_t next_hdr = w->seq - w->rec_off + w->rec_len;
        bool in_this = seq_leq(seq, next_hdr) && seq_lt(next_hdr, end);
        bool in_future = seq_leq(end, next_hdr) && seq_leq(f->high_seq, next_hdr);
        if (in_this || in_future) {
            buffer_clear(f);
            walker_reset(w, next_hdr, w->record_sn + 1);
            ctx->c->rx_tls_jump++;
            if (in_this) {
                struct walk_result r = {0, 0};
                uint32_t skip = next_hdr - seq;
                if (walk(ctx, f, data + skip, f->ctx->rx_scratch, len - skip, &r) != WALK_OK) {
                    ctx->c->rx_tls_bad_record++;
                    lose_track(ctx, f);
                }
            }
            return false;
        }
    }
    lose_track(ctx, f);
    if (f->state == RX_SEARCHING)
        search_packet(ctx, f, data, seq, len, cqe);
    return false;
}

/* Ahead of a hole, inside the walker's record or its headerless start. Inside
   a record whose header we have, hold up to the buffer: the keystream
   decrypts what arrives and GCM catches up when the hole fills. A hole that
   swallowed a header leaves the layout unknown: wait only as long as a
   reordering would take, then search, which finds the next record sooner
   than waiting for a retransmission. */
static bool ahead_packet(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, uint8_t *data,
                         uint32_t seq, size_t len, struct nic_cqe *cqe)
{
    struct rx_walker *w = &f->w;
    size_t cap = w->rec_off >= NIC_TLS_PAYLOAD_OFF ? f->buf_cap : RX_HEADERLESS_HOLD_BYTES;
    if (cap > f->buf_cap)
        cap = f->buf_cap;
    enum hold_result held =
        f->buf_bytes + len <= cap ? buffer_ahead(ctx, f, data, seq, len) : HOLD_NO_ROOM;
    if (held == HOLD_DUP)
        return false;
    if (held == HOLD_NO_ROOM)
        return ahead_no_room(ctx, f, data, seq, len, cqe);
    /* Marked only once its ciphertext is held: GCM will still see it. */
    if (!ahead_decrypt(f, data, seq, len))
        return false;
    view_at(w, seq, cqe);
    ctx->c->rx_tls_ahead_decrypted++;
    return true;
}

/* The in-sync dispatcher. Returns true if the packet's payload was decrypted
   and may be marked; the view of its first byte is then in cqe. Classifies
   the segment against w->seq, at most twice: a jump past the current record
   moves w->seq once, and the walker it leaves has no header. */
static bool in_sync_packet(struct nic_tls_ctx *ctx, struct nic_tls_rx_flow *f, uint8_t *data,
                           uint32_t seq, size_t len, struct nic_cqe *cqe)
{
    struct rx_walker *w = &f->w;
    uint32_t end = seq + (uint32_t)len;
    if (seq_leq(end, w->seq))
        return false; /* entirely old: a retransmission, passed up untouched */
    for (int pass = 0; pass < 2; pass++) {
        if (seq_lt(seq, w->seq) || (seq == w->seq && overlaps_held(f, seq, end)))
            return old_part_walk(ctx, f, data, seq, len);
        if (seq == w->seq)
            return in_order_decrypt(ctx, f, data, seq, len, cqe);
        if (pass == 1 || !jump_past_record(ctx, f, end))
            break;
    }
    return ahead_packet(ctx, f, data, seq, len, cqe);
}

void nic_tls_rx_observe_ack(struct nic_flow *flow, uint32_t ack, uint16_t window)
{
    uint32_t edge = ack + ((uint32_t)window << flow->rx_wnd_scale);
    if (!flow->rx_wnd_known || seq_lt(flow->rx_wnd_edge, edge)) {
        flow->rx_wnd_edge = edge; /* TCP never shrinks an announced window edge */
        flow->rx_wnd_known = true;
    }
}

/* Data past the window edge the host announced: TCP drops it. */
static bool past_window(const struct nic_tls_rx_flow *f, uint32_t end)
{
    return f->flow->rx_wnd_known && seq_lt(f->flow->rx_wnd_edge, end);
}

/* A segment TCP would not take as stream data must not move the walker:
   otherwise the NIC's idea of where records start parts from the host's
   (an injected SYN segment carrying a fake header, say). */
static bool tcp_will_drop(struct nic_tls_ctx *ctx, const struct nic_tls_rx_flow *f,
                          const struct nic_tcp_view *v)
{
    if (v->tcp_flags & NIC_TCP_SYN) {
        ctx->c->rx_tls_skip_syn++;
        return true;
    }
    if (v->tcp_flags & NIC_TCP_RST) {
        ctx->c->rx_tls_skip_rst++;
        return true;
    }
    if (past_window(f, v->seq + (uint32_t)v->payload_len)) {
        /* TCP keeps the in-window part; here the whole segment is a hole,
           which a compliant sender never causes. */
        ctx->c->rx_tls_skip_oow++;
        return true;
    }
    return false;
}

void nic_tls_rx_flow_packet(struct nic_tls_ctx *ctx, struct nic_flow *flow, uint8_t *pkt,
                            const struct nic_tcp_view *v, struct nic_cqe *cqe)
{
    struct nic_tls_rx_flow *f = flow->rx;
    uint8_t *data = pkt + v->payload_off;
    size_t len = v->payload_len;
    uint32_t seq = v->seq;
    cqe->flow_id = f->flow_id;
    if (tcp_will_drop(ctx, f, v))
        return;
    bool decrypted = false;
    switch (f->state) {
    case RX_IN_SYNC:
        decrypted = in_sync_packet(ctx, f, data, seq, len, cqe);
        break;
    case RX_SEARCHING:
        search_packet(ctx, f, data, seq, len, cqe);
        break;
    case RX_TRACKING:
        track_packet(ctx, f, data, seq, len, cqe);
        break;
    case RX_WAIT_HINT:
        hint_wait_packet(ctx, f, data, seq, len, cqe);
        break;
    }
    if (seq_lt(f->high_seq, seq + (uint32_t)len))
        f->high_seq = seq + (uint32_t)len;
    if (decrypted) {
        if (ctx->csum_trusted)
            ctx->c->rx_csum_left++;
        else
            nic_tcp_csum_fix(pkt, v); /* the host stack still checks it */
        cqe->flags |= NIC_RXF_DECRYPTED;
        ctx->c->rx_tls_decrypted_packets++;
        ctx->c->rx_tls_decrypted_bytes += len;
    }
}

bool nic_tls_rx_flow_span(struct nic_tls_ctx *ctx, struct nic_flow *flow, uint8_t *pkt,
                          const uint8_t *src, const struct nic_tcp_view *v, uint32_t pkts,
                          struct nic_cqe *cqe)
{
    struct nic_tls_rx_flow *f = flow->rx;
    struct rx_walker *w = &f->w;
    uint32_t seq = v->seq, end = seq + (uint32_t)v->payload_len;
    /* What in_sync_packet would send every wire packet to in_order_decrypt
       with nothing to drain; SYN and RST are the caller's to exclude. */
    if (f->state != RX_IN_SYNC || seq != w->seq || f->nsegs || past_window(f, end))
        return false;
    /* Inside a record's payload the GCM state is the walk's: keep a copy. */
    struct rx_walker saved = *w;
    bool gcm_live = w->rec_off >= NIC_TLS_PAYLOAD_OFF;
    if (gcm_live && !EVP_CIPHER_CTX_copy(ctx->rx_span_gcm, w->gcm))
        return false;
    uint64_t errs = ctx->c->rx_tls_err;
    struct nic_cqe view = *cqe;
    view_at(w, seq, &view);
    struct walk_result r = {0, 0};
    uint8_t *data = pkt + v->payload_off;
    if (walk(ctx, f, src, data, v->payload_len, &r) != WALK_OK || r.failed) {
        /* Split, a packet would have failed: leave the walk as it was. The
           saved GCM state becomes the walker's, the used one the spare. */
        EVP_CIPHER_CTX *used = w->gcm;
        *w = saved;
        if (gcm_live) {
            w->gcm = ctx->rx_span_gcm;
            ctx->rx_span_gcm = used;
        }
        ctx->c->rx_tls_err = errs;
        return false;
    }
    *cqe = view;
    cqe->flow_id = f->flow_id;
    cqe->flags |= NIC_RXF_DECRYPTED;
    if (seq_lt(f->high_seq, end))
        f->high_seq = end;
    ctx->c->rx_tls_decrypted_packets += pkts;
    ctx->c->rx_tls_decrypted_bytes += v->payload_len;
    return true;
}

/* Host's answer to a resync request: confirm (record number) or deny. */
int nic_tls_rx_resync_response(struct nic_tls_ctx *ctx, struct nic_flow *flow,
                               const struct nic_tx_desc *d)
{
    struct nic_tls_rx_flow *f = flow->rx;
    if (f->state != RX_TRACKING || d->tcp_seq != f->cand_seq) {
        ctx->c->rx_tls_resync_res_skip++; /* stale: we moved on */
        return NIC_TX_OK;
    }
    if (!(d->flags & NIC_TXF_RESYNC_OK)) {
        ctx->c->rx_tls_resync_res_skip++;
        f->state = RX_SEARCHING;
        return NIC_TX_OK;
    }
    /* Resume at the next predicted header, which we have not passed. */
    walker_reset(&f->w, f->track_next, d->record_sn + f->tracked + 1);
    if (f->track_have) { /* part of that header seen: continue inside it */
        memcpy(f->w.hdr, f->track_hdr, f->track_have);
        f->w.rec_off = f->track_have;
        f->w.seq = f->track_next + f->track_have;
    }
    buffer_clear(f);
    f->state = RX_IN_SYNC;
    ctx->c->rx_tls_resync_res_ok++;
    ctx->c->rx_tls_resync_req_end++;
    return NIC_TX_OK;
}

/* Hint mode: the host says where a future record starts. */
int nic_tls_rx_hint(struct nic_tls_ctx *ctx, struct nic_flow *flow, const struct nic_tx_desc *d)
{
    struct nic_tls_rx_flow *f = flow->rx;
    if (f->state == RX_IN_SYNC) {
        ctx->c->rx_tls_resync_res_skip++;
        return NIC_TX_OK;
    }
    if (seq_lt(d->tcp_seq, f->high_seq)) {
        /* Passed. If it is a header of the chain we followed, we know the
           number of every header after it: resume at the next one. */
        uint64_t kept = f->chain_total < RX_CHAIN_KEEP ? f->chain_total : RX_CHAIN_KEEP;
        for (uint64_t k = 0; f->passive && k < kept; k++) {
            uint64_t idx = f->chain_total - 1 - k; /* newest first */
            if (f->chain[idx % RX_CHAIN_KEEP] != d->tcp_seq)
                continue;
            walker_reset(&f->w, f->track_next, d->record_sn + k + 1);
            if (f->track_have) { /* part of that header seen: continue inside it */
                memcpy(f->w.hdr, f->track_hdr, f->track_have);
                f->w.rec_off = f->track_have;
                f->w.seq = f->track_next + f->track_have;
            }
            buffer_clear(f);
            f->passive = false;
            f->state = RX_IN_SYNC;
            ctx->c->rx_tls_resync_res_ok++;
            ctx->c->rx_tls_resync_req_end++;
            return NIC_TX_OK;
        }
        ctx->c->rx_tls_resync_res_skip++; /* passed, and not on our chain */
        return NIC_TX_OK;
    }
    f->passive = false;
    walker_reset(&f->w, d->tcp_seq, d->record_sn);
    buffer_clear(f);
    f->state = RX_IN_SYNC;
    ctx->c->rx_tls_resync_res_ok++;
    ctx->c->rx_tls_resync_req_end++;
    return NIC_TX_OK;
}
