/* proto3 JSON <-> protobuf-c messages: descriptor-driven encoder (to json-c) and decoder (from json-c). */
#include "pbjson.h"
#include "util/pbfield.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h> /* isnan/isinf/isfinite macros only: no -lm needed */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nesting limits: json-c's tokener depth for text input, and message depth for already-built objects. */
#define PBJSON_TEXT_DEPTH 64
#define PBJSON_MSG_DEPTH  64
#define PBJSON_PATH_MAX   256

/* ------------------------------------------------------------------------------------------------------ */
/* Names                                                                                                  */
/* ------------------------------------------------------------------------------------------------------ */

/* protoc's json_name: drop each '_' and upper-case the (ASCII) letter that follows it. */
static char *json_name(const char *proto_name)
{
    char *out = malloc(strlen(proto_name) + 1), *o = out;
    bool upper = false;
    if (!out)
        return NULL;
    for (const char *p = proto_name; *p; p++) {
        if (*p == '_') {
            upper = true;
            continue;
        }
        *o++ = (upper && *p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
        upper = false;
    }
    *o = '\0';
    return out;
}

/* Does key equal json_name(proto_name)? Compared in place, without allocating. */
static bool json_name_equals(const char *proto_name, const char *key)
{
    bool upper = false;
    for (const char *p = proto_name; *p; p++) {
        if (*p == '_') {
            upper = true;
            continue;
        }
        char c = (upper && *p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
        upper = false;
        if (*key++ != c)
            return false;
    }
    return *key == '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
    if (f)
        return f;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (json_name_equals(d->fields[i].name, key))
            return &d->fields[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Base64 and UTF-8                                                                                       */
/* ------------------------------------------------------------------------------------------------------ */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard alphabet with padding; malloc'd, NUL-terminated. */
static char *b64_encode(const uint8_t *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        *o++ = b64_alphabet[(v >> 18) & 63];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* Sextet of a base64 character, standard or URL-safe alphabet; -1 when not one. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decode with optional padding; *out is malloc'd (NULL when empty). -1 on malformed input. */
static int b64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len)
{
    size_t pad = 0;
    while (len > 0 && pad < 2 && in[len - 1] == '=') {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad && (len + pad) % 4 != 0))
        return -1;
    *out = NULL;
    *out_len = 0;
    if (len == 0)
        return 0;
    uint8_t *buf = malloc(len / 4 * 3 + 2), *o = buf;
    uint32_t acc = 0;
    int bits = 0;
    if (!buf)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = ((acc & 0xFF) << 6) | (uint32_t)v; /* < 8 pending bits matter */
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *out_len = (size_t)(o - buf);
    return 0;
}

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Descriptor helpers                                                                                     */
/* ------------------------------------------------------------------------------------------------------ */

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))

static const ProtobufCFieldDescriptor *map_key_field(const ProtobufCFieldDescriptor *f)
{
    return protobuf_c_message_descriptor_get_field(f->descriptor, 1);
}

static const ProtobufCFieldDescriptor *map_value_field(const ProtobufCFieldDescriptor *f)
{
    return protobuf_c_message_descriptor_get_field(f->descriptor, 2);
}

static bool is_oneof(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* A proto2/proto3-optional scalar carries its presence in a has_ flag at quantifier_offset. */
static bool has_presence_flag(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !is_oneof(f) && f->type != PROTOBUF_C_TYPE_STRING &&
           f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = MEMBER(m, f->offset);
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)MEMBER(m, f->quantifier_offset) > 0;
    if (is_oneof(f))
        return *(const uint32_t *)MEMBER(m, f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    if (has_presence_flag(f))
        return *(const protobuf_c_boolean *)MEMBER(m, f->quantifier_offset);
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
        const void *ptr = *(const void *const *)p;
        return ptr && ptr != f->default_value;
    }
    return !pb_value_is_default(f, p);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Message -> JSON                                                                                        */
/* ------------------------------------------------------------------------------------------------------ */

/* Shortest %g form that reads back as the same value; NaN and infinities as proto3 JSON strings. */
static struct json_object *real_to_json(double d, bool is_float)
{
    char buf[40];
    if (isnan(d))
        return json_object_new_string("NaN");
    if (isinf(d))
        return json_object_new_string(d > 0 ? "Infinity" : "-Infinity");
    for (int prec = is_float ? 6 : 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        if (is_float ? strtof(buf, NULL) == (float)d : strtod(buf, NULL) == d)
            break;
    }
    return json_object_new_double_s(d, buf);
}

static struct json_object *enum_to_json(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return ev ? json_object_new_string(ev->name) : json_object_new_int(v);
}

static struct json_object *u64_to_json(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return json_object_new_string(buf);
}

static struct json_object *i64_to_json(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_object_new_string(buf);
}

static struct json_object *bytes_to_json(const ProtobufCBinaryData *b)
{
    char *s = b64_encode(b->data, b->len);
    struct json_object *o = s ? json_object_new_string(s) : NULL;
    free(s);
    return o;
}

/* One value (a singular field, one array element or one map value) at p. */
static struct json_object *value_to_json(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_object_new_int(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_object_new_int64(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return i64_to_json(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return u64_to_json(*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return real_to_json(*(const float *)p, true);
    case PROTOBUF_C_TYPE_DOUBLE:
        return real_to_json(*(const double *)p, false);
    case PROTOBUF_C_TYPE_BOOL:
        return json_object_new_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM:
        return enum_to_json(f->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_object_new_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES:
        return bytes_to_json(p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        return sub ? pbjson_to_object(sub) : json_object_new_object();
    }
    }
    return NULL;
}

static struct json_object *repeated_to_json(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)MEMBER(m, f->quantifier_offset), size = pb_elem_size(f->type);
    const char *arr = *(char *const *)MEMBER(m, f->offset);
    struct json_object *a = json_object_new_array_ext((int)n);
    if (!a)
        return NULL;
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, value_to_json(f, arr + i * size));
    return a;
}

/* Map keys are JSON object keys, so always strings: integers in decimal, bools as true/false. */
static void map_key_text(const ProtobufCFieldDescriptor *kf, const void *p, char *buf, size_t cap,
                         const char **out)
{
    *out = buf;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING:
        *out = *(char *const *)p ? *(char *const *)p : "";
        return;
    case PROTOBUF_C_TYPE_BOOL:
        *out = *(const protobuf_c_boolean *)p ? "true" : "false";
        return;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(buf, cap, "%" PRId32, *(const int32_t *)p);
        return;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(buf, cap, "%" PRIu32, *(const uint32_t *)p);
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, cap, "%" PRId64, *(const int64_t *)p);
        return;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)p);
        return;
    default: /* protoc allows no other key types */
        snprintf(buf, cap, "?");
        return;
    }
}

static struct json_object *map_to_json(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)MEMBER(m, f->quantifier_offset);
    ProtobufCMessage *const *entries = *(ProtobufCMessage *const *const *)MEMBER(m, f->offset);
    const ProtobufCFieldDescriptor *kf = map_key_field(f), *vf = map_value_field(f);
    struct json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char buf[24];
        const char *key;
        if (!entries[i])
            continue;
        map_key_text(kf, MEMBER(entries[i], kf->offset), buf, sizeof(buf), &key);
        json_object_object_add(o, key, value_to_json(vf, MEMBER(entries[i], vf->offset)));
    }
    return o;
}

static struct json_object *field_to_json(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    if (pb_is_map_field(f))
        return map_to_json(m, f);
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return repeated_to_json(m, f);
    return value_to_json(f, MEMBER(m, f->offset));
}

struct json_object *pbjson_to_object(const ProtobufCMessage *msg)
{
    if (!msg)
        return NULL;
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    struct json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!field_present(msg, f))
            continue;
        char *name = json_name(f->name);
        if (name)
            json_object_object_add(o, name, field_to_json(msg, f));
        free(name);
    }
    return o;
}

/* json-c pretty-prints an empty object as "{\n  }"; make it "{}". Raw newlines never occur inside JSON
 * strings (json-c escapes them), so the pattern is always structure. */
static void collapse_empty_objects(char *s)
{
    char *o = s;
    for (const char *p = s; *p;) {
        if (*p == '{' && p[1] == '\n') {
            const char *q = p + 2;
            q += strspn(q, " ");
            if (*q == '}') {
                *o++ = '{';
                *o++ = '}';
                p = q + 1;
                continue;
            }
        }
        *o++ = *p++;
    }
    *o = '\0';
}

char *pbjson_to_string(const ProtobufCMessage *msg, int pretty)
{
    struct json_object *o = pbjson_to_object(msg);
    if (!o)
        return NULL;
    int flags = pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : JSON_C_TO_STRING_PLAIN;
    const char *text = json_object_to_json_string_ext(o, flags | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *s = text ? strdup(text) : NULL;
    json_object_put(o);
    if (s && pretty)
        collapse_empty_objects(s);
    return s;
}

/* ------------------------------------------------------------------------------------------------------ */
/* JSON -> message: parse state, errors and paths                                                         */
/* ------------------------------------------------------------------------------------------------------ */

/* Where we are in the input ("OCI.Linux.Seccomp.Syscalls[0]") so errors can point at it. */
typedef struct pstate {
    ka_err *e;
    int depth;
    size_t path_len;
    char path[PBJSON_PATH_MAX];
} pstate;

static int fail(pstate *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(pstate *st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!st->e)
        return -1;
    if (st->path_len)
        return ka_fail(st->e, KA_INVALID_ARGUMENT, "%s: %s", st->path, msg);
    return ka_fail(st->e, KA_INVALID_ARGUMENT, "%s", msg);
}

/* Append to the path; returns the old length for path_pop. Silently truncates very long paths. */
static size_t path_push(pstate *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(pstate *st, const char *fmt, ...)
{
    size_t saved = st->path_len, room = sizeof(st->path) - saved;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(st->path + saved, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        st->path_len += (size_t)n < room ? (size_t)n : room - 1;
    return saved;
}

static void path_pop(pstate *st, size_t saved)
{
    st->path_len = saved;
    st->path[saved] = '\0';
}

static const char *type_name(struct json_object *v)
{
    return json_type_to_name(json_object_get_type(v));
}

/* ------------------------------------------------------------------------------------------------------ */
/* JSON -> scalars                                                                                        */
/* ------------------------------------------------------------------------------------------------------ */

/* An integer before it is narrowed to its field type: sign and magnitude cover int64 and uint64. */
typedef struct wide_int {
    bool neg;
    uint64_t mag;
} wide_int;

enum { WIDE_OK = 0, WIDE_INVALID = -1, WIDE_OVERFLOW = -2 };

/* Integral doubles only. (No libm: beyond 2^63 every double is integral.) */
static int wide_from_double(double d, wide_int *w)
{
    double a = d < 0 ? -d : d;
    if (!isfinite(d))
        return WIDE_INVALID;
    if (a >= 18446744073709551616.0)
        return WIDE_OVERFLOW;
    if (a < 9223372036854775808.0 && a != (double)(int64_t)a)
        return WIDE_INVALID;
    w->neg = d < 0;
    w->mag = (uint64_t)a;
    return WIDE_OK;
}

/* A JSON-style number or one of proto3's "NaN", "Infinity", "-Infinity" (no spaces, hex or "inf"). */
static int text_to_double(const char *s, double *d)
{
    char *end;
    if (!strcmp(s, "NaN"))
        *d = NAN;
    else if (!strcmp(s, "Infinity"))
        *d = INFINITY;
    else if (!strcmp(s, "-Infinity"))
        *d = -INFINITY;
    else if (!((*s >= '0' && *s <= '9') || *s == '-') || s[strspn(s, "0123456789.eE+-")] != '\0')
        return -1;
    else if (*d = strtod(s, &end), *end != '\0')
        return -1;
    return 0;
}

/* "-12", "12", and for leniency exponent/decimal forms with an integral value ("1e3", "2.0"). */
static int wide_from_text(const char *s, wide_int *w)
{
    const char *p = s + (*s == '-');
    char *end;
    if (*p >= '0' && *p <= '9') {
        errno = 0;
        unsigned long long m = strtoull(p, &end, 10);
        if (*end == '\0') {
            if (errno == ERANGE)
                return WIDE_OVERFLOW;
            w->neg = *s == '-';
            w->mag = m;
            return WIDE_OK;
        }
    }
    double d;
    return text_to_double(s, &d) == 0 ? wide_from_double(d, w) : WIDE_INVALID;
}

static int wide_from_json(struct json_object *v, wide_int *w)
{
    switch (json_object_get_type(v)) {
    case json_type_int: {
        int64_t i = json_object_get_int64(v);
        w->neg = i < 0;
        w->mag = i < 0 ? (uint64_t)(-(i + 1)) + 1 : json_object_get_uint64(v);
        return WIDE_OK;
    }
    case json_type_double:
        return wide_from_double(json_object_get_double(v), w);
    case json_type_string:
        return wide_from_text(json_object_get_string(v), w);
    default:
        return WIDE_INVALID;
    }
}

/* Range of an integer field type (enum = int32), as magnitudes: [-neg_max, pos_max]. */
typedef struct int_range {
    const char *name;
    uint64_t neg_max, pos_max;
    bool is_64;
} int_range;

static int_range range_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return (int_range){"int32", (uint64_t)INT32_MAX + 1, INT32_MAX, false};
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return (int_range){"uint32", 0, UINT32_MAX, false};
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return (int_range){"uint64", 0, UINT64_MAX, true};
    default:
        return (int_range){"int64", (uint64_t)INT64_MAX + 1, INT64_MAX, true};
    }
}

/* Narrow w to the integer type t and store it at dst. */
static int store_int(pstate *st, ProtobufCType t, const wide_int *w, void *dst)
{
    int_range r = range_of(t);
    if (w->mag > (w->neg ? r.neg_max : r.pos_max))
        return fail(st, "value %s%" PRIu64 " is out of range for %s", w->neg ? "-" : "", w->mag, r.name);
    if (w->neg && w->mag > 0) {
        int64_t v = -(int64_t)(w->mag - 1) - 1; /* mag may be 2^63 */
        if (r.is_64)
            *(int64_t *)dst = v;
        else
            *(int32_t *)dst = (int32_t)v;
    } else if (r.is_64) {
        *(uint64_t *)dst = w->mag;
    } else {
        *(uint32_t *)dst = (uint32_t)w->mag;
    }
    return 0;
}

static int parse_int(pstate *st, ProtobufCType t, struct json_object *v, void *dst)
{
    wide_int w;
    int rc = wide_from_json(v, &w);
    if (rc == WIDE_OVERFLOW)
        return fail(st, "value %s is out of range for %s", json_object_get_string(v), range_of(t).name);
    if (rc != WIDE_OK) {
        if (json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_double))
            return fail(st, "\"%s\" is not an integer", json_object_get_string(v));
        return fail(st, "expected an integer (%s), got %s", range_of(t).name, type_name(v));
    }
    return store_int(st, t, &w, dst);
}

static int parse_real(pstate *st, bool is_float, struct json_object *v, void *dst)
{
    double d;
    switch (json_object_get_type(v)) {
    case json_type_int:
    case json_type_double:
        d = json_object_get_double(v);
        break;
    case json_type_string:
        if (text_to_double(json_object_get_string(v), &d) < 0)
            return fail(st, "\"%s\" is not a number", json_object_get_string(v));
        break;
    default:
        return fail(st, "expected a number, got %s", type_name(v));
    }
    if (!is_float) {
        *(double *)dst = d;
        return 0;
    }
    if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX))
        return fail(st, "value %g is out of range for float", d);
    *(float *)dst = (float)d;
    return 0;
}

static int parse_bool(pstate *st, struct json_object *v, void *dst)
{
    if (!json_object_is_type(v, json_type_boolean))
        return fail(st, "expected a boolean, got %s", type_name(v));
    *(protobuf_c_boolean *)dst = json_object_get_boolean(v) ? 1 : 0;
    return 0;
}

static int parse_enum(pstate *st, const ProtobufCEnumDescriptor *d, struct json_object *v, void *dst)
{
    if (json_object_is_type(v, json_type_string)) {
        const char *name = json_object_get_string(v);
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(d, name);
        if (!ev)
            return fail(st, "unknown value \"%s\" for enum %s", name, d->name);
        *(int *)dst = ev->value;
        return 0;
    }
    if (!json_object_is_type(v, json_type_int))
        return fail(st, "expected an enum name or number for %s, got %s", d->name, type_name(v));
    return parse_int(st, PROTOBUF_C_TYPE_ENUM, v, dst); /* proto3 enums are open: any int32 */
}

/* A malloc'd copy of a JSON string that is valid UTF-8 without NUL bytes. */
static int dup_text(pstate *st, const char *s, size_t len, char **out)
{
    if (memchr(s, '\0', len))
        return fail(st, "string contains a NUL character");
    if (!utf8_valid((const unsigned char *)s, len))
        return fail(st, "string is not valid UTF-8");
    *out = strndup(s, len);
    return *out ? 0 : fail(st, "out of memory");
}

static int parse_string(pstate *st, struct json_object *v, void *dst)
{
    if (!json_object_is_type(v, json_type_string))
        return fail(st, "expected a string, got %s", type_name(v));
    return dup_text(st, json_object_get_string(v), (size_t)json_object_get_string_len(v), (char **)dst);
}

static int parse_bytes(pstate *st, struct json_object *v, void *dst)
{
    ProtobufCBinaryData *b = dst;
    if (!json_object_is_type(v, json_type_string))
        return fail(st, "expected a base64 string, got %s", type_name(v));
    if (b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v), &b->data, &b->len) < 0)
        return fail(st, "invalid base64 data");
    return 0;
}

/* ------------------------------------------------------------------------------------------------------ */
/* JSON -> messages, repeated fields and maps                                                             */
/* ------------------------------------------------------------------------------------------------------ */

static int parse_message(pstate *st, const ProtobufCMessageDescriptor *d, struct json_object *obj,
                         ProtobufCMessage **out);

/* One value of field f's type (singular, array element or map value) into dst. */
static int parse_value(pstate *st, const ProtobufCFieldDescriptor *f, struct json_object *v, void *dst)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT:
        return parse_real(st, true, v, dst);
    case PROTOBUF_C_TYPE_DOUBLE:
        return parse_real(st, false, v, dst);
    case PROTOBUF_C_TYPE_BOOL:
        return parse_bool(st, v, dst);
    case PROTOBUF_C_TYPE_ENUM:
        return parse_enum(st, f->descriptor, v, dst);
    case PROTOBUF_C_TYPE_STRING:
        return parse_string(st, v, dst);
    case PROTOBUF_C_TYPE_BYTES:
        return parse_bytes(st, v, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return parse_message(st, f->descriptor, v, dst);
    default:
        return parse_int(st, f->type, v, dst);
    }
}

/* The count covers each element before it is parsed (calloc'd slots are NULL/0, which free_unpacked
 * skips), so a half-built element message is freed with its parent after an error. */
static int parse_repeated(pstate *st, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                          struct json_object *v)
{
    if (!json_object_is_type(v, json_type_array))
        return fail(st, "expected an array, got %s", type_name(v));
    size_t n = json_object_array_length(v), size = pb_elem_size(f->type);
    size_t *count = MEMBER(m, f->quantifier_offset);
    char **arr = MEMBER(m, f->offset);
    if (n == 0)
        return 0;
    if (!(*arr = calloc(n, size)))
        return fail(st, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct json_object *el = json_object_array_get_idx(v, i);
        size_t saved = path_push(st, "[%zu]", i);
        (*count)++;
        if (!el)
            return fail(st, "null is not allowed in an array");
        if (parse_value(st, f, el, *arr + i * size) < 0)
            return -1;
        path_pop(st, saved);
    }
    return 0;
}

static int parse_map_key(pstate *st, const ProtobufCFieldDescriptor *kf, const char *key, void *dst)
{
    if (kf->type == PROTOBUF_C_TYPE_STRING)
        return dup_text(st, key, strlen(key), dst);
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(key, "true") && strcmp(key, "false"))
            return fail(st, "map key \"%s\" is not a boolean", key);
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return 0;
    }
    wide_int w;
    const char *digits = key + (*key == '-');
    if (!*digits || digits[strspn(digits, "0123456789")] || wide_from_text(key, &w) != WIDE_OK)
        return fail(st, "map key \"%s\" is not a valid %s", key, range_of(kf->type).name);
    return store_int(st, kf->type, &w, dst);
}

/* A JSON object becomes one XxxEntry message per member. */
static int parse_map(pstate *st, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                     struct json_object *v)
{
    if (!json_object_is_type(v, json_type_object))
        return fail(st, "expected an object (map), got %s", type_name(v));
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = map_key_field(f), *vf = map_value_field(f);
    size_t n = (size_t)json_object_object_length(v);
    size_t *count = MEMBER(m, f->quantifier_offset);
    ProtobufCMessage ***arr = MEMBER(m, f->offset);
    if (n == 0)
        return 0;
    if (!(*arr = calloc(n, sizeof(**arr))))
        return fail(st, "out of memory");
    json_object_object_foreach(v, key, val)
    {
        ProtobufCMessage *entry = malloc(ed->sizeof_message);
        if (!entry)
            return fail(st, "out of memory");
        protobuf_c_message_init(ed, entry);
        (*arr)[(*count)++] = entry;
        size_t saved = path_push(st, "[\"%s\"]", key);
        if (!val)
            return fail(st, "null is not allowed as a map value");
        if (parse_map_key(st, kf, key, MEMBER(entry, kf->offset)) < 0 ||
            parse_value(st, vf, val, MEMBER(entry, vf->offset)) < 0)
            return -1;
        path_pop(st, saved);
    }
    return 0;
}

/* A oneof member shares its union with its siblings: only one of them may be given. The case is set
 * before the value is parsed, so free_unpacked also frees a half-built member after an error. */
static int claim_oneof(pstate *st, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    uint32_t *which = MEMBER(m, f->quantifier_offset);
    if (*which != 0 && *which != f->id) {
        const ProtobufCFieldDescriptor *other =
            protobuf_c_message_descriptor_get_field(m->descriptor, *which);
        return fail(st, "only one member of a oneof may be set (\"%s\" is already)",
                    other ? other->name : "?");
    }
    *which = f->id;
    return 0;
}

static int parse_singular(pstate *st, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                          struct json_object *v)
{
    if (is_oneof(f) && claim_oneof(st, m, f) < 0)
        return -1;
    if (parse_value(st, f, v, MEMBER(m, f->offset)) < 0)
        return -1;
    if (has_presence_flag(f))
        *(protobuf_c_boolean *)MEMBER(m, f->quantifier_offset) = 1;
    return 0;
}

static int parse_field(pstate *st, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                       struct json_object *v)
{
    if (!v)
        return 0; /* null means "default", as proto3 JSON says */
    if (pb_is_map_field(f))
        return parse_map(st, m, f, v);
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return parse_repeated(st, m, f, v);
    return parse_singular(st, m, f, v);
}

/* Fill m from the members of obj; seen[] catches a field given twice (as proto and JSON name). */
static int parse_fields(pstate *st, ProtobufCMessage *m, struct json_object *obj, bool *seen)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    json_object_object_foreach(obj, key, val)
    {
        const ProtobufCFieldDescriptor *f = find_field(d, key);
        if (!f)
            return fail(st, "unknown field \"%s\" in message %s", key, d->name);
        size_t saved = path_push(st, "%s%s", st->path_len ? "." : "", key);
        if (seen[f - d->fields])
            return fail(st, "field \"%s\" given more than once", f->name);
        seen[f - d->fields] = true;
        if (parse_field(st, m, f, val) < 0)
            return -1;
        path_pop(st, saved);
    }
    return 0;
}

/* A new message in *out (stored before it is filled, so a failure leaves it to the caller's free). */
static int parse_message(pstate *st, const ProtobufCMessageDescriptor *d, struct json_object *obj,
                         ProtobufCMessage **out)
{
    if (!json_object_is_type(obj, json_type_object))
        return fail(st, "expected an object for message %s, got %s", d->name, obj ? type_name(obj) : "null");
    if (st->depth >= PBJSON_MSG_DEPTH)
        return fail(st, "messages nested too deeply (limit %d)", PBJSON_MSG_DEPTH);
    ProtobufCMessage *m = malloc(d->sizeof_message);
    bool *seen = calloc(d->n_fields ? d->n_fields : 1, sizeof(*seen));
    if (!m || !seen) {
        free(m);
        free(seen);
        return fail(st, "out of memory");
    }
    protobuf_c_message_init(d, m);
    *out = m;
    st->depth++;
    int rc = parse_fields(st, m, obj, seen);
    st->depth--;
    free(seen);
    return rc;
}

ProtobufCMessage *pbjson_from_object(const ProtobufCMessageDescriptor *desc, struct json_object *obj,
                                     ka_err *e)
{
    pstate st = {.e = e};
    ProtobufCMessage *m = NULL;
    if (parse_message(&st, desc, obj, &m) < 0) {
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

/* json-c silently saturates integer literals beyond the 64-bit range; find them in the (already valid)
 * text instead, skipping strings. Numbers with a fraction or exponent are doubles and stay as they are. */
static int check_int_literals(const char *p, ka_err *e)
{
    while (*p) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            p += *p == '"';
            continue;
        }
        if (*p != '-' && !(*p >= '0' && *p <= '9')) {
            p++;
            continue;
        }
        const char *start = p, *digits = p + (*p == '-');
        size_t n = strspn(digits, "0123456789");
        p = digits + n;
        if (*p == '.' || *p == 'e' || *p == 'E') {
            p += strspn(p, "0123456789.eE+-");
            continue;
        }
        errno = 0;
        if (*start == '-')
            (void)strtoll(start, NULL, 10);
        else
            (void)strtoull(start, NULL, 10);
        if (errno == ERANGE)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid JSON: integer %.*s is beyond the 64-bit range",
                           (int)(p - start), start);
    }
    return 0;
}

/* Strict JSON text (no trailing data, valid UTF-8) to a json-c tree (NULL for "null"); -1 with e set. */
static int parse_text(const char *json, struct json_object **out, ka_err *e)
{
    size_t len = json ? strlen(json) : 0;
    *out = NULL;
    if (!json)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid JSON: no text");
    if (len >= INT32_MAX)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid JSON: text too long");
    struct json_tokener *tok = json_tokener_new_ex(PBJSON_TEXT_DEPTH);
    if (!tok)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *obj = json_tokener_parse_ex(tok, json, (int)len + 1); /* + the NUL: end of input */
    enum json_tokener_error err = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (err != json_tokener_success) {
        json_object_put(obj);
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid JSON at offset %zu: %s", end,
                       json_tokener_error_desc(err));
    }
    if (check_int_literals(json, e) < 0) {
        json_object_put(obj);
        return -1;
    }
    *out = obj;
    return 0;
}

ProtobufCMessage *pbjson_parse(const ProtobufCMessageDescriptor *desc, const char *json, ka_err *e)
{
    ka_err scratch;
    struct json_object *obj;
    if (parse_text(json, &obj, e ? e : &scratch) < 0)
        return NULL;
    ProtobufCMessage *m = pbjson_from_object(desc, obj, e);
    json_object_put(obj);
    return m;
}
