/* Unit tests of the TOML-subset parser (src/util/toml.c): valid documents, errors, hostile input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "util/toml.h"

/* ---- helpers ---- */

/* A compact dump of a tree: {k=v,...}, [v,...], "str" (bytes outside printable ASCII, '"' and '\' as \xNN).
 */
static void dump_value(FILE *f, const struct toml_value *v)
{
    switch (v->type) {
    case TOML_STRING:
        fputc('"', f);
        for (const unsigned char *s = (const unsigned char *)v->u.s; *s; s++) {
            if (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\')
                fputc(*s, f);
            else
                fprintf(f, "\\x%02x", *s);
        }
        fputc('"', f);
        break;
    case TOML_INT:
        fprintf(f, "%lld", (long long)v->u.i);
        break;
    case TOML_BOOL:
        fputs(v->u.b ? "true" : "false", f);
        break;
    case TOML_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < v->u.arr.n; i++) {
            if (i)
                fputc(',', f);
            dump_value(f, v->u.arr.items[i]);
        }
        fputc(']', f);
        break;
    case TOML_TABLE:
        fputc('{', f);
        for (size_t i = 0; i < v->u.tab.n; i++) {
            fprintf(f, "%s%s=", i ? "," : "", v->u.tab.kvs[i].key);
            dump_value(f, v->u.tab.kvs[i].value);
        }
        fputc('}', f);
        break;
    }
}

static char *dump(const struct toml_value *v)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    dump_value(f, v);
    fclose(f);
    return buf;
}

/* Prints "# <what> <doc>" on one TAP diagnostic line: control bytes escaped, long documents cut. */
static void show_doc(const char *what, const char *doc)
{
    printf("# %s ", what);
    for (size_t i = 0; doc[i] && i < 80; i++) {
        unsigned char c = (unsigned char)doc[i];
        if (c >= 0x20 && c < 0x7f)
            putchar(c);
        else
            printf("\\x%02x", c);
    }
    printf("%s\n", strlen(doc) > 80 ? "..." : "");
}

/* Parses doc (origin "t") and compares the dump; prints the case on mismatch. */
static int parses_to(const char *doc, const char *want)
{
    ka_err e = {0};
    struct toml_value *root = toml_parse(doc, "t", &e);
    if (!root) {
        show_doc("doc", doc);
        printf("#   unexpected error: %s\n", e.msg);
        return 0;
    }
    char *got = dump(root);
    int ok = got && strcmp(got, want) == 0;
    if (!ok) {
        show_doc("doc", doc);
        printf("#   got  %s\n#   want %s\n", got ? got : "(null)", want);
    }
    free(got);
    toml_free(root);
    return ok;
}

/* Parses doc expecting an error whose message contains want (which starts with "t:<line>: "). */
static int fails_with(const char *doc, const char *want)
{
    ka_err e = {0};
    struct toml_value *root = toml_parse(doc, "t", &e);
    if (root) {
        show_doc("doc", doc);
        printf("#   parsed, expected error %s\n", want);
        toml_free(root);
        return 0;
    }
    if (!strstr(e.msg, want) || strncmp(e.msg, "t:", 2) != 0) {
        show_doc("doc", doc);
        printf("#   error %s\n#   want  %s\n", e.msg, want);
        return 0;
    }
    return 1;
}

/* malloc'd prefix + n copies of unit + suffix. */
static char *repeat(const char *prefix, const char *unit, size_t n, const char *suffix)
{
    size_t pl = strlen(prefix), ul = strlen(unit), sl = strlen(suffix);
    char *s = malloc(pl + ul * n + sl + 1);
    if (!s)
        abort();
    memcpy(s, prefix, pl);
    for (size_t i = 0; i < n; i++)
        memcpy(s + pl + i * ul, unit, ul);
    memcpy(s + pl + ul * n, suffix, sl + 1);
    return s;
}

/* ---- valid documents ---- */

static const struct {
    const char *doc, *want;
} valid[] = {
    {"", "{}"},
    {"# only a comment\n\n   \n", "{}"},
    {"a = 1", "{a=1}"},
    {"a = 1\nb = \"x\"\n", "{a=1,b=\"x\"}"},
    {"a=1#comment\n", "{a=1}"},
    {"  a\t=\t-42  # trailing\r\n", "{a=-42}"},
    {"\"quoted key\" = 1\n'lit key' = 2\n\"\" = 3", "{quoted key=1,lit key=2,=3}"},
    {"1234 = 5\n-_- = 6\ntrue = 7", "{1234=5,-_-=6,true=7}"},
    {"a.b.c = 1\na.b.d = 2\na.e = 3", "{a={b={c=1,d=2},e=3}}"},
    {"a . b = 1\na.\"x y\".'z' = 2", "{a={b=1,x y={z=2}}}"},
    {"\"a.b\" = 1", "{a.b=1}"},
    {"[t]\nx = 1\n[u.v]\ny = 2", "{t={x=1},u={v={y=2}}}"},
    {"[a.b]\nx = 1\n[a]\ny = 2", "{a={b={x=1},y=2}}"},
    {"[ a . \"b c\" ]  # header comment\nx=1", "{a={b c={x=1}}}"},
    {"a.b = 1\n[a.c]\nx = 1", "{a={b=1,c={x=1}}}"},
    {"[t]\nv.w = 1\nv.x = 2", "{t={v={w=1,x=2}}}"},
    /* strings */
    {"s = \"q\\\"b\\\\n\\nt\\tr\\rb\\bf\\f\"", "{s=\"q\\x22b\\x5cn\\x0at\\x09r\\x0db\\x08f\\x0c\"}"},
    {"s = \"\\u00e9\\u20AC\\U0001F600\"", "{s=\"\\xc3\\xa9\\xe2\\x82\\xac\\xf0\\x9f\\x98\\x80\"}"},
    {"s = 'C:\\path\\n \"x\"'", "{s=\"C:\\x5cpath\\x5cn \\x22x\\x22\"}"},
    {"s = \"\"\nt = ''", "{s=\"\",t=\"\"}"},
    {"s = \"\xc3\xa9\"", "{s=\"\\xc3\\xa9\"}"},
    {"k = \"# not a comment\"", "{k=\"# not a comment\"}"},
    {"k = \"tab\tinside\"", "{k=\"tab\\x09inside\"}"},
    /* integers and booleans */
    {"a = 0\nb = +7\nc = -0\nd = 1_000_000\ne = 0xDEAD_beef\nf = 0o755\ng = 0b1010\nk = 0x00ff",
     "{a=0,b=7,c=0,d=1000000,e=3735928559,f=493,g=10,k=255}"},
    {"max = 9223372036854775807\nmin = -9223372036854775808\nhex = 0x7fffffffffffffff",
     "{max=9223372036854775807,min=-9223372036854775808,hex=9223372036854775807}"},
    {"t = true\nf = false", "{t=true,f=false}"},
    /* arrays */
    {"a = [1, 2, 3]\nb = []\nc = [ \"x\", 'y', ]", "{a=[1,2,3],b=[],c=[\"x\",\"y\"]}"},
    {"d = [\n  1, # one\n  2,\n  # a comment line\n]\nnext = 1", "{d=[1,2],next=1}"},
    {"e = [[1, 2], [\"a\"], []]\nf = [1, \"mixed\", true]", "{e=[[1,2],[\"a\"],[]],f=[1,\"mixed\",true]}"},
    /* inline tables */
    {"p = { x = 1, y = \"two\" }\nq = {}\nr = {a.b = 1, c = [1, {d = true}]}",
     "{p={x=1,y=\"two\"},q={},r={a={b=1},c=[1,{d=true}]}}"},
    {"h = {secs = 5, nanos = 0}", "{h={secs=5,nanos=0}}"},
    /* line endings, byte order mark */
    {"a = 1\r\n[t]\r\nb = [\r\n1,\r\n]\r\n", "{a=1,t={b=[1]}}"},
    {"\xef\xbb\xbf"
     "a = 1",
     "{a=1}"},
    {"x = 1 # comment with \"quotes\", [brackets] and \xc3\xa9", "{x=1}"},
    {"[endpoints]\nallowed = [\"CreateContainerRequest\", \"ReadStreamRequest\"]",
     "{endpoints={allowed=[\"CreateContainerRequest\",\"ReadStreamRequest\"]}}"},
};

TEST(parse_valid_documents)
{
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        CHECK(parses_to(valid[i].doc, valid[i].want));
}

/* ---- invalid documents ---- */

static const struct {
    const char *doc, *want;
} invalid[] = {
    /* duplicates and redefinitions */
    {"a = 1\na = 2", "t:2: duplicate key a (first defined on line 1)"},
    {"a.b = 1\na.b = 2", "t:2: duplicate key a.b"},
    {"\"a\" = 1\na = 2", "t:2: duplicate key a"},
    {"a = {x = 1, x = 2}", "t:1: duplicate key x"},
    {"[t]\n[t]", "t:2: table [t] redefined (first defined on line 1)"},
    {"[a]\n[\"a\"]", "t:2: table [a] redefined"},
    {"[a.b]\n[a.b.c]\n[a.b]", "t:3: table [a.b] redefined"},
    {"a.b = 1\n[a]", "t:2: table [a] redefined"},
    {"a = 1\n[a]", "t:2: cannot define table [a]: a is not a table (line 1)"},
    {"[a]\nb = 1\n[a.b.c]", "t:3: cannot define table [a.b.c]: a.b is not a table"},
    {"a = {x = 1}\n[a]", "t:2: cannot define table [a]: a is an inline table"},
    {"a = {x = 1}\n[a.y]", "t:2: cannot define table [a.y]: a is an inline table"},
    {"a = {x = 1}\na.y = 2", "t:2: cannot define key a.y: a was already defined on line 1"},
    {"a = 1\na.b = 2", "t:2: cannot define key a.b: a was already defined on line 1"},
    {"[a.b]\n[a]\nb.c = 1", "t:3: cannot define key b.c: b was already defined on line 1"},
    {"a = [1]\n[a]", "t:2: cannot define table [a]: a is not a table"},
    /* unterminated constructs */
    {"s = \"abc", "t:1: unterminated string"},
    {"s = \"abc\nx = 1", "t:1: unterminated string"},
    {"s = \"abc\\", "t:1: unterminated string"},
    {"s = \"abc\\\"", "t:1: unterminated string"},
    {"s = 'abc", "t:1: unterminated string"},
    {"\"key = 1", "t:1: unterminated string"},
    {"a = [1, 2", "t:1: unterminated array (opened on line 1)"},
    {"a = [1, 2,\n\n", "t:3: unterminated array (opened on line 1)"},
    {"a = [", "t:1: unterminated array"},
    {"a = { x = 1", "t:1: unterminated inline table"},
    {"a = { x = 1,\n y = 2 }", "t:1: expected a key, found end of line"},
    {"a = {", "t:1: expected a key, found end of file"},
    {"[a", "t:1: expected ']' after table name, found end of file"},
    /* garbage */
    {"a = 1 2", "t:1: unexpected '2' after value"},
    {"a = \"x\" y", "t:1: unexpected 'y' after value"},
    {"a = \"x\"\"y\"", "t:1: unexpected '\"' after value"},
    {"a = 1,", "t:1: unexpected ',' after value"},
    {"a = [1] ]", "t:1: unexpected ']' after value"},
    {"[t] x = 1", "t:1: unexpected 'x' after table header"},
    {"[t]]", "t:1: unexpected ']' after table header"},
    {"a = bare", "t:1: invalid value bare (strings must be quoted)"},
    {"a = True", "t:1: invalid value True"},
    {"a =", "t:1: expected a value, found end of file"},
    {"a = \nb = 1", "t:1: expected a value, found end of line"},
    {"= 1", "t:1: expected a key, found '='"},
    {"a b = 1", "t:1: expected '=' after key, found 'b'"},
    {"a", "t:1: expected '=' after key, found end of file"},
    {"a.= 1", "t:1: expected a key, found '='"},
    {"[]", "t:1: expected a key, found ']'"},
    {"a = [1,,2]", "t:1: expected a value, found ','"},
    {"a = [,]", "t:1: expected a value, found ','"},
    {"a = [1 2]", "t:1: expected ',' or ']' in array, found '2'"},
    {"a = [\n  1,\n  2\n  \"x\"]", "t:4: expected ',' or ']' in array, found '\"'"},
    {"a = [\n  1,\n  bad,\n]", "t:3: invalid value bad"},
    {"a = { x = 1 y = 2 }", "t:1: expected ',' or '}' in inline table, found 'y'"},
    {"a = {x = 1,}", "t:1: trailing comma in inline table"},
    {"a = {x = 1} # c\nb = {y = [1, {z = }]}", "t:2: expected a value, found '}'"},
    /* unsupported TOML */
    {"a = 3.14", "t:1: unsupported float value 3.14"},
    {"a = 1e5", "t:1: unsupported float value"},
    {"a = -1_000.5", "t:1: unsupported float value"},
    {"a = inf", "t:1: unsupported float value inf"},
    {"a = -nan", "t:1: unsupported float value"},
    {"a = 1979-05-27", "t:1: unsupported date/time value 1979-05-27"},
    {"a = 1979-05-27T07:32:00Z", "t:1: unsupported date/time value"},
    {"a = 07:32:00", "t:1: unsupported date/time value"},
    {"a = 1979-05-27 07:32:00", "t:1: unsupported date/time value"},
    {"a = \"\"\"multi\nline\"\"\"", "t:1: unsupported multi-line string"},
    {"a = '''x'''", "t:1: unsupported multi-line string"},
    {"[[arr]]\nx = 1", "t:1: unsupported array of tables"},
    /* integers */
    {"a = 9223372036854775808", "t:1: integer 9223372036854775808 out of range"},
    {"a = -9223372036854775809", "t:1: integer -9223372036854775809 out of range"},
    {"a = 0x8000000000000000", "t:1: integer 0x8000000000000000 out of range"},
    {"a = 0xffffffffffffffffff", "t:1: integer 0xffffffffffffffffff out of range"},
    {"a = 0b"
     "1111111111111111111111111111111111111111111111111111111111111111",
     "out of range"},
    {"a = 1__0", "t:1: invalid integer 1__0"},
    {"a = _1", "t:1: invalid value _1"},
    {"a = 1_", "t:1: invalid integer 1_"},
    {"a = 0x_1", "t:1: invalid integer 0x_1"},
    {"a = 0x", "t:1: invalid integer 0x"},
    {"a = 01", "t:1: invalid integer 01"},
    {"a = -01", "t:1: invalid integer -01"},
    {"a = 0xg", "t:1: invalid integer 0xg"},
    {"a = 0b2", "t:1: invalid integer 0b2"},
    {"a = 0o8", "t:1: invalid integer 0o8"},
    {"a = +0x1", "t:1: invalid integer +0x1"},
    {"a = 0X1", "t:1: invalid integer 0X1"},
    {"a = -", "t:1: invalid integer -"},
    {"a = 12abc", "t:1: invalid integer 12abc"},
    /* escapes */
    {"a = \"\\x41\"", "t:1: invalid escape \\x in string"},
    {"a = \"\\e\"", "t:1: invalid escape \\e in string"},
    {"a = \"\\ \"", "t:1: invalid escape in string: backslash followed by byte 0x20"},
    {"a = \"\\u12\"", "t:1: invalid \\u escape: want 4 hex digits"},
    {"a = \"\\U0001F60\"", "t:1: invalid \\U escape: want 8 hex digits"},
    {"a = \"\\uD800\"", "t:1: invalid unicode code point U+D800"},
    {"a = \"\\U00110000\"", "t:1: invalid unicode code point U+110000"},
    {"a = \"\\u0000\"", "t:1: \\u0000 is not supported"},
    /* bytes */
    {"a = \"x\x01\"", "t:1: control character U+0001"},
    {"a = 1\n\x7f", "t:2: control character U+007F"},
    {"# comment \x1b[31m\n", "t:1: control character U+001B"},
    {"a = 1\rb = 2", "t:1: carriage return not followed by a newline"},
    {"a = 1\n\nb = \"\xff\"", "t:3: invalid UTF-8"},
    {"a = \"\xc0\xaf\"", "t:1: invalid UTF-8"},
    {"a = \"\xed\xa0\x80\"", "t:1: invalid UTF-8"},
    {"a = \"\xf4\x90\x80\x80\"", "t:1: invalid UTF-8"},
    {"a = \"\xe2\x82\"", "t:1: invalid UTF-8"},
};

TEST(parse_invalid_documents)
{
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        CHECK(fails_with(invalid[i].doc, invalid[i].want));
}

TEST(error_names_origin_and_line)
{
    ka_err e = {0};
    CHECK(!toml_parse("a = 1\n\n\na = 2\n", "/etc/agent.toml", &e));
    CHECK_STR(e.msg, "/etc/agent.toml:4: duplicate key a (first defined on line 1)");
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    CHECK(!toml_parse("x = ?", NULL, &e));
    CHECK_STR(e.msg, "<toml>:1: invalid value ? (strings must be quoted)");
    CHECK(!toml_parse(NULL, "t", &e));
    CHECK(strstr(e.msg, "t:1:") == e.msg);
}

/* ---- lookups ---- */

TEST(get_and_type_names)
{
    ka_err e = {0};
    struct toml_value *root = toml_parse("a = 1\n[t]\ns = \"x\"\nb = true\narr = [1]\n", "t", &e);
    CHECK(root);
    if (!root)
        return;
    const struct toml_kv *a = toml_get(root, "a"), *t = toml_get(root, "t");
    CHECK(a && a->value->type == TOML_INT && a->value->u.i == 1 && a->line == 1);
    CHECK(t && t->value->type == TOML_TABLE && t->line == 2);
    const struct toml_kv *s = toml_get(t->value, "s"), *b = toml_get(t->value, "b");
    CHECK(s && s->value->type == TOML_STRING && s->line == 3);
    CHECK_STR(s->value->u.s, "x");
    CHECK(b && b->value->type == TOML_BOOL && b->value->u.b);
    CHECK(!toml_get(root, "s"));
    CHECK(!toml_get(root, "missing"));
    CHECK(!toml_get(a->value, "x")); /* not a table */
    CHECK(!toml_get(NULL, "a"));
    CHECK_STR(toml_type_name(TOML_STRING), "string");
    CHECK_STR(toml_type_name(TOML_INT), "integer");
    CHECK_STR(toml_type_name(TOML_BOOL), "boolean");
    CHECK_STR(toml_type_name(TOML_ARRAY), "array");
    CHECK_STR(toml_type_name(TOML_TABLE), "table");
    toml_free(root);
    toml_free(NULL);
}

TEST(line_numbers_of_keys)
{
    ka_err e = {0};
    struct toml_value *root = toml_parse("# c\n\na = [\n1,\n2]\nb = 2\r\n[x.y]\nz.w = 1\n", "t", &e);
    CHECK(root);
    if (!root)
        return;
    CHECK_INT(toml_get(root, "a")->line, 3);
    CHECK_INT(toml_get(root, "b")->line, 6);
    const struct toml_value *y = toml_get(toml_get(root, "x")->value, "y")->value;
    CHECK_INT(toml_get(y, "z")->line, 8);
    toml_free(root);
}

/* ---- hostile input ---- */

static int parse_ok(const char *doc)
{
    ka_err e = {0};
    struct toml_value *root = toml_parse(doc, "t", &e);
    if (!root)
        printf("# unexpected error: %s\n", e.msg);
    toml_free(root);
    return root != NULL;
}

TEST(nesting_limits)
{
    char *doc = repeat("a = ", "[", 32, "");
    char *ok = repeat(doc, "]", 32, "");
    CHECK(parse_ok(ok));
    free(ok);
    free(doc);

    doc = repeat("a = ", "[", 33, "");
    char *deep = repeat(doc, "]", 33, "");
    CHECK(fails_with(deep, "t:1: nesting deeper than 32 levels"));
    free(deep);
    free(doc);

    doc = repeat("a = ", "{b = ", 32, "1");
    ok = repeat(doc, "}", 32, "");
    CHECK(parse_ok(ok));
    free(ok);
    free(doc);

    doc = repeat("a = ", "{b = ", 33, "1");
    deep = repeat(doc, "}", 33, "");
    CHECK(fails_with(deep, "nesting deeper than 32 levels"));
    free(deep);
    free(doc);

    /* arrays and inline tables mixed, over lines */
    doc = repeat("a = ", "[{x = \n", 20, "");
    CHECK(fails_with(doc, "t:1: expected a value, found end of line"));
    free(doc);
    doc = repeat("a = ", "[\n{x = [", 17, "");
    CHECK(fails_with(doc, "nesting deeper than 32 levels"));
    free(doc);
}

TEST(key_part_limits)
{
    char *key = repeat("k", ".k", 31, " = 1"); /* 32 parts */
    CHECK(parse_ok(key));
    free(key);
    key = repeat("k", ".k", 32, " = 1");
    CHECK(fails_with(key, "t:1: key with more than 32 parts"));
    free(key);
    key = repeat("[k", ".k", 31, "]\nx = 1");
    CHECK(parse_ok(key));
    free(key);
    key = repeat("[k", ".k", 32, "]");
    CHECK(fails_with(key, "t:1: key with more than 32 parts"));
    free(key);
    /* dotted levels count towards the value nesting limit */
    key = repeat("k", ".k", 31, " = [1]");
    CHECK(parse_ok(key));
    free(key);
    key = repeat("k", ".k", 31, " = [[1]]");
    CHECK(fails_with(key, "nesting deeper than 32 levels"));
    free(key);
    key = repeat("a = ", "{k.k.k.k.k.k.k = ", 5, "1}}}}}");
    CHECK(fails_with(key, "nesting deeper than 32 levels"));
    free(key);
}

TEST(unterminated_floods)
{
    /* must fail cleanly, without deep recursion */
    char *doc = repeat("a = ", "[", 100000, "");
    CHECK(fails_with(doc, "nesting deeper than 32 levels"));
    free(doc);
    doc = repeat("a = ", "{b = ", 100000, "");
    CHECK(fails_with(doc, "nesting deeper than 32 levels"));
    free(doc);
    doc = repeat("", "[", 100000, "");
    CHECK(fails_with(doc, "unsupported array of tables"));
    free(doc);
    doc = repeat("[", "a.", 100000, "a]");
    CHECK(fails_with(doc, "key with more than 32 parts"));
    free(doc);
    doc = repeat("a = \"", "x", 100000, "");
    CHECK(fails_with(doc, "t:1: unterminated string"));
    free(doc);
    doc = repeat("a = \"", "\\\"", 100000, "");
    CHECK(fails_with(doc, "t:1: unterminated string"));
    free(doc);
    doc = repeat("a = [", "1,\n", 100000, "");
    CHECK(fails_with(doc, "t:100001: unterminated array (opened on line 1)"));
    free(doc);
}

TEST(very_long_lines)
{
    ka_err e = {0};
    char *doc = repeat("s = \"", "0123456789", 100000, "\" # end");
    struct toml_value *root = toml_parse(doc, "t", &e);
    CHECK(root && strlen(toml_get(root, "s")->value->u.s) == 1000000);
    toml_free(root);
    free(doc);

    doc = repeat("", "k", 100000, " = 1");
    root = toml_parse(doc, "t", &e);
    CHECK(root && root->u.tab.n == 1 && strlen(root->u.tab.kvs[0].key) == 100000);
    toml_free(root);
    free(doc);

    doc = repeat("# ", "comment ", 200000, "\na = 1");
    CHECK(parses_to(doc, "{a=1}"));
    free(doc);

    doc = repeat("a = [", "0,", 100000, "]");
    root = toml_parse(doc, "t", &e);
    CHECK(root && toml_get(root, "a")->value->u.arr.n == 100000);
    toml_free(root);
    free(doc);

    doc = repeat("a = ", "1", 100000, "");
    CHECK(fails_with(doc, "t:1: integer 1111111111111111111111111111111111111111 out of range"));
    free(doc);
    doc = repeat("a = ", "x", 100000, "");
    CHECK(fails_with(doc, "t:1: invalid value xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx (strings"));
    free(doc);
    doc = repeat("a = \"", "\\u00e9", 50000, "\"");
    root = toml_parse(doc, "t", &e);
    CHECK(root && strlen(toml_get(root, "a")->value->u.s) == 100000);
    toml_free(root);
    free(doc);
}

TEST(too_many_keys)
{
    char key[32];
    size_t cap = 1025 * 16, len = 0;
    char *doc = malloc(cap);
    if (!doc)
        abort();
    doc[0] = '\0';
    for (int i = 0; i < 1024; i++)
        len += (size_t)snprintf(doc + len, cap - len, "k%d = 1\n", i);
    CHECK(parse_ok(doc));
    snprintf(key, sizeof(key), "k%d = 1\n", 1024);
    memcpy(doc + len, key, strlen(key) + 1);
    CHECK(fails_with(doc, "t:1025: more than 1024 keys in one table"));
    free(doc);
}

/* Every prefix of a document using every construct: parsed or refused, never a crash or leak. */
TEST(every_prefix)
{
    static const char doc[] = "# config\n"
                              "a = 1\n"
                              "b.c = \"s\\u00e9\\n\"\n"
                              "d = [ 1, [2, 3], {x = 'y'}, # c\n  ]\n"
                              "e = { f = true, g.h = -31, i = 0x1f }\n"
                              "[t.u]\n"
                              "\"q k\" = 0b101\n"
                              "[t]\n"
                              "v = [\"\\U0001F600\", '']\n";
    char buf[sizeof(doc)];
    int parsed = 0;
    for (size_t n = 0; n < sizeof(doc); n++) {
        ka_err e = {0};
        memcpy(buf, doc, n);
        buf[n] = '\0';
        struct toml_value *root = toml_parse(buf, "t", &e);
        if (root)
            parsed++;
        else
            CHECK(strncmp(e.msg, "t:", 2) == 0);
        toml_free(root);
    }
    CHECK(parsed > 10);
    CHECK(parses_to(doc, "{a=1,b={c=\"s\\xc3\\xa9\\x0a\"},d=[1,[2,3],{x=\"y\"}],e={f=true,g={h=-31},i=31},"
                         "t={u={q k=5},v=[\"\\xf0\\x9f\\x98\\x80\",\"\"]}}"));
}

/* Random documents from TOML-ish characters: no crash, no leak, every error names origin and line. */
TEST(random_documents)
{
    static const char alphabet[] = "ab1_-=.[]{},\"'# \n\t\\uU0xtrue+e:";
    uint64_t state = 0x9e3779b97f4a7c15ull;
    char doc[96];
    int parsed = 0;
    for (int i = 0; i < 30000; i++) {
        size_t len = 0, n;
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        n = (size_t)(state >> 33) % (sizeof(doc) - 1);
        for (len = 0; len < n; len++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            doc[len] = alphabet[(state >> 33) % (sizeof(alphabet) - 1)];
        }
        doc[len] = '\0';
        ka_err e = {0};
        struct toml_value *root = toml_parse(doc, "t", &e);
        if (root)
            parsed++;
        else if (strncmp(e.msg, "t:", 2) != 0)
            CHECK(!"error without origin");
        toml_free(root);
    }
    CHECK(parsed > 0);
}

RUN(parse_valid_documents, parse_invalid_documents, error_names_origin_and_line, get_and_type_names,
    line_numbers_of_keys, nesting_limits, key_part_limits, unterminated_floods, very_long_lines,
    too_many_keys, every_prefix, random_documents)
