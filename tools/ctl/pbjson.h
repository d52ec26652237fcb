/* proto3 JSON <-> protobuf-c messages, driven by the protobuf-c descriptors (json-c for the JSON side).
 * Input accepts both the proto field name and its lowerCamelCase JSON name; output uses the JSON name
 * (protoc's json_name). 64-bit integers are written as strings and accepted as numbers or strings, bytes
 * are base64, enums are names (numbers accepted), map fields are JSON objects, google.protobuf.Empty is
 * {}. Unknown fields on input are an error naming the field. */
#pragma once
#include <json-c/json.h>
#include <protobuf-c/protobuf-c.h>

#include "../../src/util/err.h"

/* Build a message from JSON text; NULL with e set. Free with protobuf_c_message_free_unpacked(m, NULL). */
ProtobufCMessage *pbjson_parse(const ProtobufCMessageDescriptor *desc, const char *json, ka_err *e);
ProtobufCMessage *pbjson_from_object(const ProtobufCMessageDescriptor *desc, struct json_object *obj,
                                     ka_err *e);
/* JSON object for a message (fields with default values are omitted, as proto3 JSON does). */
struct json_object *pbjson_to_object(const ProtobufCMessage *msg);
/* Text (pretty when pretty != 0). malloc'd. */
char *pbjson_to_string(const ProtobufCMessage *msg, int pretty);
