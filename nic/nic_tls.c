/*
 * nic_tls.c - flow context control descriptors (install, delete, progress,
 * dump, resync response, hint) and the record crypto both directions share.
 */
#include "nic_tls.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- shared device memory and the context cache (docs/design.md §10) --- */

int nic_tls_ctx_init(struct nic_tls_ctx *ctx, uint64_t scratch_bytes, uint32_t cache_cap,
                     uint32_t fetch_ns)
{
    if (scratch_bytes < NIC_TLS_SCRATCH_FIXED)
        return -1;
    ctx->dump_buf = malloc(NIC_MAX_PACKET);
    ctx->rx_orig = malloc(NIC_MAX_PACKET);
    ctx->rx_scratch = malloc(NIC_MAX_PACKET);
    ctx->fetch_buf = malloc(NIC_CTX_HOST_BYTES);
    ctx->rx_span_gcm = EVP_CIPHER_CTX_new();
    ctx->reorder_pool_cap = scratch_bytes - NIC_TLS_SCRATCH_FIXED;
    ctx->cache_cap = cache_cap;
    ctx->fetch_ns = fetch_ns;
    ctx->lru_head = ctx->lru_tail = 0;
    if (!ctx->dump_buf || !ctx->rx_orig || !ctx->rx_scratch || !ctx->fetch_buf ||
        !ctx->rx_span_gcm) {
        nic_tls_ctx_fini(ctx);
        return -1;
    }
    return 0;
}

/* The buffers held record bytes and a fetched block's key: wiped. */
void nic_tls_ctx_fini(struct nic_tls_ctx *ctx)
{
    uint8_t **bufs[] = {&ctx->dump_buf, &ctx->rx_orig, &ctx->rx_scratch};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (*bufs[i])
            OPENSSL_cleanse(*bufs[i], NIC_MAX_PACKET);
        free(*bufs[i]);
        *bufs[i] = NULL;
    }
    if (ctx->fetch_buf)
        OPENSSL_cleanse(ctx->fetch_buf, NIC_CTX_HOST_BYTES);
    free(ctx->fetch_buf);
    ctx->fetch_buf = NULL;
    EVP_CIPHER_CTX_free(ctx->rx_span_gcm); /* frees and wipes the saved key schedule */
    ctx->rx_span_gcm = NULL;
}

/* What an eviction writes at NIC_CTX_HOST_NIC_OFF of the block. The
   simulation keeps each context's cipher and walker state in process memory
   whether it is resident or not; the cache decides what an access costs.
   The stamp lets a fetch check that the host left the block alone. */
#define CTX_WB_MAGIC 0x6e637478u /* "nctx" */
struct ctx_writeback {
    uint32_t magic;
    uint32_t flow_id;
    uint32_t writebacks; /* this context's evictions so far */
    uint8_t cipher, direction;
    uint16_t sport, dport;
    uint32_t saddr, daddr;
};
_Static_assert(NIC_CTX_HOST_NIC_OFF + sizeof(struct ctx_writeback) <= NIC_CTX_HOST_BYTES,
               "the write-back fits the NIC's part of the host block");

static uint32_t flow_id_of(const struct nic_tls_ctx *ctx, const struct nic_flow *f)
{
    return (uint32_t)(f - ctx->flows->slots) + 1;
}

static struct nic_flow *slot(struct nic_tls_ctx *ctx, uint32_t id)
{
    return &ctx->flows->slots[id - 1];
}

static void lru_unlink(struct nic_tls_ctx *ctx, struct nic_flow *f)
{
    if (f->lru_prev)
        slot(ctx, f->lru_prev)->lru_next = f->lru_next;
    else
        ctx->lru_head = f->lru_next;
    if (f->lru_next)
        slot(ctx, f->lru_next)->lru_prev = f->lru_prev;
    else
        ctx->lru_tail = f->lru_prev;
    f->lru_prev = f->lru_next = 0;
}

static void lru_push_front(struct nic_tls_ctx *ctx, struct nic_flow *f)
{
    uint32_t id = flow_id_of(ctx, f);
    f->lru_prev = 0;
    f->lru_next = ctx->lru_head;
    if (ctx->lru_head)
        slot(ctx, ctx->lru_head)->lru_prev = id;
    else
        ctx->lru_tail = id;
    ctx->lru_head = id;
}

/* Write the least recently used context back to its host block. */
static void evict_lru(struct nic_tls_ctx *ctx)
{
    struct nic_flow *v = slot(ctx, ctx->lru_tail);
    lru_unlink(ctx, v);
    v->resident = false;
    v->writebacks++;
    struct ctx_writeback wb = {.magic = CTX_WB_MAGIC,
                               .flow_id = flow_id_of(ctx, v),
                               .writebacks = v->writebacks,
                               .cipher = v->st.cipher,
                               .direction = v->st.direction,
                               .sport = v->st.sport,
                               .dport = v->st.dport,
                               .saddr = v->st.saddr,
                               .daddr = v->st.daddr};
    memcpy(v->host + NIC_CTX_HOST_NIC_OFF, &wb, sizeof(wb)); /* DMA write */
    ctx->c->tls_ctx_evict++;
    ctx->c->tls_ctx_writeback_bytes += NIC_CTX_HOST_BYTES - NIC_CTX_HOST_NIC_OFF;
    ctx->c->tls_ctx_resident--;
}

/* Make f resident at the front of the list, evicting first if full. */
static void place(struct nic_tls_ctx *ctx, struct nic_flow *f)
{
    if (ctx->cache_cap) {
        if (ctx->c->tls_ctx_resident >= ctx->cache_cap)
            evict_lru(ctx);
        lru_push_front(ctx, f);
    }
    f->resident = true;
    ctx->c->tls_ctx_resident++;
}

/* The engine waits out the fetch: a busy wait, as the packet would stall on
   the device; fetch_ns is bounded by the option (1 ms). */
static void fetch_wait(uint32_t ns)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (unsigned i = 0; i < 1000000u; i++) {
        clock_gettime(CLOCK_MONOTONIC, &b);
        int64_t d = (int64_t)(b.tv_sec - a.tv_sec) * 1000000000 + (b.tv_nsec - a.tv_nsec);
        if (d >= (int64_t)ns)
            return;
    }
}

bool nic_tls_ctx_access(struct nic_tls_ctx *ctx, struct nic_flow *f)
{
    if (f->ctx_bad)
        return false;
    if (f->resident) {
        ctx->c->tls_ctx_cache_hit++;
        if (ctx->cache_cap && ctx->lru_head != flow_id_of(ctx, f)) {
            lru_unlink(ctx, f);
            lru_push_front(ctx, f);
        }
        return true;
    }
    ctx->c->tls_ctx_cache_miss++;
    place(ctx, f);
    memcpy(ctx->fetch_buf, f->host, NIC_CTX_HOST_BYTES); /* DMA read */
    ctx->c->tls_ctx_fetch_bytes += NIC_CTX_HOST_BYTES;
    if (ctx->fetch_ns) {
        fetch_wait(ctx->fetch_ns);
        ctx->c->tls_ctx_fetch_wait_ns += ctx->fetch_ns;
    }
    struct ctx_writeback wb;
    struct nic_tls_static_ctx st;
    memcpy(&wb, ctx->fetch_buf + NIC_CTX_HOST_NIC_OFF, sizeof(wb));
    memcpy(&st, ctx->fetch_buf, sizeof(st));
    bool same = wb.magic == CTX_WB_MAGIC && wb.flow_id == flow_id_of(ctx, f) &&
                wb.writebacks == f->writebacks && wb.cipher == f->st.cipher &&
                wb.direction == f->st.direction && wb.sport == f->st.sport &&
                wb.dport == f->st.dport && wb.saddr == f->st.saddr && wb.daddr == f->st.daddr &&
                st.cipher == f->st.cipher && st.direction == f->st.direction &&
                st.saddr == f->st.saddr && st.daddr == f->st.daddr && st.sport == f->st.sport &&
                st.dport == f->st.dport;
    OPENSSL_cleanse(&st, sizeof(st));
    OPENSSL_cleanse(ctx->fetch_buf, NIC_CTX_HOST_BYTES); /* the block holds the key */
    if (!same) {
        f->ctx_bad = true;
        ctx->c->tls_ctx_fetch_bad++;
    }
    return same;
}

int nic_tls_gcm_start(EVP_CIPHER_CTX *ctx, bool encrypt, const uint8_t salt[4],
                      const uint8_t hdr[NIC_TLS_PAYLOAD_OFF], uint64_t record_sn, uint32_t rec_len)
{
    uint8_t iv[12], aad[13];
    int outl;
    memcpy(iv, salt, 4);
    memcpy(iv + 4, hdr + NIC_TLS_HEADER_LEN, NIC_TLS_NONCE_LEN);
    uint32_t pt_len = rec_len - NIC_TLS_PAYLOAD_OFF - NIC_TLS_TAG_LEN;
    nic_put_be64(aad, record_sn);
    memcpy(aad + 8, hdr, 3); /* type, version */
    aad[11] = (uint8_t)(pt_len >> 8);
    aad[12] = (uint8_t)pt_len;
    int ok = encrypt ? EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) &&
                           EVP_EncryptUpdate(ctx, NULL, &outl, aad, sizeof(aad))
                     : EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) &&
                           EVP_DecryptUpdate(ctx, NULL, &outl, aad, sizeof(aad));
    return ok ? 0 : -1;
}

int nic_tls_ctr_seek(EVP_CIPHER_CTX *ctx, const uint8_t salt[4],
                     const uint8_t explicit_nonce[NIC_TLS_NONCE_LEN], uint32_t off)
{
    uint8_t iv[16], skip[16] = {0};
    uint32_t ctr = 2 + off / 16; /* counter 1 encrypts the tag */
    int outl;
    memcpy(iv, salt, 4);
    memcpy(iv + 4, explicit_nonce, NIC_TLS_NONCE_LEN);
    iv[12] = (uint8_t)(ctr >> 24);
    iv[13] = (uint8_t)(ctr >> 16);
    iv[14] = (uint8_t)(ctr >> 8);
    iv[15] = (uint8_t)ctr;
    if (!EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv))
        return -1;
    if (off % 16 && !EVP_EncryptUpdate(ctx, skip, &outl, skip, (int)(off % 16)))
        return -1;
    return 0;
}

void nic_tls_flow_release(struct nic_flow *flow)
{
    if (flow->tx)
        nic_tls_tx_free(flow->tx);
    if (flow->rx)
        nic_tls_rx_free(flow->rx);
    flow->tx = NULL;
    flow->rx = NULL;
}

/* Key material in device memory is wiped with OPENSSL_cleanse (a store the
   compiler may not drop): a slot whose install failed, a deleted slot (both
   by nic_flow_wipe), and the raw key once the cipher contexts hold the key
   schedule. */
static int install_ctx(struct nic_tls_ctx *ctx, const struct nic_tx_desc *d)
{
    struct nic_flow_table *t = ctx->flows;
    struct nic_flow *f = d->addr ? nic_flow_slot_unused(t, d->flow_id) : NULL;
    if (!f) {
        ctx->c->flow_table_full++;
        return NIC_TX_ERR_NO_CTX;
    }
    /* A context that may be evicted needs a block to be written back to. */
    bool block = d->len >= NIC_CTX_HOST_BYTES;
    if (ctx->cache_cap && !block) {
        ctx->c->tls_ctx_no_host_mem++;
        return NIC_TX_ERR_NO_CTX;
    }
    memset(f, 0, sizeof(*f));
    memcpy(&f->st, (const void *)(uintptr_t)d->addr, sizeof(f->st)); /* DMA read */
    f->host = block ? (uint8_t *)(uintptr_t)d->addr : NULL;
    int r = NIC_TX_ERR_BAD_DESC;
    if (f->st.cipher != NIC_CIPHER_AES_128_GCM && f->st.cipher != NIC_CIPHER_AES_256_GCM) {
        ctx->c->tx_bad_desc++;
    } else if (f->st.direction == NIC_CTX_TX) {
        r = nic_tls_tx_install(f);
        if (r == NIC_TX_OK)
            ctx->c->tx_tls_ctx++;
    } else if (f->st.direction == NIC_CTX_RX) {
        r = nic_tls_rx_install(ctx, f, d->flow_id);
        if (r == NIC_TX_OK) {
            nic_flow_rx_hash_add(t, d->flow_id);
            ctx->c->rx_tls_ctx++;
        }
    } else {
        ctx->c->tx_bad_desc++;
    }
    if (r != NIC_TX_OK) {
        nic_flow_wipe(t, f);
        return r;
    }
    OPENSSL_cleanse(f->st.key, sizeof(f->st.key)); /* the cipher contexts are keyed */
    f->used = true;
    place(ctx, f);
    return NIC_TX_OK;
}

static int delete_ctx(struct nic_tls_ctx *ctx, const struct nic_tx_desc *d)
{
    struct nic_flow *f = nic_flow_get(ctx->flows, d->flow_id);
    if (!f) {
        ctx->c->tx_tls_no_ctx++;
        return NIC_TX_ERR_NO_CTX;
    }
    if (f->tx)
        ctx->c->tx_tls_del++;
    if (f->rx) {
        nic_flow_rx_hash_del(ctx->flows, d->flow_id);
        ctx->c->rx_tls_del++;
    }
    if (f->resident) {
        if (ctx->cache_cap)
            lru_unlink(ctx, f);
        ctx->c->tls_ctx_resident--;
    }
    nic_flow_wipe(ctx->flows, f); /* the block goes back to the driver */
    return NIC_TX_OK;
}

int nic_tls_ctrl(struct nic_tls_ctx *ctx, const struct nic_tx_desc *d)
{
    if (d->kind == NIC_TX_STATIC_CTX)
        return install_ctx(ctx, d);
    if (d->kind == NIC_TX_DEL_CTX)
        return delete_ctx(ctx, d);
    struct nic_flow *f = nic_flow_get(ctx->flows, d->flow_id);
    if (!f || !nic_tls_ctx_access(ctx, f)) {
        ctx->c->tx_tls_no_ctx++;
        return NIC_TX_ERR_NO_CTX;
    }
    switch (d->kind) {
    case NIC_TX_PROGRESS:
        return f->tx ? nic_tls_tx_progress(ctx, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_TX_DUMP:
        return f->tx ? nic_tls_tx_dump(ctx, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_RX_RESYNC_RESP:
        return f->rx ? nic_tls_rx_resync_response(ctx, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_RX_PROGRESS:
        return f->rx ? nic_tls_rx_hint(ctx, f, d) : NIC_TX_ERR_NO_CTX;
    default:
        return NIC_TX_ERR_BAD_DESC;
    }
}
