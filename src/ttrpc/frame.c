/* ttrpc frame header codec and the incremental frame reader (also the fuzzing target's entry point). */
#include "frame.h"

#include <string.h>

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void ttrpc_hdr_encode(uint8_t out[TTRPC_HDR_LEN], const struct ttrpc_hdr *h)
{
    put_be32(out, h->len);
    put_be32(out + 4, h->stream);
    out[8] = h->type;
    out[9] = h->flags;
}

void ttrpc_hdr_decode(const uint8_t in[TTRPC_HDR_LEN], struct ttrpc_hdr *h)
{
    h->len = get_be32(in);
    h->stream = get_be32(in + 4);
    h->type = in[8];
    h->flags = in[9];
}

uint8_t *ttrpc_reader_space(struct ttrpc_reader *r, size_t want, size_t *avail)
{
    uint8_t *p = kbuf_reserve(&r->in, want);
    if (p)
        *avail = r->in.cap - r->in.len;
    return p;
}

void ttrpc_reader_commit(struct ttrpc_reader *r, size_t n)
{
    r->in.len += n;
}

int ttrpc_reader_feed(struct ttrpc_reader *r, const void *p, size_t n)
{
    return kbuf_append(&r->in, p, n);
}

enum ttrpc_rd ttrpc_reader_next(struct ttrpc_reader *r, struct ttrpc_hdr *h, const uint8_t **data)
{
    if (r->discard) {
        size_t n = kbuf_avail(&r->in);
        if (n > r->discard)
            n = (size_t)r->discard;
        kbuf_consume(&r->in, n);
        r->discard -= n;
        if (r->discard)
            return TTRPC_RD_MORE;
    }
    size_t avail = kbuf_avail(&r->in);
    if (avail < TTRPC_HDR_LEN)
        return TTRPC_RD_MORE;
    const uint8_t *p = r->in.data + r->in.off;
    ttrpc_hdr_decode(p, h);
    if (h->len > TTRPC_MAX_DATA) {
        kbuf_consume(&r->in, TTRPC_HDR_LEN);
        r->discard = h->len;
        /* skip what is already buffered; the rest is skipped as it arrives */
        size_t n = kbuf_avail(&r->in);
        if (n > r->discard)
            n = (size_t)r->discard;
        kbuf_consume(&r->in, n);
        r->discard -= n;
        return TTRPC_RD_OVERSIZED;
    }
    if (avail - TTRPC_HDR_LEN < h->len)
        return TTRPC_RD_MORE;
    *data = p + TTRPC_HDR_LEN;
    kbuf_consume(&r->in, TTRPC_HDR_LEN + h->len);
    return TTRPC_RD_FRAME;
}

bool ttrpc_reader_partial(const struct ttrpc_reader *r)
{
    return r->discard || kbuf_avail(&r->in) > 0;
}

void ttrpc_reader_trim(struct ttrpc_reader *r)
{
    kbuf_trim(&r->in, 64 * 1024);
}

void ttrpc_reader_free(struct ttrpc_reader *r)
{
    kbuf_free(&r->in);
}
