/* A small JSON writer into a growing buffer (hook state, the bundle's config.json): strings escaped, invalid
 * UTF-8 replaced by U+FFFD; an allocation failure sets oom and the rest is dropped. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct jw {
    struct kbuf b;
    bool oom;
};

void jw_put(struct jw *w, const void *p, size_t n);
void jw_lit(struct jw *w, const char *s);
void jw_str(struct jw *w, const char *s);
/* ,"key":"val" (no comma when first) */
void jw_field(struct jw *w, const char *key, const char *val, bool first);
/* Length of the valid UTF-8 sequence at p (1 for ASCII), 0 when the byte starts no valid sequence. */
size_t utf8_seq_len(const unsigned char *p, size_t left);
/* The text with its NUL, malloc'd (the writer is consumed), or NULL after an allocation failure. */
char *jw_finish(struct jw *w);
