/* agent.log_vport: the agent's log lines go to the host's log reader on a vsock port instead of stdout,
 * without ever blocking the event loop (bounded buffer, oldest lines dropped and counted). */
#pragma once
#include <stdint.h>

#include "../loop/loop.h"

struct log_vport;

/* As soon as the configuration is known: from now on log lines are kept in memory (up to 1 MiB) for the
 * reader that will connect to addr (NULL: vsock://-1:<port>). NULL (logged, logs stay on stdout) on ENOMEM.
 */
struct log_vport *log_vport_new(int32_t port, const char *addr);
/* Once the loop exists: listen and serve readers from the loop (one at a time; a later one gets what is
 * buffered). A failure to listen is logged as a warning on stdout, where the buffered lines and all later
 * ones then go; the agent carries on. */
void log_vport_listen(struct log_vport *lv, struct loop *l);
/* Give the reader what is buffered (for up to 500 ms), write what it did not take to stdout, close, and
 * restore logging to stdout. Call before the loop is freed. NULL is a no-op. */
void log_vport_free(struct log_vport *lv);
