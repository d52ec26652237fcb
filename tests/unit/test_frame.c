/* Unit tests of the ttrpc frame codec and the incremental frame reader. */
#include <stdint.h>
#include <stdlib.h>

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

RUN(header_is_big_endian, frames_split_byte_by_byte, several_frames_in_one_read, exactly_max_size_is_a_frame,
    oversized_is_skipped_and_stream_stays_in_sync, huge_length_from_garbage_header)
