/* The ttrpc.Request envelope read in place. Hand-written instead of protobuf-c's unpack because that copies
 * the payload (up to 4 MiB: a CopyFile chunk, WriteStdin data) into a fresh buffer on every request; here the
 * strings and the payload point into the frame, which stays valid while the request is dispatched. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ttrpc_request_view {
    const char *service, *method; /* not NUL-terminated */
    size_t service_len, method_len;
    const uint8_t *payload;
    size_t payload_len;
    int64_t timeout_nano;
};

/* Parse a Request (service = 1, method = 2, payload = 3, timeout_nano = 4, metadata = 5 as KeyValue
 * messages, checked for shape and otherwise ignored). Accepts what protobuf-c's unpack accepts: fields in any
 * order, later values win, unknown fields of wire types 0, 1, 2 and 5 skipped. false on malformed input. */
bool ttrpc_request_parse(const uint8_t *data, size_t len, struct ttrpc_request_view *v);
