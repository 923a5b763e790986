/*
 * nic_tls_tx.c - autonomous TLS transmit offload (docs/design.md §4).
 *
 * The host writes each record as plaintext with a blank tag. For every
 * offloaded segment that starts at the expected TCP sequence number, the NIC
 * walks the records in the payload — headers and tags may be split across
 * segments, many records may share one — encrypts payload bytes with AES-GCM,
 * writes each tag, and fixes the TCP checksum.
 *
 * Recovery from out-of-sequence segments (retransmissions) is driven by the
 * driver:
 *   - dump policy (as mlx5): PROGRESS (record start seq, record number) then
 *     DUMP descriptors with the record's bytes up to the segment: the NIC runs
 *     them through the cipher to rebuild GHASH/counter state, sends nothing.
 *   - tagcache policy: PROGRESS with NIC_TXF_ONESHOT: the NIC seeks the
 *     keystream to the segment's offset in its record, writes the cached tag
 *     if the segment holds tag bytes, and afterwards its main state is as
 *     before — new data continues in sequence without any resync.
 */
#include "nic_csum.h"
#include "nic_tls.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* Where the walker stands in the record stream. */
struct tx_walker {
    uint32_t expected_seq; /* TCP seq of the next byte */
    uint64_t record_sn;    /* number of the current record */
    uint32_t rec_off;      /* bytes of the current record already walked */
    uint32_t rec_len;      /* total record length, valid once rec_off >= 5 */
    uint8_t hdr[NIC_TLS_PAYLOAD_OFF];
    bool keystream_only; /* resumed mid-record: no GHASH, tag must be cached */
    bool lost;           /* a record failed mid-walk: no valid state until a PROGRESS resets it */
    bool tag_valid;
    uint8_t tag[NIC_TLS_TAG_LEN];
    /* Cipher state is per walker: a one-shot that runs into the next record
       must not disturb the main walker's record in progress. */
    EVP_CIPHER_CTX *gcm; /* the record in progress */
    EVP_CIPHER_CTX *ctr; /* keystream-only mode */
};

struct nic_tls_tx_flow {
    struct tx_walker main;    /* in-sequence state */
    struct tx_walker oneshot; /* tagcache resync for the next DATA only */
    bool oneshot_armed;
    bool report_tags;
    uint32_t flow_id;
    uint8_t salt[4];
};

enum walk_result { WALK_OK = 0, WALK_BAD_RECORD = -1, WALK_NO_TAG = -2 };

/* Restart a walker at the start of record record_sn, at TCP seq seq. */
static void walker_reset(struct tx_walker *w, uint32_t seq, uint64_t record_sn)
{
    EVP_CIPHER_CTX *gcm = w->gcm, *ctr = w->ctr;
    memset(w, 0, sizeof(*w));
    w->gcm = gcm;
    w->ctr = ctr;
    w->expected_seq = seq;
    w->record_sn = record_sn;
}

void nic_tls_tx_prefetch(const struct nic_flow *flow)
{
    const struct nic_tls_tx_flow *tx = flow->tx;
    if (!tx)
        return;
    __builtin_prefetch(&tx->main);
    __builtin_prefetch((const uint8_t *)&tx->main + 64);
}

int nic_tls_tx_install(struct nic_flow *flow)
{
    struct nic_tls_tx_flow *tx = calloc(1, sizeof(*tx));
    if (!tx)
        return NIC_TX_ERR_NO_CTX;
    bool aes256 = flow->st.cipher == NIC_CIPHER_AES_256_GCM;
    const EVP_CIPHER *gcm = aes256 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
    const EVP_CIPHER *ctr = aes256 ? EVP_aes_256_ctr() : EVP_aes_128_ctr();
    struct tx_walker *ws[2] = {&tx->main, &tx->oneshot};
    for (int i = 0; i < 2; i++) {
        ws[i]->gcm = EVP_CIPHER_CTX_new();
        ws[i]->ctr = EVP_CIPHER_CTX_new();
        if (!ws[i]->gcm || !ws[i]->ctr ||
            !EVP_EncryptInit_ex(ws[i]->gcm, gcm, NULL, flow->st.key, NULL) ||
            !EVP_EncryptInit_ex(ws[i]->ctr, ctr, NULL, flow->st.key, NULL)) {
            nic_tls_tx_free(tx);
            return NIC_TX_ERR_NO_CTX;
        }
    }
    memcpy(tx->salt, flow->st.salt, 4);
    tx->report_tags = flow->st.flags & NIC_CTXF_TAG_REPORT;
    tx->main.expected_seq = flow->st.start_tcp_sn;
    tx->main.record_sn = flow->st.record_sn;
    flow->tx = tx;
    return NIC_TX_OK;
}

void nic_tls_tx_free(struct nic_tls_tx_flow *tx)
{
    if (!tx)
        return;
    EVP_CIPHER_CTX_free(tx->main.gcm);
    EVP_CIPHER_CTX_free(tx->main.ctr);
    EVP_CIPHER_CTX_free(tx->oneshot.gcm);
    EVP_CIPHER_CTX_free(tx->oneshot.ctr);
    OPENSSL_cleanse(tx, sizeof(*tx)); /* salt */
    free(tx);
}

static void report_tag(struct nic_tls_ctx *ctx, struct nic_tls_tx_flow *tx,
                       const struct tx_walker *w)
{
    struct nic_cqe e = {.kind = NIC_CQE_TX_DONE,
                        .status = NIC_TX_OK,
                        .flags = NIC_RXF_TAG_REPORT,
                        .flow_id = tx->flow_id,
                        .record_sn = w->record_sn};
    memcpy(e.tag, w->tag, sizeof(e.tag));
    ctx->post_tx_cqe(ctx->sink, &e);
    ctx->c->tx_tls_tag_reports++;
}

/* Keystream-only resume at payload offset off of record record_sn. */
static int seek_keystream(struct nic_tls_tx_flow *tx, struct tx_walker *w, uint64_t record_sn,
                          uint32_t off)
{
    uint8_t nonce[NIC_TLS_NONCE_LEN];
    nic_put_be64(nonce, record_sn); /* explicit nonce == record number (our host's rule) */
    return nic_tls_ctr_seek(w->ctr, tx->salt, nonce, off) == 0 ? WALK_OK : WALK_BAD_RECORD;
}

/* Walk len stream bytes through the record state: in -> out (may alias).
   Payload is encrypted, header bytes copied, tags written. Reports tags
   when `report` is set. */
static int walk(struct nic_tls_ctx *ctx, struct nic_tls_tx_flow *tx, struct tx_walker *w,
                const uint8_t *in, uint8_t *out, size_t len, bool report)
{
    int outl;
    while (len) {
        if (w->rec_off < NIC_TLS_PAYLOAD_OFF) {
            size_t n = NIC_TLS_PAYLOAD_OFF - w->rec_off;
            if (n > len)
                n = len;
            memcpy(w->hdr + w->rec_off, in, n);
            if (out != in)
                memcpy(out, in, n);
            uint32_t before = w->rec_off;
            w->rec_off += (uint32_t)n;
            in += n;
            out += n;
            len -= n;
            /* A one-shot resumed inside the header lacks its first bytes; it
               was given the record length instead. */
            if (before < NIC_TLS_HEADER_LEN && w->rec_off >= NIC_TLS_HEADER_LEN &&
                !w->keystream_only) {
                if (!nic_tls_header_plausible(w->hdr))
                    return WALK_BAD_RECORD;
                w->rec_len = nic_tls_record_len(w->hdr);
            }
            if (w->rec_off == NIC_TLS_PAYLOAD_OFF && !w->keystream_only &&
                nic_tls_gcm_start(w->gcm, true, tx->salt, w->hdr, w->record_sn, w->rec_len) != 0)
                return WALK_BAD_RECORD;
        }
        uint32_t payload_end = w->rec_len - NIC_TLS_TAG_LEN;
        if (w->rec_off >= NIC_TLS_PAYLOAD_OFF && w->rec_off < payload_end && len) {
            size_t n = payload_end - w->rec_off;
            if (n > len)
                n = len;
            EVP_CIPHER_CTX *c = w->keystream_only ? w->ctr : w->gcm;
            if (!EVP_EncryptUpdate(c, out, &outl, in, (int)n))
                return WALK_BAD_RECORD;
            w->rec_off += (uint32_t)n;
            in += n;
            out += n;
            len -= n;
        }
        if (w->rec_off == payload_end && !w->tag_valid) {
            if (w->keystream_only) {
                if (!len)
                    break;          /* segment ends before the tag: none needed */
                return WALK_NO_TAG; /* the driver must send the cached tag */
            }
            if (!EVP_EncryptFinal_ex(w->gcm, NULL, &outl) ||
                !EVP_CIPHER_CTX_ctrl(w->gcm, EVP_CTRL_GCM_GET_TAG, NIC_TLS_TAG_LEN, w->tag))
                return WALK_BAD_RECORD;
            w->tag_valid = true;
            if (report)
                report_tag(ctx, tx, w);
        }
        if (w->rec_off >= payload_end && len) {
            size_t n = w->rec_len - w->rec_off;
            if (n > len)
                n = len;
            memcpy(out, w->tag + (w->rec_off - payload_end), n);
            w->rec_off += (uint32_t)n;
            in += n;
            out += n;
            len -= n;
        }
        if (w->rec_off == w->rec_len && w->rec_off >= NIC_TLS_PAYLOAD_OFF) {
            w->record_sn++;
            w->rec_off = 0;
            w->keystream_only = false;
            w->tag_valid = false;
        }
    }
    return WALK_OK;
}

int nic_tls_tx_progress(struct nic_tls_ctx *ctx, struct nic_flow *flow, const struct nic_tx_desc *d)
{
    struct nic_tls_tx_flow *tx = flow->tx;
    ctx->c->tx_tls_ooo++;
    if (!(d->flags & NIC_TXF_ONESHOT)) {
        /* Dump policy: restart at the record start; DUMP descriptors follow. */
        walker_reset(&tx->main, d->tcp_seq, d->record_sn);
        tx->oneshot_armed = false;
        return NIC_TX_OK;
    }
    ctx->c->tx_tls_oneshot++;
    struct tx_walker *w = &tx->oneshot;
    walker_reset(w, d->tcp_seq + d->rec_off, d->record_sn);
    w->rec_off = d->rec_off;
    w->rec_len = d->len;
    if (d->rec_off > 0) {
        if (d->len < NIC_TLS_PAYLOAD_OFF + NIC_TLS_TAG_LEN || d->rec_off >= d->len)
            return NIC_TX_ERR_BAD_DESC;
        w->keystream_only = true;
        if (d->flags & NIC_TXF_TAG_VALID) {
            memcpy(w->tag, d->tag, sizeof(w->tag));
            w->tag_valid = true;
        }
        uint32_t payload_end = d->len - NIC_TLS_TAG_LEN;
        if (d->rec_off < payload_end) {
            uint32_t off = d->rec_off > NIC_TLS_PAYLOAD_OFF ? d->rec_off - NIC_TLS_PAYLOAD_OFF : 0;
            if (seek_keystream(tx, w, d->record_sn, off) != WALK_OK)
                return NIC_TX_ERR_BAD_DESC;
        }
    }
    tx->oneshot_armed = true;
    return NIC_TX_OK;
}

int nic_tls_tx_dump(struct nic_tls_ctx *ctx, struct nic_flow *flow, const struct nic_tx_desc *d)
{
    struct nic_tls_tx_flow *tx = flow->tx;
    if (d->len == 0)
        return NIC_TX_ERR_BAD_DESC;
    /* Read from host memory; output to device memory, then discarded. */
    if (walk(ctx, tx, &tx->main, (const uint8_t *)(uintptr_t)d->addr, ctx->dump_buf, d->len,
             false) != WALK_OK) {
        tx->main.lost = true; /* as for DATA: wait for the next PROGRESS */
        ctx->c->tx_tls_bad_record++;
        return NIC_TX_ERR_BAD_DESC;
    }
    tx->main.expected_seq += d->len;
    ctx->c->tx_tls_dump_packets++;
    ctx->c->tx_tls_dump_bytes += d->len;
    ctx->c->tx_tls_resync_bytes += d->len;
    return NIC_TX_OK;
}

int nic_tls_tx_packet(struct nic_tls_ctx *ctx, struct nic_flow *flow, uint32_t flow_id,
                      const struct nic_tcp_view *v, const uint8_t *host, uint8_t *pkt, size_t len,
                      bool csum)
{
    struct nic_tls_tx_flow *tx = flow->tx;
    tx->flow_id = flow_id;
    /* DMA the headers into device memory; the payload is read once, by the
       cipher, which writes it encrypted into device memory. */
    memcpy(pkt, host, v->payload_len ? v->payload_off : len);
    if (v->payload_len == 0)
        return NIC_TX_OK; /* nothing to encrypt */
    bool oneshot = tx->oneshot_armed;
    struct tx_walker *w = oneshot ? &tx->oneshot : &tx->main;
    tx->oneshot_armed = false;
    if (w->lost || v->seq != w->expected_seq) {
        ctx->c->tx_tls_seq_mismatch++;
        return NIC_TX_ERR_DROPPED;
    }
    int r = walk(ctx, tx, w, host + v->payload_off, pkt + v->payload_off, v->payload_len,
                 !oneshot && tx->report_tags);
    if (r != WALK_OK) {
        if (!oneshot) /* the main state is lost: only a resync recovers it */
            w->lost = true;
        ctx->c->tx_tls_bad_record++;
        return NIC_TX_ERR_DROPPED;
    }
    w->expected_seq += (uint32_t)v->payload_len;
    size_t end = v->payload_off + v->payload_len;
    if (len > end)
        memcpy(pkt + end, host + end, len - end); /* bytes past the IP total length */
    if (csum)
        nic_tcp_csum_fix(pkt, v);
    ctx->c->tx_tls_encrypted_packets++;
    ctx->c->tx_tls_encrypted_bytes += v->payload_len;
    return NIC_TX_OK;
}
