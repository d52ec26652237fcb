/* The ttrpc.Request envelope read in place (see envelope.h): protobuf wire format, no copies. */
#include "envelope.h"

#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (*p == end)
            return false;
        uint8_t b = *(*p)++;
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false; /* more than 10 bytes */
}

/* One field's key and, for length-delimited ones, its bytes; *p moves past the field. */
struct field {
    uint32_t num;
    unsigned wt;
    uint64_t value;       /* WT_VARINT */
    const uint8_t *bytes; /* WT_LEN */
    size_t len;
};

static bool next_field(const uint8_t **p, const uint8_t *end, struct field *f)
{
    uint64_t key;
    if (!varint(p, end, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return false;
    f->num = (uint32_t)(key >> 3);
    f->wt = (unsigned)(key & 7);
    switch (f->wt) {
    case WT_VARINT:
        return varint(p, end, &f->value);
    case WT_I64:
    case WT_I32: {
        size_t n = f->wt == WT_I64 ? 8 : 4;
        if ((size_t)(end - *p) < n)
            return false;
        *p += n;
        return true;
    }
    case WT_LEN: {
        uint64_t n;
        if (!varint(p, end, &n) || n > (uint64_t)(end - *p))
            return false;
        f->bytes = *p;
        f->len = (size_t)n;
        *p += n;
        return true;
    }
    default: /* groups (3, 4) and the reserved 6, 7 */
        return false;
    }
}

/* A KeyValue {key = 1, value = 2: strings}: well-formed, as the Go server and protobuf-c insist. */
static bool key_value_ok(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    struct field f;
    while (p < end) {
        if (!next_field(&p, end, &f))
            return false;
        if ((f.num == 1 || f.num == 2) && f.wt != WT_LEN)
            return false;
    }
    return true;
}

bool ttrpc_request_parse(const uint8_t *data, size_t len, struct ttrpc_request_view *v)
{
    const uint8_t *p = data, *end = data + len;
    struct field f;
    memset(v, 0, sizeof(*v));
    v->service = v->method = "";
    while (p < end) {
        if (!next_field(&p, end, &f))
            return false;
        bool want_len = f.num >= 1 && f.num <= 5 && f.num != 4, want_varint = f.num == 4;
        if ((want_len && f.wt != WT_LEN) || (want_varint && f.wt != WT_VARINT))
            return false; /* a known field with the wrong wire type */
        switch (f.num) {
        case 1:
            v->service = (const char *)f.bytes;
            v->service_len = f.len;
            break;
        case 2:
            v->method = (const char *)f.bytes;
            v->method_len = f.len;
            break;
        case 3:
            v->payload = f.bytes;
            v->payload_len = f.len;
            break;
        case 4:
            v->timeout_nano = (int64_t)f.value;
            break;
        case 5:
            if (!key_value_ok(f.bytes, f.len))
                return false;
            break;
        default: /* unknown: skipped */
            break;
        }
    }
    return true;
}
