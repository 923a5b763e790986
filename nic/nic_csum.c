/* nic_csum.c - Internet checksum helpers (RFC 1071, RFC 793 pseudo-header). */
#include "nic_csum.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

/* Sum of the 16-bit words of data[0, *done) as a plain integer (< 2^48),
   32 bytes a step: every 16-bit lane zero-extended into 32-bit accumulators
   (lane order does not matter for a sum). */
__attribute__((target("avx2"))) static uint64_t csum_words_avx2(const uint8_t *data, size_t len,
                                                                size_t *done)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i acc0 = zero, acc1 = zero;
    size_t i = 0;
    /* Each 32-bit lane gains <= 2 * 65535 per 64 bytes: no overflow below 2 MB. */
    for (; i + 64 <= len; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(data + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(data + i + 32));
        acc0 = _mm256_add_epi32(acc0, _mm256_unpacklo_epi16(a, zero));
        acc1 = _mm256_add_epi32(acc1, _mm256_unpackhi_epi16(a, zero));
        acc0 = _mm256_add_epi32(acc0, _mm256_unpacklo_epi16(b, zero));
        acc1 = _mm256_add_epi32(acc1, _mm256_unpackhi_epi16(b, zero));
    }
    uint32_t lanes[16];
    _mm256_storeu_si256((__m256i *)(void *)lanes, acc0);
    _mm256_storeu_si256((__m256i *)(void *)(lanes + 8), acc1);
    uint64_t sum = 0;
    for (int k = 0; k < 16; k++)
        sum += lanes[k];
    *done = i;
    return sum;
}

static bool have_avx2(void)
{
    static int cached = -1;
    if (cached < 0)
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    return cached == 1;
}
#endif

uint32_t nic_csum_add(uint32_t sum, const uint8_t *data, size_t len)
{
    /* Ones'-complement addition is associative in any word size that is a
       multiple of 16 bits, given end-around carry (RFC 1071 §2): add 64-bit
       words in two independent chains, counting carries, fold at the end. */
    uint64_t a0 = sum, a1 = 0, c0 = 0, c1 = 0;
    size_t i = 0;
#if defined(__x86_64__)
    if (len >= 128 && len < (1u << 20) && have_avx2())
        a1 = csum_words_avx2(data, len, &i); /* < 2^40: no carry out of a1 yet */
#endif
    for (; i + 16 <= len; i += 16) {
        uint64_t w0, w1;
        memcpy(&w0, data + i, 8);
        memcpy(&w1, data + i + 8, 8);
        a0 += w0;
        c0 += a0 < w0;
        a1 += w1;
        c1 += a1 < w1;
    }
    uint64_t acc = a0 + a1;
    uint64_t carries = c0 + c1 + (acc < a1);
    if (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        acc += w;
        carries += acc < w;
        i += 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, data + i, len - i); /* < 8 bytes, zero padded (little endian) */
    acc += tail;
    carries += acc < tail;
    acc += carries;
    if (acc < carries)
        acc++;
    /* fold 64 -> 32 bits with end-around carry */
    uint64_t f = (acc & 0xffffffffu) + (acc >> 32);
    f = (f & 0xffffffffu) + (f >> 32);
    return (uint32_t)f;
}

uint16_t nic_csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)~sum;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

bool nic_parse_tcp(const uint8_t *pkt, size_t len, struct nic_tcp_view *v)
{
    if (len < 20 || (pkt[0] >> 4) != 4)
        return false;
    size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
    size_t tot = get16(pkt + 2);
    if (ihl < 20 || tot < ihl || tot > len || pkt[9] != NIC_IPPROTO_TCP)
        return false;
    if (get16(pkt + 6) & 0x3fff) /* MF or fragment offset: not a whole segment */
        return false;
    if (tot < ihl + 20)
        return false;
    const uint8_t *tcp = pkt + ihl;
    size_t thl = (size_t)(tcp[12] >> 4) * 4;
    if (thl < 20 || ihl + thl > tot)
        return false;
    v->ip_hlen = ihl;
    v->tcp_off = ihl;
    v->tcp_hlen = thl;
    v->payload_off = ihl + thl;
    v->payload_len = tot - ihl - thl;
    memcpy(&v->saddr, pkt + 12, 4);
    memcpy(&v->daddr, pkt + 16, 4);
    memcpy(&v->sport, tcp, 2);
    memcpy(&v->dport, tcp + 2, 2);
    v->seq = get32(tcp + 4);
    v->ack = get32(tcp + 8);
    v->window = get16(tcp + 14);
    v->tcp_flags = tcp[13];
    return true;
}

bool nic_is_tcp_fragment(const uint8_t *pkt, size_t len)
{
    return len >= 20 && (pkt[0] >> 4) == 4 && pkt[9] == NIC_IPPROTO_TCP &&
           (get16(pkt + 6) & 0x3fff) != 0;
}

static uint32_t pseudo_sum(const uint8_t *pkt, size_t tcp_len)
{
    uint8_t ph[12];
    memcpy(ph, pkt + 12, 8);
    ph[8] = 0;
    ph[9] = NIC_IPPROTO_TCP;
    ph[10] = (uint8_t)(tcp_len >> 8);
    ph[11] = (uint8_t)tcp_len;
    return nic_csum_add(0, ph, sizeof(ph));
}

bool nic_tcp_csum_ok(const uint8_t *pkt, const struct nic_tcp_view *v)
{
    if (nic_csum_fold(nic_csum_add(0, pkt, v->ip_hlen)) != 0)
        return false;
    size_t tcp_len = v->tcp_hlen + v->payload_len;
    uint32_t s = nic_csum_add(pseudo_sum(pkt, tcp_len), pkt + v->tcp_off, tcp_len);
    return nic_csum_fold(s) == 0;
}

void nic_tcp_csum_fix(uint8_t *pkt, const struct nic_tcp_view *v)
{
    uint8_t *tcp = pkt + v->tcp_off;
    size_t tcp_len = v->tcp_hlen + v->payload_len;
    tcp[16] = tcp[17] = 0;
    uint16_t c = nic_csum_fold(nic_csum_add(pseudo_sum(pkt, tcp_len), tcp, tcp_len));
    memcpy(tcp + 16, &c, 2);
}
