/*
 * nic_abi.h - the host <-> NIC descriptor ABI. The only header the host
 * driver (stack/) and the device model (nic/) share.
 *
 * Queues (one port):
 *
 *   host                                                NIC
 *   ----                                                ---
 *   TX ring      (nic_tx_desc)   driver produces  --->  engine consumes
 *   RX buf ring  (nic_rx_desc)   driver produces  --->  engine consumes
 *   TX CQ        (nic_cqe)       driver consumes  <---  engine produces
 *   RX CQ        (nic_cqe)       driver consumes  <---  engine produces
 *
 * Submission rings (TX ring, RX buffer ring) use free-running 32-bit
 * producer/consumer indices; a slot is `idx & (size - 1)`, which is why every
 * ring size is a power of two (wrap-around of the 32-bit counters then needs
 * no special case). Ownership rule:
 *
 *      cons                prod
 *   ----+===================+--------
 *       | owned by the NIC  |  owned by the driver (free to fill)
 *
 * The driver fills slots at `prod`, then publishes them by storing the new
 * `prod` with release order (the "doorbell"). The NIC reads slots in
 * [cons, prod), and stores the new `cons` with release order when it is done
 * with them; from then on the driver owns those slots again. A ring is full
 * when prod - cons == size.
 *
 * Completion queues carry an ownership/phase bit instead: the NIC writes an
 * entry, then stores `phase` (release) = the lap parity of its producer index
 * plus one, i.e. 1 on the first lap, 0 on the second, ... The driver owns an
 * entry when its phase equals the parity it expects for its own consumer
 * index. The driver publishes its consumer index; the NIC never writes an
 * entry the driver has not consumed:
 *   - TX CQ (4x the TX ring: besides TX_DONE it carries one tag report per
 *     record ending in an offloaded segment). Before it takes a descriptor the
 *     engine checks the CQ has room for the worst case of that descriptor; if
 *     not, it stops taking descriptors until the driver drains the CQ and
 *     publishes its index (counted in tx_cq_backpressure). Nothing is lost.
 *   - RX CQ (as large as the RX buffer ring: one RX_PACKET per buffer). The
 *     driver posts a buffer only while buffers posted minus completions read
 *     is below the ring size, so an entry is always free.
 * Should a CQ be full anyway (a driver breaking its rule), the entry is
 * dropped and counted in tx_cq_overflow / rx_cq_overflow; an RX buffer whose
 * completion was dropped is not handed back.
 *
 * Addresses in descriptors are host virtual addresses (our "DMA addresses"):
 * the NIC reads/writes host memory there and nowhere else.
 */
#ifndef ANIC_NIC_ABI_H
#define ANIC_NIC_ABI_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define NIC_ABI_VERSION 1

/* --- TX ring descriptor kinds (host -> NIC commands share the TX ring) --- */
enum nic_tx_kind {
    NIC_TX_DATA = 1,       /* an IPv4 packet at addr/len to transmit */
    NIC_TX_STATIC_CTX = 2, /* install flow context: addr/len -> the context's host block */
    NIC_TX_PROGRESS = 3,   /* TX flow state: record start seq + record number */
    NIC_TX_DUMP = 4,       /* record bytes at addr/len: rebuild crypto state, don't send */
    NIC_TX_DEL_CTX = 5,    /* remove flow context flow_id */
    NIC_RX_PROGRESS = 6,   /* RX flow state (hint mode): next record seq + number */
    NIC_RX_RESYNC_RESP = 7 /* answer to a resync request: seq confirmed/denied */
};

/* TX descriptor flags. */
#define NIC_TXF_OFFLOAD   0x01 /* DATA: segment belongs to flow_id's TLS offload */
#define NIC_TXF_SIGNAL    0x02 /* post a completion for this descriptor */
#define NIC_TXF_RESYNC_OK 0x04 /* RX_RESYNC_RESP: 1 = confirm, 0 = deny */
#define NIC_TXF_TAG_VALID 0x08 /* PROGRESS: tag[] holds the cached record tag */
/* DATA: checksum offload. The host left the TCP checksum to the NIC (the
   field holds anything); the NIC writes the right one before anything
   sees the packet (the wire, the fault stage, the pcap tap). */
#define NIC_TXF_CSUM 0x20
#define NIC_TXF_ONESHOT                                                                            \
    0x10 /* TX PROGRESS (tagcache policy): the state applies to the next                           \
            DATA descriptor only. The NIC seeks the keystream to rec_off                           \
            of the record (len = its total length, record_sn gives the                             \
            nonce), writes the cached tag if the segment holds tag bytes,                          \
            then returns to its main in-sequence state untouched. */

struct nic_tx_desc {
    uint8_t kind;       /* enum nic_tx_kind */
    uint8_t flags;      /* NIC_TXF_* */
    uint16_t len;       /* DATA, DUMP: bytes at addr; PROGRESS+ONESHOT: record length;
                           STATIC_CTX: host block length (NIC_CTX_HOST_BYTES) */
    uint32_t flow_id;   /* 0 = no flow */
    uint64_t addr;      /* DATA, DUMP, STATIC_CTX: host memory the NIC reads */
    uint64_t cookie;    /* echoed in the completion; the driver's slot tag */
    uint32_t tcp_seq;   /* PROGRESS: record start seq; RESYNC_RESP: requested seq */
    uint32_t rec_off;   /* PROGRESS (tagcache): offset of the resumed byte in the record */
    uint64_t record_sn; /* PROGRESS, RESYNC_RESP: TLS record sequence number */
    uint8_t tag[16];    /* PROGRESS with NIC_TXF_TAG_VALID: the record's tag */
    uint16_t mss;       /* DATA (TSO): TCP payload bytes per wire packet; a TCP
                           segment longer than the MTU is cut into packets of
                           mss bytes (docs/design.md §4). 0: sent as it is */
    uint8_t pad[6];
};
static_assert(sizeof(struct nic_tx_desc) == 64, "TX descriptor is one cache line");

/* Static flow context, read by the NIC from host memory (mlx5 "static params"). */
enum nic_cipher { NIC_CIPHER_AES_128_GCM = 1, NIC_CIPHER_AES_256_GCM = 2 };
enum nic_ctx_dir { NIC_CTX_TX = 1, NIC_CTX_RX = 2 };

#define NIC_CTXF_TAG_REPORT 0x01 /* TX: report every record's tag in a TX_DONE completion */
#define NIC_CTXF_RX_HINT    0x02 /* RX: never search; wait for NIC_RX_PROGRESS hints */
#define NIC_CTXF_RX_WND     0x04 /* RX: rx_wnd_right_edge/rx_wnd_scale are valid */

/* The context's host block (docs/design.md §10): NIC_CTX_HOST_BYTES of host
   memory the driver allocates per flow and hands over with the install
   (STATIC_CTX addr/len). The driver writes struct nic_tls_static_ctx at
   offset 0; from the install until the delete completed the block belongs
   to the NIC, which writes an evicted context back at NIC_CTX_HOST_NIC_OFF
   and reads the whole block on a fetch. A device with a context cache
   refuses an install whose len is below NIC_CTX_HOST_BYTES; one without
   (every context resident) also takes len = 0, a bare static context. */
#define NIC_CTX_HOST_BYTES   256u
#define NIC_CTX_HOST_NIC_OFF 128u

struct nic_tls_static_ctx {
    uint8_t cipher;    /* enum nic_cipher */
    uint8_t direction; /* enum nic_ctx_dir */
    uint8_t flags;     /* NIC_CTXF_* */
    uint8_t pad;
    uint8_t salt[4]; /* implicit IV */
    uint8_t key[32]; /* 16 or 32 bytes used */
    uint32_t saddr;  /* 4-tuple in network byte order, as seen in packets the */
    uint32_t daddr;  /* context applies to (TX: host is source; RX: host is  */
    uint16_t sport;  /* destination)                                         */
    uint16_t dport;
    uint32_t start_tcp_sn; /* first offloaded TCP seq (TX) / next record seq (RX) */
    uint64_t record_sn;    /* record number at start_tcp_sn */
    /* RX: the host's receive window as announced when the context is
       installed: right edge (TCP seq) and window scale shift. The NIC then
       follows the window in the host's outgoing ACKs and never lets a segment
       beyond it (which TCP will drop) advance its record state. */
    uint32_t rx_wnd_right_edge;
    uint8_t rx_wnd_scale;
    uint8_t pad2[3];
};
static_assert(sizeof(struct nic_tls_static_ctx) <= NIC_CTX_HOST_NIC_OFF,
              "the static context fits the driver's part of the host block");

/* --- RX buffer ring --- */
struct nic_rx_desc {
    uint64_t addr; /* host buffer the NIC may write one packet into */
    uint32_t len;  /* its capacity */
    uint32_t pad;
    uint64_t cookie; /* echoed in the completion */
    uint64_t pad2;
};
static_assert(sizeof(struct nic_rx_desc) == 32, "RX descriptor layout is pinned");

/* --- Completion entries --- */
enum nic_cqe_kind {
    NIC_CQE_TX_DONE = 1,  /* a signalled TX descriptor was consumed */
    NIC_CQE_RX_PACKET = 2 /* a packet was written into an RX buffer */
};

/* TX_DONE status. */
enum nic_tx_status {
    NIC_TX_OK = 0,
    NIC_TX_ERR_BAD_DESC = 1, /* malformed descriptor (unknown kind, bad length) */
    NIC_TX_ERR_NO_CTX = 2,   /* flow_id unknown or table full */
    NIC_TX_ERR_DROPPED = 3   /* the NIC dropped the packet (counted) */
};

/* RX_PACKET flags. */
#define NIC_RXF_CSUM_OK 0x01 /* IPv4 + TCP checksums verified by the NIC */
#define NIC_RXF_DECRYPTED                                                                          \
    0x02                        /* every TLS record byte in it was decrypted and every             \
                                   record ending in it authenticated */
#define NIC_RXF_RESYNC_REQ 0x04 /* resync_seq holds a candidate record header seq */
#define NIC_RXF_TAG_REPORT 0x08 /* TX_DONE: tag/record_sn hold a record's tag */

struct nic_cqe {
    uint8_t kind;   /* enum nic_cqe_kind */
    uint8_t status; /* TX_DONE: enum nic_tx_status */
    uint16_t flags; /* NIC_RXF_* */
    uint32_t len;   /* RX_PACKET: bytes written */
    uint64_t cookie;
    uint32_t flow_id;
    uint32_t resync_seq; /* RX_PACKET with NIC_RXF_RESYNC_REQ */
    /* TX_DONE with NIC_RXF_TAG_REPORT: the record whose tag is in tag[].
       RX_PACKET with NIC_RXF_DECRYPTED: the NIC's record view of the packet's
       first payload byte (TCP seq view_seq): the record it belongs to, its
       offset in that record (0 = first header byte) and the record's total
       length (0 while the offset is inside the 5-byte header), and the
       number of the NIC walk that decrypted it: a walk is one uninterrupted
       in-order pass of the NIC's record state, and a new one starts whenever
       the NIC repositions that state (jump, resync, hint). Within one walk
       the NIC decrypts each stream byte at most once, so a record whose
       marked bytes all carry the same walk was authenticated by the NIC
       over exactly those bytes. The host trusts the mark only where this
       view equals its own and the record's walk does not change. */
    uint64_t record_sn;
    uint8_t tag[16];
    uint8_t desc_kind; /* TX_DONE: enum nic_tx_kind of the completed descriptor */
    uint8_t pad0;
    uint16_t view_rec_len;
    uint32_t view_walk;
    uint32_t view_seq;
    uint16_t view_rec_off; /* a record is shorter than 64 KiB */
    uint8_t pad1;
    uint8_t phase; /* written last, release order; see the ownership rule above */
};
static_assert(sizeof(struct nic_cqe) == 64, "completion entry is one cache line");
static_assert(offsetof(struct nic_cqe, phase) == 63, "phase is the last byte written");

/* Free-running ring index -> slot. size must be a power of two. */
static inline uint32_t nic_ring_slot(uint32_t idx, uint32_t size)
{
    return idx & (size - 1);
}

/* Phase a CQ entry carries when written at producer index idx. */
static inline uint8_t nic_cq_phase(uint32_t idx, uint32_t size)
{
    return (uint8_t)(((idx / size) & 1u) ^ 1u);
}

/* A ring's shared indices, each on its own cache line. */
struct nic_ring_idx {
    _Alignas(64) uint32_t prod;
    _Alignas(64) uint32_t cons;
};

#endif
