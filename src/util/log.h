/* Logging: JSON lines with the upstream kata-agent keys (msg, level, ts, name, source, pid, subsystem, ...).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ka_log_level {
    KA_LOG_TRACE = 0,
    KA_LOG_DEBUG,
    KA_LOG_INFO,
    KA_LOG_WARN,
    KA_LOG_ERROR,
    KA_LOG_CRITICAL,
};

extern int ka_log_level;

static inline bool ka_log_enabled(int level)
{
    return level >= ka_log_level;
}

/* Parse an upstream level name (trace debug info warn warning error critical fatal panic). 0 or -1. */
int ka_log_parse_level(const char *s, int *level);
const char *ka_log_level_name(int level); /* "debug", ... */
/* Where lines go (default stdout). The fd is written with blocking writes of whole lines. */
void ka_log_set_fd(int fd);
/* A sink takes every finished line (the JSON record and its '\n', at most sizeof(ka_logrec.buf) bytes)
 * instead of the fd; NULL restores the fd. The sink must not block. A line logged while the sink runs (by the
 * sink or anything it calls), or by a forked child of the process that set the sink, goes to the fd instead:
 * the sink is never re-entered and never runs on a child's copy of its state. */
typedef void (*ka_log_sink_fn)(const char *line, size_t len, void *arg);
void ka_log_set_sink(ka_log_sink_fn sink, void *arg);
/* Write bytes to the log fd as ka_log_end does without a sink (blocking, whole). */
void ka_log_write_fd(const char *buf, size_t len);
/* Fixed fields. */
void ka_log_set_version(const char *version);

/* A record built field by field; cheap to abandon when the level is filtered. */
struct ka_logrec {
    size_t len;
    bool truncated;
    int pid; /* of the process that began the record */
    char buf[4096];
};
bool ka_log_begin(struct ka_logrec *r, int level, const char *subsystem, const char *msg);
void ka_log_str(struct ka_logrec *r, const char *key, const char *val);
void ka_log_int(struct ka_logrec *r, const char *key, int64_t val);
/* Close the record ("}\n") and hand it to the sink or the fd. */
void ka_log_end(struct ka_logrec *r);
/* Close the record without emitting it: r->buf[0..len) is then the whole line (for a sink's own notices). */
size_t ka_log_finish(struct ka_logrec *r);

/* One-line message with printf formatting. */
void ka_log(int level, const char *subsystem, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(sub, ...) (ka_log_enabled(KA_LOG_DEBUG) ? ka_log(KA_LOG_DEBUG, sub, __VA_ARGS__) : (void)0)
#define log_info(sub, ...)  ka_log(KA_LOG_INFO, sub, __VA_ARGS__)
#define log_warn(sub, ...)  ka_log(KA_LOG_WARN, sub, __VA_ARGS__)
#define log_error(sub, ...) ka_log(KA_LOG_ERROR, sub, __VA_ARGS__)
