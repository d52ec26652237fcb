/* Helpers over protobuf-c field descriptors, shared by the ctl tool's JSON codec and the bundle's
 * config.json writer: element sizes, map fields, proto3 default values. */
#pragma once
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* Size of one element of a repeated field's array. */
size_t pb_elem_size(ProtobufCType t);
/* A map<K,V> field: repeated XxxEntry message with exactly key = 1 and value = 2. */
bool pb_is_map_field(const ProtobufCFieldDescriptor *f);
/* Does a singular value equal the proto3 default (0, false, "", empty bytes, no message)? */
bool pb_value_is_default(const ProtobufCFieldDescriptor *f, const void *p);
