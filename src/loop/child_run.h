/* Helper programs run as child processes (modprobe, iptables-save/restore, resize2fs/xfs_growfs, OCI hooks):
 * fork + exec in a process group of its own with a clean signal state, stdin fed from memory without
 * blocking (or /dev/null), stdout and stderr read without blocking into bounded tails (or stdout kept whole,
 * up to a bound), a timeout that kills the process group, and one callback once the loop has reaped the
 * child, with the outputs still readable in the struct.
 *
 * The lower half (child_spawn, child_feed, child_read, child_kill, child_collect) needs no loop: the hooks'
 * synchronous runner drives it with poll() inside the container child. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"
#include "../util/buf.h"
#include "../util/err.h"

#define CHILD_TAIL_MAX       4096 /* the largest tail an output keeps */
#define CHILD_READS_PER_WAKE 16   /* reads per wake-up, so that a chatty child cannot starve the loop */

/* One output pipe of the child. */
struct child_out {
    struct loop_io io; /* the read end, fd -1 when closed */
    size_t cap;        /* the last cap bytes are kept in tail */
    size_t max;        /* not 0: everything is kept in all instead, up to max bytes (more: overflow) */
    size_t len;        /* bytes in tail */
    size_t total;      /* bytes read: more than len when the start of the output was dropped */
    bool overflow;
    struct kbuf all;
    char tail[CHILD_TAIL_MAX];
};

struct child_spec {
    const char *path;      /* the program; NULL: argv[0] */
    char *const *argv;     /* argv and envp are read only until the child is spawned */
    char *const *envp;     /* NULL: the agent's environment */
    const void *in;        /* stdin, borrowed until the end, closed once written; NULL: /dev/null */
    size_t in_len;         /*   (a child that stops reading just gets EPIPE on the rest) */
    size_t out_tail;       /* bytes of stdout kept (at most CHILD_TAIL_MAX) */
    size_t out_max;        /* not 0: stdout kept whole instead, up to out_max bytes; more kills the child */
    size_t err_tail;       /* bytes of stderr kept */
    bool merge_err;        /* stderr goes to the stdout pipe */
    bool quiet_exec_error; /* a failed execve shows only in exec_errno, not also as "exec <path>: <error>"
                            * on stderr; the exit status is 127 either way */
    uint64_t timeout_ns;   /* child_run_start: 0 = none, else the process group is killed then */
};

struct child_run {
    pid_t pid;
    bool running;      /* spawned, and neither reaped nor given up by child_run_cancel */
    bool timed_out;    /* killed by the timeout (the synchronous hooks runner sets it too) */
    int exec_errno;    /* after child_collect: why execve failed (or the fd setup before it), else 0 */
    struct loop_io in; /* stdin's write end, fd -1 when closed */
    const uint8_t *in_data;
    size_t in_len, in_off; /* in_off: bytes written */
    int exec_fd;           /* reports a failed execve */
    struct child_out out, err;
    /* used by child_run_start only */
    struct loop *l;
    struct loop_child child;
    struct loop_timer timer;
    void (*done)(struct child_run *r, int status);
};

/* Once, before anything else (child_run_cancel is then always safe). */
void child_run_init(struct child_run *r);

/* Run the program; the struct may be reused for another one once the previous has ended. done(r, wait
 * status) is called from the loop once the child is reaped, after a last bounded read of its outputs and
 * with every fd closed; out/err tails, out.all, timed_out and exec_errno stay readable until the next start
 * or child_run_cancel. done may free r or start the next program. -1 with e set ("pipe: ...", "fork
 * <path>: ...") when nothing runs (done is not called). */
int child_run_start(struct loop *l, struct child_run *r, const struct child_spec *s,
                    void (*done)(struct child_run *r, int status), ka_err *e);
/* Kill a running child (its process group; the loop still reaps it), stop everything, free out.all and
 * err.all; done is not called. Safe at any time after child_run_init, also after done and twice. */
void child_run_cancel(struct child_run *r);

/* ---- the lower half, without the loop ---- */

/* In a forked child: default dispositions and an empty signal mask (the loop blocks signals for its
 * signalfd), and every fd from first on closed. */
void child_reset_signals(void);
void child_close_from(unsigned first);

/* Fork and exec as described by s; the parent's ends of the pipes are non-blocking. */
int child_spawn(struct child_run *r, const struct child_spec *s, ka_err *e);
/* Write stdin; true when finished (all written, or the child does not read), and it can be closed. */
bool child_feed(struct child_run *r);
/* Read at most max_reads chunks (0: until EAGAIN) into o; true at EOF, error or overflow. */
bool child_read(struct child_out *o, int max_reads);
/* SIGKILL the child's process group and the child (in case it has not reached setpgid yet). */
void child_kill(struct child_run *r);
/* Close io (the loop stops watching it first, if r belongs to one). */
void child_close_io(struct child_run *r, struct loop_io *io);
/* After the exit: close stdin, read what the child left in its pipes (bounded: a grandchild keeping them
 * open is not waited for), set exec_errno, close everything. */
void child_collect(struct child_run *r);
