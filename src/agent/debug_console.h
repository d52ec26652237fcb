/* The debug console (agent.debug_console); see debug_console.c. */
#pragma once
#include "../loop/loop.h"
#include "../util/err.h"

struct debug_console;

/* addr: where to listen (vsock://-1:<debug_console_vport>, or a unix socket in tests), one shell per
 * connection; NULL: one shell on the console device (console, normally /dev/console). */
struct debug_console *debug_console_start(struct loop *l, const char *addr, const char *console, ka_err *e);
void debug_console_free(struct debug_console *dc);
