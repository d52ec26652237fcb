/* Unit tests of the ttrpc frame codec, the incremental frame reader, and the in-place Request envelope parser
 * (checked against protobuf-c's unpack on valid, truncated and corrupted envelopes). */
#include <stdint.h>
#include <stdlib.h>

#include "ttrpc.pb-c.h"
#include "ttrpc/envelope.h"
#include "ttrpc/frame.h"
#include "unit.h"

static size_t make_frame(uint8_t *out, uint32_t len, uint32_t stream, uint8_t type, uint8_t fill)
{
    struct ttrpc_hdr h = {.len = len, .stream = stream, .type = type, .flags = 0};
    ttrpc_hdr_encode(out, &h);
    memset(out + TTRPC_HDR_LEN, fill, len);
    return TTRPC_HDR_LEN + len;
}

TEST(header_is_big_endian)
{
    uint8_t b[TTRPC_HDR_LEN];
    struct ttrpc_hdr h = {.len = 0x25, .stream = 0x01020304, .type = TTRPC_REQUEST, .flags = 5};
    ttrpc_hdr_encode(b, &h);
    static const uint8_t want[] = {0, 0, 0, 0x25, 1, 2, 3, 4, 1, 5};
    CHECK(memcmp(b, want, sizeof(want)) == 0);
    struct ttrpc_hdr d;
    ttrpc_hdr_decode(b, &d);
    CHECK_INT(d.len, 0x25);
    CHECK_INT(d.stream, 0x01020304);
    CHECK_INT(d.type, 1);
    CHECK_INT(d.flags, 5);
}

TEST(frames_split_byte_by_byte)
{
    uint8_t buf[64];
    size_t n = make_frame(buf, 20, 7, TTRPC_REQUEST, 'x');
    struct ttrpc_reader r = {0};
    struct ttrpc_hdr h;
    const uint8_t *data;
    for (size_t i = 0; i < n - 1; i++) {
        ttrpc_reader_feed(&r, buf + i, 1);
        CHECK_INT(ttrpc_reader_next(&r, &h, &data), TTRPC_RD_MORE);
        CHECK(ttrpc_reader_partial(&r));
    }
    ttrpc_reader_feed(&r, buf + n - 1, 1);
    CHECK_INT(ttrpc_reader_next(&r, &h, &data), TTRPC_RD_FRAME);
    CHECK_INT(h.stream, 7);
    CHECK_INT(h.len, 20);
    CHECK(data[0] == 'x' && data[19] == 'x');
    CHECK(!ttrpc_reader_partial(&r));
    ttrpc_reader_free(&r);
}

TEST(several_frames_in_one_read)
{
    uint8_t buf[256];
    size_t n = 0;
    n += make_frame(buf + n, 0, 1, TTRPC_REQUEST, 0);
    n += make_frame(buf + n, 5, 3, TTRPC_REQUEST, 'a');
    n += make_frame(buf + n, 9, 5, TTRPC_DATA, 'b');
    struct ttrpc_reader r = {0};
    ttrpc_reader_feed(&r, buf, n);
    struct ttrpc_hdr h;
    const uint8_t *data;
    uint32_t streams[3];
    for (int i = 0; i < 3; i++) {
        CHECK_INT(ttrpc_reader_next(&r, &h, &data), TTRPC_RD_FRAME);
        streams[i] = h.stream;
    }
    CHECK_INT(streams[0], 1);
    CHECK_INT(streams[1], 3);
    CHECK_INT(streams[2], 5);
    CHECK_INT(h.type, TTRPC_DATA);
    CHECK_INT(ttrpc_reader_next(&r, &h, &data), TTRPC_RD_MORE);
    ttrpc_reader_free(&r);
}

TEST(exactly_max_size_is_a_frame)
{
    uint8_t *buf = malloc(TTRPC_HDR_LEN + TTRPC_MAX_DATA);
    size_t n = make_frame(buf, TTRPC_MAX_DATA, 9, TTRPC_REQUEST, 'z');
    struct ttrpc_reader r = {0};
    ttrpc_reader_feed(&r, buf, n);
    struct ttrpc_hdr h;
    const uint8_t *data;
    CHECK_INT(ttrpc_reader_next(&r, &h, &data), TTRPC_RD_FRAME);
    CHECK_INT(h.len, TTRPC_MAX_DATA);
    CHECK(data[TTRPC_MAX_DATA - 1] == 'z');
    ttrpc_reader_free(&r);
    free(buf);
}

TEST(oversized_is_skipped_and_stream_stays_in_sync)
{
    uint32_t big = TTRPC_MAX_DATA + 1;
    uint8_t *buf = malloc(TTRPC_HDR_LEN + big + 64);
    size_t n = make_frame(buf, big, 11, TTRPC_REQUEST, 'q');
    n += make_frame(buf + n, 3, 13, TTRPC_REQUEST, 'k');
    struct ttrpc_reader r = {0};
    struct ttrpc_hdr h;
    const uint8_t *data;
    /* header plus part of the body first, the rest in chunks */
    ttrpc_reader_feed(&r, buf, 1000);
    CHECK_INT(ttrpc_reader_next(&r, &h, &data), TTRPC_RD_OVERSIZED);
    CHECK_INT(h.stream, 11);
    CHECK_INT(h.len, big);
    size_t off = 1000;
    int frames = 0;
    while (off < n) {
        size_t chunk = n - off < 100000 ? n - off : 100000;
        ttrpc_reader_feed(&r, buf + off, chunk);
        off += chunk;
        enum ttrpc_rd ev;
        while ((ev = ttrpc_reader_next(&r, &h, &data)) != TTRPC_RD_MORE) {
            CHECK_INT(ev, TTRPC_RD_FRAME);
            CHECK_INT(h.stream, 13);
            CHECK(memcmp(data, "kkk", 3) == 0);
            frames++;
        }
    }
    CHECK_INT(frames, 1);
    CHECK(!ttrpc_reader_partial(&r));
    ttrpc_reader_free(&r);
    free(buf);
}

TEST(huge_length_from_garbage_header)
{
    /* first byte non-zero: the length is >= 16 MiB and is skipped, never allocated */
    uint8_t garbage[TTRPC_HDR_LEN] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0};
    struct ttrpc_reader r = {0};
    struct ttrpc_hdr h;
    const uint8_t *data;
    ttrpc_reader_feed(&r, garbage, sizeof(garbage));
    CHECK_INT(ttrpc_reader_next(&r, &h, &data), TTRPC_RD_OVERSIZED);
    CHECK_INT(r.discard, 0xffffffffu);
    CHECK(r.in.cap < 1024 * 1024);
    ttrpc_reader_free(&r);
}

static size_t pack_request(uint8_t *buf, const char *svc, const char *method, const uint8_t *payload,
                           size_t plen, int64_t timeout, bool metadata)
{
    Ttrpc__Request rq = TTRPC__REQUEST__INIT;
    Ttrpc__KeyValue kv = TTRPC__KEY_VALUE__INIT, *kvs[1] = {&kv};
    rq.service = (char *)svc;
    rq.method = (char *)method;
    rq.payload.data = (uint8_t *)payload;
    rq.payload.len = plen;
    rq.timeout_nano = timeout;
    if (metadata) {
        kv.key = "traceparent";
        kv.value = "00-abc-def-01";
        rq.n_metadata = 1;
        rq.metadata = kvs;
    }
    return ttrpc__request__pack(&rq, buf);
}

static bool pbc_accepts(const uint8_t *b, size_t n)
{
    Ttrpc__Request *rq = ttrpc__request__unpack(NULL, n, b);
    if (rq)
        ttrpc__request__free_unpacked(rq, NULL);
    return rq != NULL;
}

TEST(envelope_fields_point_into_the_frame)
{
    uint8_t buf[512], payload[100];
    struct ttrpc_request_view v;
    memset(payload, 0xab, sizeof(payload));
    size_t n = pack_request(buf, "grpc.AgentService", "CopyFile", payload, sizeof(payload), -5, true);
    CHECK(ttrpc_request_parse(buf, n, &v));
    CHECK(v.service_len == 17 && memcmp(v.service, "grpc.AgentService", 17) == 0);
    CHECK(v.method_len == 8 && memcmp(v.method, "CopyFile", 8) == 0);
    CHECK(v.payload_len == sizeof(payload) && v.payload > buf && v.payload < buf + n);
    CHECK(memcmp(v.payload, payload, sizeof(payload)) == 0);
    CHECK_INT(v.timeout_nano, -5);
    CHECK(ttrpc_request_parse(buf, 0, &v) && v.service_len == 0 && v.payload_len == 0); /* all defaults */
    /* later values win, unknown fields are skipped */
    static const uint8_t twice[] = {0x0a, 1, 'a', 0x0a, 1, 'b', 0x30, 7, 0x3a, 0, 0x45, 1,
                                    2,    3, 4,   0x49, 1, 2,   3,    4, 5,    6, 7,    8};
    CHECK(ttrpc_request_parse(twice, sizeof(twice), &v) && v.service_len == 1 && v.service[0] == 'b');
    CHECK(pbc_accepts(twice, sizeof(twice)));
}

TEST(envelope_refusals)
{
    struct ttrpc_request_view v;
    static const struct {
        const char *what;
        uint8_t b[16];
        size_t n;
    } bad[] = {
        {"service as a varint", {0x08, 1}, 2},
        {"timeout as bytes", {0x22, 1, 0}, 3},
        {"a group", {0x0b, 0x0c}, 2},
        {"wire type 7", {0x0f}, 1},
        {"field number 0", {0x02, 0}, 2},
        {"length past the end", {0x1a, 5, 1, 2}, 4},
        {"11-byte varint", {0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1}, 12},
        {"truncated varint", {0x20, 0x80}, 2},
        {"truncated fixed64", {0x49, 1, 2, 3}, 4},
        {"metadata key as a varint", {0x2a, 2, 0x08, 1}, 4},
        {"metadata with a truncated field", {0x2a, 2, 0x0a, 5}, 4},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool ours = ttrpc_request_parse(bad[i].b, bad[i].n, &v), pbc = pbc_accepts(bad[i].b, bad[i].n);
        if (ours || pbc)
            printf("# %s: ours %d protobuf-c %d\n", bad[i].what, ours, pbc);
        CHECK(!ours && !pbc);
    }
}

/* Every prefix and every single-byte corruption of real envelopes: accepted exactly when protobuf-c accepts.
 */
TEST(envelope_agrees_with_protobuf_c)
{
    uint8_t buf[512], payload[40], mut[512];
    struct ttrpc_request_view v;
    unsigned disagree = 0, seed = 12345;
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)i;
    for (int variant = 0; variant < 2; variant++) {
        size_t n = pack_request(buf, "grpc.Health", "Check", payload, sizeof(payload), 300000000, variant);
        for (size_t cut = 0; cut <= n; cut++)
            disagree += ttrpc_request_parse(buf, cut, &v) != pbc_accepts(buf, cut);
        for (int round = 0; round < 4000; round++) {
            memcpy(mut, buf, n);
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            mut[at] = (uint8_t)(seed >> 16);
            bool ours = ttrpc_request_parse(mut, n, &v), pbc = pbc_accepts(mut, n);
            if (ours != pbc && disagree++ < 5)
                printf("# byte %zu = 0x%02x: ours %d protobuf-c %d\n", at, mut[at], ours, pbc);
        }
    }
    CHECK_INT(disagree, 0);
}

RUN(envelope_fields_point_into_the_frame, envelope_refusals, envelope_agrees_with_protobuf_c,
    header_is_big_endian, frames_split_byte_by_byte, several_frames_in_one_read, exactly_max_size_is_a_frame,
    oversized_is_skipped_and_stream_stays_in_sync, huge_length_from_garbage_header)
