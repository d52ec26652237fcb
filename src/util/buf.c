/* Growable byte buffer. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

uint8_t *kbuf_reserve(struct kbuf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return b->data + b->len;
    if (b->off) { /* compact first */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return b->data + b->len;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            return NULL;
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return NULL;
    b->data = d;
    b->cap = cap;
    return b->data + b->len;
}

int kbuf_append(struct kbuf *b, const void *p, size_t n)
{
    uint8_t *dst = kbuf_reserve(b, n);
    if (!dst)
        return -1;
    memcpy(dst, p, n);
    b->len += n;
    return 0;
}

void kbuf_consume(struct kbuf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void kbuf_trim(struct kbuf *b, size_t keep)
{
    if (b->cap <= keep || kbuf_avail(b) > keep)
        return;
    if (b->off) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (keep == 0) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
        return;
    }
    uint8_t *d = realloc(b->data, keep);
    if (d) {
        b->data = d;
        b->cap = keep;
    }
}

void kbuf_free(struct kbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

bool tail_append(char *buf, size_t cap, size_t *len, const char *data, size_t n)
{
    if (n >= cap) {
        memcpy(buf, data + n - cap, cap);
        bool dropped = n > cap || *len > 0;
        *len = cap;
        return dropped;
    }
    bool dropped = false;
    if (*len + n > cap) {
        size_t drop = *len + n - cap;
        memmove(buf, buf + drop, *len - drop);
        *len -= drop;
        dropped = true;
    }
    memcpy(buf + *len, data, n);
    *len += n;
    return dropped;
}
