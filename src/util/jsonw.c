/* The JSON writer (see jsonw.h). */
#include "jsonw.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

size_t utf8_seq_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        n = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void jw_put(struct jw *w, const void *p, size_t n)
{
    if (!w->oom && kbuf_append(&w->b, p, n) < 0)
        w->oom = true;
}

void jw_lit(struct jw *w, const char *s)
{
    jw_put(w, s, strlen(s));
}

static void jw_ctl(struct jw *w, unsigned char c)
{
    static const char short_esc[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
    char esc[8];
    if (c < sizeof(short_esc) && short_esc[c]) {
        esc[0] = '\\';
        esc[1] = short_esc[c];
        jw_put(w, esc, 2);
        return;
    }
    snprintf(esc, sizeof(esc), "\\u%04x", c);
    jw_put(w, esc, 6);
}

/* A JSON string; invalid UTF-8 bytes become U+FFFD. */
void jw_str(struct jw *w, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t left = strlen((const char *)p);
    jw_put(w, "\"", 1);
    while (left) {
        size_t n = utf8_seq_len(p, left);
        if (n == 0) {
            jw_lit(w, "\\ufffd");
            n = 1;
        } else if (*p == '"' || *p == '\\') {
            jw_put(w, "\\", 1);
            jw_put(w, p, 1);
        } else if (*p < 0x20) {
            jw_ctl(w, *p);
        } else {
            jw_put(w, p, n);
        }
        p += n;
        left -= n;
    }
    jw_put(w, "\"", 1);
}

void jw_field(struct jw *w, const char *key, const char *val, bool first)
{
    if (!first)
        jw_put(w, ",", 1);
    jw_str(w, key);
    jw_put(w, ":", 1);
    jw_str(w, val);
}

char *jw_finish(struct jw *w)
{
    jw_put(w, "", 1);
    if (w->oom) {
        kbuf_free(&w->b);
        return NULL;
    }
    return (char *)w->b.data;
}
