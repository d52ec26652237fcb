/* The agent's event loop: one thread, epoll over fds, one timerfd for a heap of timers, one signalfd,
 * and deferred callbacks that run after the current batch of events.
 *
 * Objects embed the loop structures and get them back with container_of() in the callback. A callback may
 * remove or free any watched object, including ones whose events are still pending in the same batch. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/types.h>

#include "../util/err.h"
#include "../util/list.h"

struct loop;

struct loop_io {
    int fd;
    uint32_t events; /* EPOLLIN | EPOLLOUT | ... as registered */
    void (*cb)(struct loop_io *io, uint32_t revents);
};

struct loop_timer {
    uint64_t when_ns; /* CLOCK_MONOTONIC deadline */
    size_t idx;       /* position in the heap, SIZE_MAX when not armed */
    void (*cb)(struct loop_timer *t);
};

struct loop_defer {
    struct list link;
    void (*cb)(struct loop_defer *d);
};

/* A child process whose exit the loop reports. The loop owns SIGCHLD: it reaps every child, reporting
 * watched ones through exited() (with the wait status) and discarding the rest (orphans it inherited as PID 1
 * or subreaper, intermediate processes). */
struct loop_child {
    pid_t pid;
    struct list link;
    void (*exited)(struct loop_child *c, int status);
};

typedef void (*loop_signal_cb)(const struct signalfd_siginfo *si, void *data);

struct loop *loop_new(ka_err *e);
void loop_free(struct loop *l);
/* Run until loop_stop(); returns 0, or -1 with e set on an epoll failure. */
int loop_run(struct loop *l, ka_err *e);
void loop_stop(struct loop *l);
/* After a round with events, loop_run polls for up to usec more before sleeping (0, the default, = never):
 * a request arriving in that window skips the wake-up latency, at the price of that much CPU per burst. */
void loop_set_busy_poll(struct loop *l, uint32_t usec);
/* One round: wait up to timeout_ms (-1 = forever) for events, dispatch them and the defers.
 * Returns the number of fd events, or -1 with e set. */
int loop_run_once(struct loop *l, int timeout_ms, ka_err *e);
uint64_t loop_now_ns(void);

int loop_io_add(struct loop *l, struct loop_io *io, ka_err *e);
int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events);
void loop_io_del(struct loop *l, struct loop_io *io);

void loop_timer_init(struct loop_timer *t, void (*cb)(struct loop_timer *t));
void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ns);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
    return t->idx != SIZE_MAX;
}

void loop_defer_init(struct loop_defer *d, void (*cb)(struct loop_defer *d));
/* Queue d to run once after the current batch of events (no-op if already queued). */
void loop_defer(struct loop *l, struct loop_defer *d);
void loop_defer_cancel(struct loop_defer *d);
static inline bool loop_defer_pending(const struct loop_defer *d)
{
    return !list_empty(&d->link);
}

/* Take over SIGCHLD and start reaping (call once). */
int loop_children_init(struct loop *l, ka_err *e);
/* Report c->pid's exit to c->exited. Watch a child before anything can reap it: right after fork/clone,
 * before returning to the loop. */
void loop_child_watch(struct loop *l, struct loop_child *c);
void loop_child_unwatch(struct loop_child *c);

/* Block signo and deliver it through the loop's signalfd. One handler per signal. */
int loop_signal(struct loop *l, int signo, loop_signal_cb cb, void *data, ka_err *e);
