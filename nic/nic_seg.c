/* nic_seg.c - TSO: one host TCP segment -> wire packets (see nic_seg.h). */
#include "nic_seg.h"

#include <string.h>

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v);
}

unsigned nic_tso_cut(const uint8_t *pkt, const struct nic_tcp_view *v, uint32_t mss,
                     uint8_t *scratch, nic_seg_emit_fn *emit, void *arg)
{
    size_t hl = v->payload_off;
    uint16_t id0 = (uint16_t)((pkt[4] << 8) | pkt[5]);
    uint8_t last_only = NIC_TCP_FIN | NIC_TCP_PSH;
    unsigned n = 0;
    for (size_t off = 0; off < v->payload_len; off += mss, n++) {
        size_t plen = v->payload_len - off < mss ? v->payload_len - off : mss;
        bool last = off + plen == v->payload_len;
        memcpy(scratch, pkt, hl);
        memcpy(scratch + hl, pkt + hl + off, plen);
        put16(scratch + 2, (uint32_t)(hl + plen));
        put16(scratch + 4, (uint16_t)(id0 + n));
        scratch[10] = scratch[11] = 0;
        uint16_t ipc = nic_csum_fold(nic_csum_add(0, scratch, v->ip_hlen));
        memcpy(scratch + 10, &ipc, 2);
        uint8_t *tcp = scratch + v->tcp_off;
        put32(tcp + 4, v->seq + (uint32_t)off);
        if (!last)
            tcp[13] &= (uint8_t)~last_only;
        struct nic_tcp_view pv = *v;
        pv.payload_len = plen;
        nic_tcp_csum_fix(scratch, &pv);
        emit(arg, scratch, hl + plen);
    }
    return n;
}
