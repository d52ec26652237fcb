/* A small strict TOML reader for the subset the agent's config file uses: comments, bare and quoted keys,
 * dotted keys, [table] headers, basic and literal strings, integers, booleans, arrays (of scalars, may span
 * lines, trailing comma allowed) and inline tables. Anything else (dates, floats, multi-line strings,
 * arrays of tables, duplicate keys) is an error naming the line. No C TOML library is packaged in
 * Debian 12, hence this one. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum toml_type {
    TOML_STRING,
    TOML_INT,
    TOML_BOOL,
    TOML_ARRAY,
    TOML_TABLE,
};

struct toml_value;

struct toml_kv {
    char *key;
    struct toml_value *value;
    int line; /* where it was defined, for error messages */
};

struct toml_value {
    enum toml_type type;
    union {
        char *s;
        int64_t i;
        bool b;
        struct {
            struct toml_value **items;
            size_t n;
        } arr;
        struct {
            struct toml_kv *kvs;
            size_t n;
        } tab;
    } u;
};

/* Parse a whole document; returns the root table or NULL with e set ("<origin>:<line>: <what>"). */
struct toml_value *toml_parse(const char *text, const char *origin, ka_err *e);
void toml_free(struct toml_value *v);
/* Lookup in a table (NULL if absent or v is not a table). */
const struct toml_kv *toml_get(const struct toml_value *table, const char *key);
const char *toml_type_name(enum toml_type t);
