/* The bundle's config.json: the container's OCI spec as runtime-spec JSON, for hooks that read it (upstream
 * writes it too). Written from the protobuf-c descriptors of oci.proto: field names become the spec's
 * ("UIDMappings" -> "uidMappings", "Version" -> "ociVersion"), maps become objects, zero values are left
 * out except the fields the runtime-spec always writes (uid/gid, device numbers, id mappings, rlimits). */
#include "oci_json.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../util/jsonw.h"
#include "../util/pbfield.h"

#define MAX_DEPTH 12 /* oci.proto nests 5 deep */

/* (message, field) pairs written even when zero. */
static const char *const always[][2] = {
    {"grpc.Spec", "Version"},
    {"grpc.Root", "Path"},
    {"grpc.User", "UID"},
    {"grpc.User", "GID"},
    {"grpc.LinuxDevice", "Major"},
    {"grpc.LinuxDevice", "Minor"},
    {"grpc.LinuxDevice", "Path"},
    {"grpc.LinuxDevice", "Type"},
    {"grpc.LinuxIDMapping", "HostID"},
    {"grpc.LinuxIDMapping", "ContainerID"},
    {"grpc.LinuxIDMapping", "Size"},
    {"grpc.POSIXRlimit", "Hard"},
    {"grpc.POSIXRlimit", "Soft"},
    {"grpc.LinuxDeviceCgroup", "Allow"},
};

static bool written_when_zero(const ProtobufCMessageDescriptor *d, const char *field)
{
    for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
        if (strcmp(d->name, always[i][0]) == 0 && strcmp(field, always[i][1]) == 0)
            return true;
    return false;
}

/* The runtime-spec's name for a field: the leading capitals lowered, but the last one when a lower-case
 * letter follows ("UIDMappings" -> "uidMappings", "HostID" -> "hostID", "L3CacheSchema" -> "l3CacheSchema").
 */
static void spec_name(const ProtobufCMessageDescriptor *d, const char *field, char *out, size_t n)
{
    if (strcmp(d->name, "grpc.Spec") == 0 && strcmp(field, "Version") == 0) {
        snprintf(out, n, "ociVersion");
        return;
    }
    if (strcmp(d->name, "grpc.LinuxHugepageLimit") == 0 && strcmp(field, "Pagesize") == 0) {
        snprintf(out, n, "pageSize");
        return;
    }
    size_t len = strlen(field), run = 0;
    while (run < len && isupper((unsigned char)field[run]))
        run++;
    size_t lower = run == len || run <= 1 ? run : (islower((unsigned char)field[run]) ? run - 1 : run);
    snprintf(out, n, "%s", field);
    for (size_t i = 0; i < lower && i < n; i++)
        out[i] = (char)tolower((unsigned char)out[i]);
}

static void put_key(struct jw *w, const char *key, bool *first)
{
    if (!*first)
        jw_put(w, ",", 1);
    *first = false;
    jw_str(w, key);
    jw_put(w, ":", 1);
}

static void put_message(struct jw *w, const ProtobufCMessage *m, int depth);

/* One scalar at p of the field's type. */
static void put_scalar(struct jw *w, const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    char num[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        snprintf(num, sizeof(num), "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(num, sizeof(num), "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(num, sizeof(num), "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(num, sizeof(num), "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        snprintf(num, sizeof(num), "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_STRING:
        jw_str(w, *(char *const *)p);
        return;
    case PROTOBUF_C_TYPE_MESSAGE:
        put_message(w, *(ProtobufCMessage *const *)p, depth + 1);
        return;
    default: /* float, double, bytes: not in oci.proto */
        snprintf(num, sizeof(num), "null");
        break;
    }
    jw_lit(w, num);
}

static void put_message(struct jw *w, const ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    bool first = true;
    if (depth > MAX_DEPTH) {
        jw_lit(w, "null");
        return;
    }
    jw_put(w, "{", 1);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        char key[64];
        if (strcmp(d->name, "grpc.Spec") == 0 && (!strcmp(f->name, "Solaris") || !strcmp(f->name, "Windows")))
            continue;
        spec_name(d, f->name, key, sizeof(key));
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            const char *arr = *(char *const *)base;
            if (n == 0)
                continue;
            put_key(w, key, &first);
            if (pb_is_map_field(f)) {
                jw_put(w, "{", 1);
                for (size_t k = 0; k < n; k++) {
                    const ProtobufCMessage *entry = ((ProtobufCMessage *const *)arr)[k];
                    const ProtobufCMessageDescriptor *ed = f->descriptor;
                    const char *ek = *(char *const *)((const char *)entry + ed->fields[0].offset);
                    const char *ev = *(char *const *)((const char *)entry + ed->fields[1].offset);
                    jw_field(w, ek, ev, k == 0);
                }
                jw_put(w, "}", 1);
                continue;
            }
            jw_put(w, "[", 1);
            for (size_t k = 0; k < n; k++) {
                if (k)
                    jw_put(w, ",", 1);
                put_scalar(w, f, arr + k * pb_elem_size(f->type), depth);
            }
            jw_put(w, "]", 1);
            continue;
        }
        if (pb_value_is_default(f, base) && !written_when_zero(d, f->name))
            continue;
        /* device cgroup rules: -1 is "any" (left out), as upstream converts it */
        if (strcmp(d->name, "grpc.LinuxDeviceCgroup") == 0 && f->type == PROTOBUF_C_TYPE_INT64 &&
            *(const int64_t *)base == -1)
            continue;
        put_key(w, key, &first);
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(ProtobufCMessage *const *)base)
            jw_lit(w, "{}");
        else
            put_scalar(w, f, base, depth);
    }
    jw_put(w, "}", 1);
}

char *oci_config_json(const Grpc__Spec *spec)
{
    struct jw w = {0};
    put_message(&w, &spec->base, 0);
    jw_put(&w, "\n", 1);
    return jw_finish(&w);
}
