/* Strict TOML-subset parser: a recursive-descent reader building toml_value trees (subset in toml.h). */
#include "toml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOML_MAX_DEPTH      32   /* nesting of arrays, inline tables and dotted-key levels under a value */
#define TOML_MAX_KEY_PARTS  32   /* components of one dotted key or [table] header */
#define TOML_MAX_TABLE_KEYS 1024 /* keys in one table (lookups are linear) */
#define TOML_SHOW_MAX       40   /* bytes of a bad token quoted in an error */

/* How a table came to exist: decides whether a later [header] or dotted key may add to it. */
enum table_origin {
    ORIGIN_VALUE,    /* not a table */
    ORIGIN_IMPLICIT, /* parent created by an [a.b] header: may still get its own [a] header once */
    ORIGIN_HEADER,   /* defined by its own [header], or the root */
    ORIGIN_DOTTED,   /* created by a dotted key (a.b = 1): extendable by dotted keys only */
    ORIGIN_INLINE,   /* an inline table { ... }: closed for good */
};

/* Every value is allocated as a node: the public struct first, then the parser's bookkeeping.
 * toml_free() therefore frees a node through its toml_value pointer. */
struct node {
    struct toml_value v;
    size_t cap; /* allocated array items or table kvs */
    enum table_origin origin;
};

struct parser {
    const char *p; /* cursor */
    int line;
    const char *origin;
    ka_err *e;
    int depth;
};

/* A dotted key split into its parts. */
struct key {
    char *parts[TOML_MAX_KEY_PARTS];
    int n;
    int line;
};

static struct node *node_of(struct toml_value *v)
{
    return (struct node *)v;
}

__attribute__((format(printf, 3, 4))) static int fail_at(struct parser *P, int line, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return ka_fail(P->e, KA_INVALID_ARGUMENT, "%s:%d: %s", P->origin, line, what);
}

#define fail(P, ...) fail_at((P), (P)->line, __VA_ARGS__)

static int oom(struct parser *P)
{
    return ka_fail(P->e, KA_RESOURCE_EXHAUSTED, "%s:%d: out of memory", P->origin, P->line);
}

/* A printable description of the byte at p, for "unexpected X" messages. */
static const char *describe(const char *p, char *buf, size_t size)
{
    unsigned char c = (unsigned char)*p;
    if (c == '\0')
        return "end of file";
    if (c == '\n' || c == '\r')
        return "end of line";
    if (c > 0x20 && c < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

/* ---- character level ---- */

/* Length of the valid UTF-8 sequence starting at s (s[0] >= 0x80), 0 if invalid. */
static size_t utf8_valid(const unsigned char *s)
{
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n;
    uint32_t cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Whole-document checks done once up front: valid UTF-8, no control characters except tab and
 * newline, carriage return only before newline. The grammar below can then ignore encodings. */
static int check_text(struct parser *P, const char *text)
{
    int line = 1;
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        if (*s == '\n') {
            line++;
            s++;
        } else if (*s == '\r') {
            if (s[1] != '\n')
                return fail_at(P, line, "carriage return not followed by a newline");
            s++;
        } else if ((*s < 0x20 && *s != '\t') || *s == 0x7f) {
            return fail_at(P, line, "control character U+%04X", *s);
        } else if (*s < 0x80) {
            s++;
        } else {
            size_t n = utf8_valid(s);
            if (!n)
                return fail_at(P, line, "invalid UTF-8");
            s += n;
        }
    }
    return 0;
}

static void skip_ws(struct parser *P)
{
    while (*P->p == ' ' || *P->p == '\t')
        P->p++;
}

/* check_text() guarantees a '\r' is followed by '\n'. */
static bool at_newline(const struct parser *P)
{
    return *P->p == '\n' || *P->p == '\r';
}

static void eat_newline(struct parser *P)
{
    if (*P->p == '\r')
        P->p++;
    P->p++;
    P->line++;
}

static void skip_comment(struct parser *P)
{
    if (*P->p == '#')
        while (*P->p && !at_newline(P))
            P->p++;
}

/* Whitespace, comments and newlines (between array elements). */
static void skip_blank(struct parser *P)
{
    for (;;) {
        skip_ws(P);
        skip_comment(P);
        if (!at_newline(P))
            return;
        eat_newline(P);
    }
}

/* After a key/value pair or a header only a comment may follow on the line. */
static int end_of_line(struct parser *P, const char *after)
{
    char d[24];
    skip_ws(P);
    skip_comment(P);
    if (*P->p == '\0')
        return 0;
    if (at_newline(P)) {
        eat_newline(P);
        return 0;
    }
    return fail(P, "unexpected %s after %s", describe(P->p, d, sizeof(d)), after);
}

/* ---- tables and arrays ---- */

static struct node *node_new(enum toml_type type)
{
    struct node *n = calloc(1, sizeof(*n));
    if (n)
        n->v.type = type;
    return n;
}

static struct toml_kv *table_find(struct toml_value *t, const char *key)
{
    for (size_t i = 0; i < t->u.tab.n; i++)
        if (strcmp(t->u.tab.kvs[i].key, key) == 0)
            return &t->u.tab.kvs[i];
    return NULL;
}

/* Takes ownership of key and v (freed on failure). */
static int table_append(struct parser *P, struct node *t, char *key, struct toml_value *v, int line)
{
    if (t->v.u.tab.n == TOML_MAX_TABLE_KEYS) {
        free(key);
        toml_free(v);
        return fail_at(P, line, "more than %d keys in one table", TOML_MAX_TABLE_KEYS);
    }
    if (t->v.u.tab.n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        struct toml_kv *kvs = realloc(t->v.u.tab.kvs, cap * sizeof(*kvs));
        if (!kvs) {
            free(key);
            toml_free(v);
            return oom(P);
        }
        t->v.u.tab.kvs = kvs;
        t->cap = cap;
    }
    t->v.u.tab.kvs[t->v.u.tab.n++] = (struct toml_kv){.key = key, .value = v, .line = line};
    return 0;
}

/* Creates an empty sub-table named key in t. */
static struct node *table_add_table(struct parser *P, struct node *t, const char *key,
                                    enum table_origin origin, int line)
{
    struct node *sub = node_new(TOML_TABLE);
    char *name = strdup(key);
    if (!sub || !name) {
        free(sub);
        free(name);
        oom(P);
        return NULL;
    }
    sub->origin = origin;
    if (table_append(P, t, name, &sub->v, line) < 0)
        return NULL;
    return sub;
}

/* Takes ownership of item (freed on failure). */
static int array_append(struct parser *P, struct node *a, struct toml_value *item)
{
    if (a->v.u.arr.n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        struct toml_value **items = realloc(a->v.u.arr.items, cap * sizeof(*items));
        if (!items) {
            toml_free(item);
            return oom(P);
        }
        a->v.u.arr.items = items;
        a->cap = cap;
    }
    a->v.u.arr.items[a->v.u.arr.n++] = item;
    return 0;
}

/* ---- strings ---- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* s points after "\u" or "\U"; n hex digits follow. Appends the UTF-8 encoding to *o. */
static int decode_unicode_escape(struct parser *P, const char *s, int n, char **o)
{
    uint32_t cp = 0;
    for (int i = 0; i < n; i++) {
        int d = hex_value(s[i]); /* stops at the closing quote: never reads past the string */
        if (d < 0)
            return fail(P, "invalid \\%c escape: want %d hex digits", n == 4 ? 'u' : 'U', n);
        cp = cp << 4 | (uint32_t)d;
    }
    if (cp == 0)
        return fail(P, "\\u0000 is not supported (NUL in a string)");
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return fail(P, "invalid unicode code point U+%04X", (unsigned)cp);
    *o += utf8_encode(cp, *o);
    return 0;
}

/* Decodes the escapes of [s, end) into out, which has room for end - s bytes (escapes never grow). */
static int decode_basic(struct parser *P, const char *s, const char *end, char *out)
{
    static const char simple_from[] = "btnfr\"\\";
    static const char simple_to[] = "\b\t\n\f\r\"\\";
    char d[24];
    while (s < end) {
        if (*s != '\\') {
            *out++ = *s++;
            continue;
        }
        char c = s[1];
        const char *simple = c ? strchr(simple_from, c) : NULL;
        if (simple) {
            *out++ = simple_to[simple - simple_from];
            s += 2;
        } else if (c == 'u' || c == 'U') {
            int n = c == 'u' ? 4 : 8;
            if (decode_unicode_escape(P, s + 2, n, &out) < 0)
                return -1;
            s += 2 + n;
        } else {
            unsigned char u = (unsigned char)c;
            if (u > 0x20 && u < 0x7f)
                return fail(P, "invalid escape \\%c in string", c);
            return fail(P, "invalid escape in string: backslash followed by %s",
                        describe(s + 1, d, sizeof(d)));
        }
    }
    *out = '\0';
    return 0;
}

/* "..." at P->p; *out is malloc'd. */
static int parse_basic_string(struct parser *P, char **out)
{
    const char *start = ++P->p;
    if (start[0] == '"' && start[1] == '"')
        return fail(P, "unsupported multi-line string");
    /* Find the closing quote first: the decoded text is never longer than the source. */
    const char *end = start;
    while (*end != '"') {
        if (*end == '\0' || *end == '\n' || *end == '\r')
            return fail(P, "unterminated string");
        if (*end == '\\' && end[1] && end[1] != '\n' && end[1] != '\r')
            end++;
        end++;
    }
    char *buf = malloc((size_t)(end - start) + 1);
    if (!buf)
        return oom(P);
    if (decode_basic(P, start, end, buf) < 0) {
        free(buf);
        return -1;
    }
    P->p = end + 1;
    *out = buf;
    return 0;
}

/* '...' at P->p; *out is malloc'd. */
static int parse_literal_string(struct parser *P, char **out)
{
    const char *start = ++P->p;
    if (start[0] == '\'' && start[1] == '\'')
        return fail(P, "unsupported multi-line string");
    const char *end = start;
    while (*end != '\'') {
        if (*end == '\0' || *end == '\n' || *end == '\r')
            return fail(P, "unterminated string");
        end++;
    }
    *out = strndup(start, (size_t)(end - start));
    if (!*out)
        return oom(P);
    P->p = end + 1;
    return 0;
}

/* ---- keys ---- */

static bool is_bare_key_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int parse_key_part(struct parser *P, char **out)
{
    char d[24];
    if (*P->p == '"')
        return parse_basic_string(P, out);
    if (*P->p == '\'')
        return parse_literal_string(P, out);
    const char *start = P->p;
    while (is_bare_key_char(*P->p))
        P->p++;
    if (P->p == start)
        return fail(P, "expected a key, found %s", describe(P->p, d, sizeof(d)));
    *out = strndup(start, (size_t)(P->p - start));
    return *out ? 0 : oom(P);
}

static void key_free(struct key *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->parts[i]);
    k->n = 0;
}

/* The first n parts joined with '.', for messages. */
static const char *key_str(const struct key *k, int n, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < size; i++) {
        int w = snprintf(buf + len, size - len, "%s%s", i ? "." : "", k->parts[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    return buf;
}

/* a, a.b, "quoted".'lit' ... with optional blanks around the dots. */
static int parse_key(struct parser *P, struct key *k)
{
    k->n = 0;
    k->line = P->line;
    for (;;) {
        if (k->n == TOML_MAX_KEY_PARTS) {
            key_free(k);
            return fail(P, "key with more than %d parts", TOML_MAX_KEY_PARTS);
        }
        if (parse_key_part(P, &k->parts[k->n]) < 0) {
            key_free(k);
            return -1;
        }
        k->n++;
        skip_ws(P);
        if (*P->p != '.')
            return 0;
        P->p++;
        skip_ws(P);
    }
}

/* ---- values ---- */

static int parse_value(struct parser *P, struct toml_value **out);
static int parse_keyval(struct parser *P, struct node *table);

static int new_scalar(struct parser *P, enum toml_type type, struct toml_value **out)
{
    struct node *n = node_new(type);
    if (!n)
        return oom(P);
    *out = &n->v;
    return 0;
}

static int parse_string_value(struct parser *P, struct toml_value **out)
{
    char *s;
    int r = *P->p == '"' ? parse_basic_string(P, &s) : parse_literal_string(P, &s);
    if (r < 0)
        return -1;
    if (new_scalar(P, TOML_STRING, out) < 0) {
        free(s);
        return -1;
    }
    (*out)->u.s = s;
    return 0;
}

static int digit_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : hex_value(c);
}

/* Digits of base with '_' only between digits; 0, -1 malformed, -2 above limit. */
static int parse_digits(const char *s, size_t len, int base, uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;
    bool prev_digit = false;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '_') {
            if (!prev_digit || i + 1 == len)
                return -1;
            prev_digit = false;
            continue;
        }
        int d = digit_value(s[i]);
        if (d < 0 || d >= base)
            return -1;
        if (v > (limit - (uint64_t)d) / (uint64_t)base)
            return -2;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_digit = true;
    }
    *out = v;
    return 0;
}

/* [+-]digits without leading zeros, or 0x / 0o / 0b followed by digits (no sign). */
static int parse_integer(const char *s, size_t len, int64_t *out)
{
    uint64_t u;
    int r;
    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
        int base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
        r = parse_digits(s + 2, len - 2, base, INT64_MAX, &u);
        if (r == 0)
            *out = (int64_t)u;
        return r;
    }
    bool neg = s[0] == '-';
    size_t i = s[0] == '-' || s[0] == '+';
    if (i < len && s[i] == '0' && i + 1 < len)
        return -1; /* leading zero */
    r = parse_digits(s + i, len - i, 10, neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX, &u);
    if (r == 0)
        *out = neg ? (u == 0 ? 0 : -(int64_t)(u - 1) - 1) : (int64_t)u;
    return r;
}

static bool token_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool looks_like_float(const char *s, size_t len)
{
    size_t i = s[0] == '+' || s[0] == '-';
    if (i < len && (token_is(s + i, len - i, "inf") || token_is(s + i, len - i, "nan")))
        return true;
    if (i >= len || !is_digit(s[i]))
        return false;
    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b'))
        return false;
    return memchr(s, '.', len) || memchr(s, 'e', len) || memchr(s, 'E', len);
}

/* 1979-05-27..., 07:32:00... */
static bool looks_like_datetime(const char *s, size_t len)
{
    return (len > 4 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) && s[4] == '-') ||
           (len > 2 && is_digit(s[0]) && is_digit(s[1]) && s[2] == ':');
}

static bool is_token_char(char c)
{
    return c != '\0' && !strchr(" \t\r\n,]}#", c);
}

/* A bare value: boolean or integer (floats and dates are recognised only to be refused). */
static int parse_scalar(struct parser *P, struct toml_value **out)
{
    char d[24];
    const char *s = P->p;
    while (is_token_char(*P->p))
        P->p++;
    size_t len = (size_t)(P->p - s);
    int show = len > TOML_SHOW_MAX ? TOML_SHOW_MAX : (int)len;
    if (len == 0)
        return fail(P, "expected a value, found %s", describe(P->p, d, sizeof(d)));
    if (token_is(s, len, "true") || token_is(s, len, "false")) {
        if (new_scalar(P, TOML_BOOL, out) < 0)
            return -1;
        (*out)->u.b = s[0] == 't';
        return 0;
    }
    if (looks_like_datetime(s, len))
        return fail(P, "unsupported date/time value %.*s", show, s);
    if (looks_like_float(s, len))
        return fail(P, "unsupported float value %.*s", show, s);
    if (!is_digit(s[0]) && s[0] != '+' && s[0] != '-')
        return fail(P, "invalid value %.*s (strings must be quoted)", show, s);
    int64_t i;
    int r = parse_integer(s, len, &i);
    if (r == -2)
        return fail(P, "integer %.*s out of range", show, s);
    if (r < 0)
        return fail(P, "invalid integer %.*s", show, s);
    if (new_scalar(P, TOML_INT, out) < 0)
        return -1;
    (*out)->u.i = i;
    return 0;
}

/* [ v, v, ... ] possibly over several lines, with comments and a trailing comma. */
static int parse_array(struct parser *P, struct toml_value **out)
{
    char d[24];
    int opened = P->line;
    struct node *a = node_new(TOML_ARRAY);
    if (!a)
        return oom(P);
    P->p++;
    for (;;) {
        skip_blank(P);
        if (*P->p == ']')
            break;
        if (*P->p == '\0') {
            fail(P, "unterminated array (opened on line %d)", opened);
            goto err;
        }
        struct toml_value *item;
        if (parse_value(P, &item) < 0 || array_append(P, a, item) < 0)
            goto err;
        skip_blank(P);
        if (*P->p == ',') {
            P->p++;
            continue;
        }
        if (*P->p == ']')
            break;
        if (*P->p == '\0')
            fail(P, "unterminated array (opened on line %d)", opened);
        else
            fail(P, "expected ',' or ']' in array, found %s", describe(P->p, d, sizeof(d)));
        goto err;
    }
    P->p++;
    *out = &a->v;
    return 0;
err:
    toml_free(&a->v);
    return -1;
}

/* { k = v, k.k = v } on one line, no trailing comma. */
static int parse_inline_table(struct parser *P, struct toml_value **out)
{
    char d[24];
    struct node *t = node_new(TOML_TABLE);
    if (!t)
        return oom(P);
    t->origin = ORIGIN_INLINE;
    P->p++;
    skip_ws(P);
    while (*P->p != '}') {
        if (parse_keyval(P, t) < 0)
            goto err;
        skip_ws(P);
        if (*P->p == '}')
            break;
        if (*P->p != ',') {
            if (*P->p == '\0' || at_newline(P))
                fail(P, "unterminated inline table (it must end on the same line)");
            else
                fail(P, "expected ',' or '}' in inline table, found %s", describe(P->p, d, sizeof(d)));
            goto err;
        }
        P->p++;
        skip_ws(P);
        if (*P->p == '}') {
            fail(P, "trailing comma in inline table");
            goto err;
        }
    }
    P->p++;
    *out = &t->v;
    return 0;
err:
    toml_free(&t->v);
    return -1;
}

static int parse_value(struct parser *P, struct toml_value **out)
{
    if (*P->p == '"' || *P->p == '\'')
        return parse_string_value(P, out);
    if (*P->p != '[' && *P->p != '{')
        return parse_scalar(P, out);
    if (P->depth >= TOML_MAX_DEPTH)
        return fail(P, "nesting deeper than %d levels", TOML_MAX_DEPTH);
    P->depth++;
    int r = *P->p == '[' ? parse_array(P, out) : parse_inline_table(P, out);
    P->depth--;
    return r;
}

/* Walks (creating as needed) the tables named by all but the last part of a dotted key. Only tables
 * created by dotted keys may be extended that way. */
static int walk_dotted(struct parser *P, struct node **tab, const struct key *k)
{
    char name[256];
    struct node *t = *tab;
    for (int i = 0; i < k->n - 1; i++) {
        struct toml_kv *kv = table_find(&t->v, k->parts[i]);
        if (!kv) {
            t = table_add_table(P, t, k->parts[i], ORIGIN_DOTTED, k->line);
            if (!t)
                return -1;
            continue;
        }
        if (kv->value->type != TOML_TABLE || node_of(kv->value)->origin != ORIGIN_DOTTED)
            return fail_at(P, k->line, "cannot define key %s: %s was already defined on line %d",
                           key_str(k, k->n, name, sizeof(name)), kv->key, kv->line);
        t = node_of(kv->value);
    }
    *tab = t;
    return 0;
}

/* key = value, added to table. */
static int parse_keyval(struct parser *P, struct node *table)
{
    char name[256], d[24];
    struct key k;
    if (parse_key(P, &k) < 0)
        return -1;
    if (*P->p != '=') {
        key_free(&k);
        return fail(P, "expected '=' after key, found %s", describe(P->p, d, sizeof(d)));
    }
    P->p++;
    skip_ws(P);
    struct node *target = table;
    int r = walk_dotted(P, &target, &k);
    const struct toml_kv *dup = r == 0 ? table_find(&target->v, k.parts[k.n - 1]) : NULL;
    if (dup)
        r = fail_at(P, k.line, "duplicate key %s (first defined on line %d)",
                    key_str(&k, k.n, name, sizeof(name)), dup->line);
    else if (r == 0 && P->depth + k.n - 1 > TOML_MAX_DEPTH)
        r = fail(P, "nesting deeper than %d levels", TOML_MAX_DEPTH);
    struct toml_value *v = NULL;
    if (r == 0) {
        P->depth += k.n - 1;
        r = parse_value(P, &v);
        P->depth -= k.n - 1;
    }
    if (r < 0) {
        key_free(&k);
        return -1;
    }
    char *last = k.parts[--k.n];
    key_free(&k);
    return table_append(P, target, last, v, k.line);
}

/* Makes [a.b.c] the current table: parents may be new (implicit) or existing non-inline tables; the table
 * itself must be new or only implicitly created so far. */
static int define_table(struct parser *P, struct node *root, const struct key *k, struct node **out)
{
    char name[256], full[256];
    struct node *t = root;
    for (int i = 0; i < k->n; i++) {
        bool last = i == k->n - 1;
        struct toml_kv *kv = table_find(&t->v, k->parts[i]);
        if (!kv) {
            t = table_add_table(P, t, k->parts[i], last ? ORIGIN_HEADER : ORIGIN_IMPLICIT, k->line);
            if (!t)
                return -1;
            continue;
        }
        struct node *sub = node_of(kv->value);
        key_str(k, i + 1, name, sizeof(name));
        if (kv->value->type != TOML_TABLE)
            return fail_at(P, k->line, "cannot define table [%s]: %s is not a table (line %d)",
                           key_str(k, k->n, full, sizeof(full)), name, kv->line);
        if (sub->origin == ORIGIN_INLINE)
            return fail_at(P, k->line, "cannot define table [%s]: %s is an inline table (line %d)",
                           key_str(k, k->n, full, sizeof(full)), name, kv->line);
        if (last && sub->origin != ORIGIN_IMPLICIT)
            return fail_at(P, k->line, "table [%s] redefined (first defined on line %d)", name, kv->line);
        if (last)
            sub->origin = ORIGIN_HEADER;
        t = sub;
    }
    *out = t;
    return 0;
}

/* [a.b] at P->p: makes it the current table. */
static int parse_header(struct parser *P, struct node *root, struct node **current)
{
    char d[24];
    struct key k;
    if (P->p[1] == '[')
        return fail(P, "unsupported array of tables [[...]]");
    P->p++;
    skip_ws(P);
    if (parse_key(P, &k) < 0)
        return -1;
    if (*P->p != ']') {
        key_free(&k);
        return fail(P, "expected ']' after table name, found %s", describe(P->p, d, sizeof(d)));
    }
    P->p++;
    int r = define_table(P, root, &k, current);
    key_free(&k);
    return r < 0 ? -1 : end_of_line(P, "table header");
}

/* ---- public API ---- */

struct toml_value *toml_parse(const char *text, const char *origin, ka_err *e)
{
    struct parser P = {.p = text, .line = 1, .origin = origin ? origin : "<toml>", .e = e};
    if (!text) {
        fail(&P, "no document");
        return NULL;
    }
    if (check_text(&P, text) < 0)
        return NULL;
    if (text[0] == '\xef' && text[1] == '\xbb' && text[2] == '\xbf') /* byte order mark */
        P.p += 3;
    struct node *root = node_new(TOML_TABLE);
    if (!root) {
        oom(&P);
        return NULL;
    }
    root->origin = ORIGIN_HEADER;
    struct node *current = root;
    for (;;) {
        skip_ws(&P);
        skip_comment(&P);
        if (*P.p == '\0')
            break;
        if (at_newline(&P)) {
            eat_newline(&P);
            continue;
        }
        int r;
        if (*P.p == '[')
            r = parse_header(&P, root, &current);
        else if ((r = parse_keyval(&P, current)) == 0)
            r = end_of_line(&P, "value");
        if (r < 0) {
            toml_free(&root->v);
            return NULL;
        }
    }
    return &root->v;
}

void toml_free(struct toml_value *v)
{
    if (!v)
        return;
    switch (v->type) {
    case TOML_STRING:
        free(v->u.s);
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < v->u.arr.n; i++)
            toml_free(v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case TOML_TABLE:
        for (size_t i = 0; i < v->u.tab.n; i++) {
            free(v->u.tab.kvs[i].key);
            toml_free(v->u.tab.kvs[i].value);
        }
        free(v->u.tab.kvs);
        break;
    case TOML_INT:
    case TOML_BOOL:
        break;
    }
    free(node_of(v));
}

const struct toml_kv *toml_get(const struct toml_value *table, const char *key)
{
    if (!table || table->type != TOML_TABLE || !key)
        return NULL;
    for (size_t i = 0; i < table->u.tab.n; i++)
        if (strcmp(table->u.tab.kvs[i].key, key) == 0)
            return &table->u.tab.kvs[i];
    return NULL;
}

const char *toml_type_name(enum toml_type t)
{
    switch (t) {
    case TOML_STRING:
        return "string";
    case TOML_INT:
        return "integer";
    case TOML_BOOL:
        return "boolean";
    case TOML_ARRAY:
        return "array";
    case TOML_TABLE:
        return "table";
    }
    return "?";
}
