/* A growable byte buffer with a read offset: appended at the end, consumed from the front. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kbuf {
    uint8_t *data;
    size_t off; /* first unconsumed byte */
    size_t len; /* end of valid bytes */
    size_t cap;
};

static inline size_t kbuf_avail(const struct kbuf *b)
{
    return b->len - b->off;
}
/* Keep only the last cap bytes of a stream (a child's stderr for an error message): append data to
 * buf[0..*len), dropping the oldest bytes. Returns true when something was dropped. */
bool tail_append(char *buf, size_t cap, size_t *len, const char *data, size_t n);

/* Make room for n more bytes at the end; returns a pointer to them, NULL on ENOMEM. */
uint8_t *kbuf_reserve(struct kbuf *b, size_t n);
int kbuf_append(struct kbuf *b, const void *p, size_t n);
void kbuf_consume(struct kbuf *b, size_t n);
/* Release memory above keep bytes once the buffer is drained (keeps idle connections small). */
void kbuf_trim(struct kbuf *b, size_t keep);
void kbuf_free(struct kbuf *b);
