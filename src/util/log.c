/* JSON-lines logger. One line per record, written with a single write(2) or handed whole to a sink. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int ka_log_level = KA_LOG_INFO;
static int log_fd = STDOUT_FILENO;
static const char *log_version = "";
static ka_log_sink_fn log_sink;
static void *log_sink_arg;
static int log_sink_pid; /* the process whose memory the sink's state lives in */
static bool log_in_sink;

static const struct {
    const char *name;
    int level;
} level_names[] = {
    {"trace", KA_LOG_TRACE},       {"debug", KA_LOG_DEBUG},    {"info", KA_LOG_INFO},
    {"warn", KA_LOG_WARN},         {"warning", KA_LOG_WARN},   {"error", KA_LOG_ERROR},
    {"critical", KA_LOG_CRITICAL}, {"fatal", KA_LOG_CRITICAL}, {"panic", KA_LOG_CRITICAL},
};
/* Upstream (slog) short level names as they appear in the "level" key. */
static const char *const level_keys[] = {"TRCE", "DEBG", "INFO", "WARN", "ERRO", "CRIT"};

int ka_log_parse_level(const char *s, int *level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i].name) == 0) {
            *level = level_names[i].level;
            return 0;
        }
    }
    return -1;
}

const char *ka_log_level_name(int level)
{
    static const char *const names[] = {"trace", "debug", "info", "warn", "error", "critical"};
    return level >= 0 && level <= KA_LOG_CRITICAL ? names[level] : "?";
}

void ka_log_set_fd(int fd)
{
    log_fd = fd;
}

void ka_log_set_sink(ka_log_sink_fn sink, void *arg)
{
    log_sink = sink;
    log_sink_arg = arg;
    log_sink_pid = sink ? getpid() : 0;
}

void ka_log_set_version(const char *version)
{
    log_version = version;
}

static void put(struct ka_logrec *r, const char *s, size_t n)
{
    /* keep 2 bytes for "}\n" */
    if (r->len + n + 2 > sizeof(r->buf)) {
        r->truncated = true;
        n = sizeof(r->buf) - 2 - r->len;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

static void put_escaped(struct ka_logrec *r, const char *s)
{
    char tmp[8];
    put(r, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const unsigned char c = *p;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            put(r, tmp, 2);
        } else if (c == '\n') {
            put(r, "\\n", 2);
        } else if (c == '\t') {
            put(r, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", c);
            put(r, tmp, 6);
        } else {
            put(r, (const char *)p, 1);
        }
    }
    put(r, "\"", 1);
}

void ka_log_str(struct ka_logrec *r, const char *key, const char *val)
{
    put(r, ",", 1);
    put_escaped(r, key);
    put(r, ":", 1);
    put_escaped(r, val ? val : "");
}

void ka_log_int(struct ka_logrec *r, const char *key, int64_t val)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", (long long)val);
    put(r, ",", 1);
    put_escaped(r, key);
    put(r, ":", 1);
    put(r, num, (size_t)n);
}

bool ka_log_begin(struct ka_logrec *r, int level, const char *subsystem, const char *msg)
{
    if (!ka_log_enabled(level))
        return false;
    r->len = 0;
    r->truncated = false;
    r->pid = getpid();

    struct timespec ts;
    struct tm tm;
    char tbuf[64], zone[8];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(zone, sizeof(zone), "%z", &tm); /* +hhmm -> +hh:mm (RFC 3339) */
    snprintf(tbuf + n, sizeof(tbuf) - n, ".%09ld%.3s:%.2s", ts.tv_nsec, zone, zone + 3);

    put(r, "{\"msg\":", 7);
    put_escaped(r, msg);
    ka_log_str(r, "level", level_keys[level]);
    ka_log_str(r, "ts", tbuf);
    ka_log_str(r, "name", "kata-agent");
    ka_log_str(r, "source", "agent");
    ka_log_int(r, "pid", r->pid);
    ka_log_str(r, "version", log_version);
    ka_log_str(r, "subsystem", subsystem);
    return true;
}

size_t ka_log_finish(struct ka_logrec *r)
{
    r->buf[r->len++] = '}';
    r->buf[r->len++] = '\n';
    return r->len;
}

void ka_log_write_fd(const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(log_fd, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere to report a failing log fd */
        }
        off += (size_t)w;
    }
}

void ka_log_end(struct ka_logrec *r)
{
    ka_log_finish(r);
    if (log_sink && !log_in_sink && r->pid == log_sink_pid) {
        log_in_sink = true;
        log_sink(r->buf, r->len, log_sink_arg);
        log_in_sink = false;
        return;
    }
    ka_log_write_fd(r->buf, r->len);
}

void ka_log(int level, const char *subsystem, const char *fmt, ...)
{
    struct ka_logrec r;
    char msg[2048];
    if (!ka_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ka_log_begin(&r, level, subsystem, msg))
        ka_log_end(&r);
}
