/* ttrpc framing: the 10-byte big-endian header and an incremental frame reader over a byte stream. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"

#define TTRPC_HDR_LEN  10
#define TTRPC_MAX_DATA (4u << 20) /* a frame may carry exactly this many data bytes, not one more */

enum ttrpc_type {
    TTRPC_REQUEST = 1,
    TTRPC_RESPONSE = 2,
    TTRPC_DATA = 3,
};

struct ttrpc_hdr {
    uint32_t len; /* data bytes after the header */
    uint32_t stream;
    uint8_t type;
    uint8_t flags;
};

void ttrpc_hdr_encode(uint8_t out[TTRPC_HDR_LEN], const struct ttrpc_hdr *h);
void ttrpc_hdr_decode(const uint8_t in[TTRPC_HDR_LEN], struct ttrpc_hdr *h);

enum ttrpc_rd {
    TTRPC_RD_MORE,      /* need more bytes */
    TTRPC_RD_FRAME,     /* *h and *data describe one whole frame (data valid until the next read) */
    TTRPC_RD_OVERSIZED, /* *h announces more than TTRPC_MAX_DATA; its data will be skipped */
};

struct ttrpc_reader {
    struct kbuf in;
    uint64_t discard; /* bytes of an oversized frame still to skip */
};

/* Room for at least want bytes from the stream; returns NULL on ENOMEM. */
uint8_t *ttrpc_reader_space(struct ttrpc_reader *r, size_t want, size_t *avail);
void ttrpc_reader_commit(struct ttrpc_reader *r, size_t n);
/* Append bytes (tests and fuzzing). 0, or -1 on ENOMEM. */
int ttrpc_reader_feed(struct ttrpc_reader *r, const void *p, size_t n);
/* Next event from the buffered bytes. */
enum ttrpc_rd ttrpc_reader_next(struct ttrpc_reader *r, struct ttrpc_hdr *h, const uint8_t **data);
/* True when a frame was started but not finished (to tell a clean EOF from a truncated frame). */
bool ttrpc_reader_partial(const struct ttrpc_reader *r);
/* Give back memory after a burst of large frames. */
void ttrpc_reader_trim(struct ttrpc_reader *r);
void ttrpc_reader_free(struct ttrpc_reader *r);
