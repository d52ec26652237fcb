/* Event loop implementation: epoll, a timer min-heap behind one timerfd, a signalfd, a defer queue. */
#include "loop.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../util/cleanup.h"

#define MAX_EVENTS 64

struct loop {
    int epfd;
    bool running;

    /* events of the batch being dispatched; loop_io_del() clears entries of removed objects */
    struct epoll_event events[MAX_EVENTS];
    int n_events, cur_event;

    struct loop_io timer_io;
    struct loop_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timerfd_armed_ns; /* deadline the timerfd is set to, 0 = disarmed */

    struct loop_io signal_io;
    sigset_t sigmask;
    struct {
        loop_signal_cb cb;
        void *data;
    } signals[65];

    struct list defers;
    struct list children;
    uint64_t busy_poll_ns; /* keep polling this long after events before sleeping, 0 = never */
};

uint64_t loop_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- timers ---- */

static void heap_swap(struct loop *l, size_t a, size_t b)
{
    struct loop_timer *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->idx = a;
    l->heap[b]->idx = b;
}

static void heap_up(struct loop *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->when_ns <= l->heap[i]->when_ns)
            break;
        heap_swap(l, p, i);
        i = p;
    }
}

static void heap_down(struct loop *l, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1, m = i;
        if (c < l->heap_len && l->heap[c]->when_ns < l->heap[m]->when_ns)
            m = c;
        if (c + 1 < l->heap_len && l->heap[c + 1]->when_ns < l->heap[m]->when_ns)
            m = c + 1;
        if (m == i)
            break;
        heap_swap(l, i, m);
        i = m;
    }
}

static void timerfd_sync(struct loop *l)
{
    uint64_t want = l->heap_len ? l->heap[0]->when_ns : 0;
    if (want == l->timerfd_armed_ns)
        return;
    struct itimerspec its = {0};
    if (want) {
        its.it_value.tv_sec = (time_t)(want / 1000000000ull);
        its.it_value.tv_nsec = (long)(want % 1000000000ull);
    }
    if (timerfd_settime(l->timer_io.fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        l->timerfd_armed_ns = want;
}

void loop_timer_init(struct loop_timer *t, void (*cb)(struct loop_timer *t))
{
    t->when_ns = 0;
    t->idx = SIZE_MAX;
    t->cb = cb;
}

static void heap_remove(struct loop *l, struct loop_timer *t)
{
    size_t i = t->idx;
    t->idx = SIZE_MAX;
    l->heap_len--;
    if (i != l->heap_len) {
        l->heap[i] = l->heap[l->heap_len];
        l->heap[i]->idx = i;
        heap_up(l, i);
        heap_down(l, l->heap[i]->idx);
    }
}

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ns)
{
    if (loop_timer_armed(t))
        heap_remove(l, t);
    if (l->heap_len == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 16;
        struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));
        if (!h)
            abort(); /* a timer that silently never fires would hang a request forever */
        l->heap = h;
        l->heap_cap = cap;
    }
    t->when_ns = loop_now_ns() + (delay_ns ? delay_ns : 1);
    t->idx = l->heap_len;
    l->heap[l->heap_len++] = t;
    heap_up(l, t->idx);
    timerfd_sync(l);
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
    if (!loop_timer_armed(t))
        return;
    heap_remove(l, t);
    timerfd_sync(l);
}

static void on_timerfd(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    struct loop *l = container_of(io, struct loop, timer_io);
    uint64_t ticks;
    (void)!read(io->fd, &ticks, sizeof(ticks));
    l->timerfd_armed_ns = 0;
    uint64_t now = loop_now_ns();
    while (l->heap_len && l->heap[0]->when_ns <= now) {
        struct loop_timer *t = l->heap[0];
        heap_remove(l, t);
        t->cb(t);
    }
    timerfd_sync(l);
}

/* ---- signals ---- */

static void on_signalfd(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    struct loop *l = container_of(io, struct loop, signal_io);
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo < ARRAY_SIZE(l->signals) && l->signals[si.ssi_signo].cb)
            l->signals[si.ssi_signo].cb(&si, l->signals[si.ssi_signo].data);
    }
}

int loop_signal(struct loop *l, int signo, loop_signal_cb cb, void *data, ka_err *e)
{
    if (signo <= 0 || (size_t)signo >= ARRAY_SIZE(l->signals))
        return ka_fail(e, KA_INVALID_ARGUMENT, "signal %d out of range", signo);
    sigaddset(&l->sigmask, signo);
    if (sigprocmask(SIG_BLOCK, &l->sigmask, NULL) < 0)
        return ka_fail_errno(e, errno, "sigprocmask");
    int fd = signalfd(l->signal_io.fd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "signalfd");
    l->signals[signo].cb = cb;
    l->signals[signo].data = data;
    if (l->signal_io.fd < 0) {
        l->signal_io.fd = fd;
        l->signal_io.events = EPOLLIN;
        l->signal_io.cb = on_signalfd;
        if (loop_io_add(l, &l->signal_io, e) < 0)
            return -1;
    }
    return 0;
}

/* ---- children ---- */

static void on_sigchld(const struct signalfd_siginfo *si, void *data)
{
    (void)si;
    struct loop *l = data;
    for (;;) {
        /* peek first, so a watched child is reaped exactly once, here, with its status */
        siginfo_t info = {0};
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 || info.si_pid == 0)
            break;
        pid_t pid = info.si_pid;
        int status = 0;
        if (waitpid(pid, &status, __WALL) < 0)
            continue;
        struct loop_child *found = NULL;
        list_for_each (pos, &l->children) {
            struct loop_child *c = container_of(pos, struct loop_child, link);
            if (c->pid == pid) {
                found = c;
                break;
            }
        }
        if (found) {
            list_del(&found->link);
            found->exited(found, status);
        }
    }
}

int loop_children_init(struct loop *l, ka_err *e)
{
    return loop_signal(l, SIGCHLD, on_sigchld, l, e);
}

void loop_child_watch(struct loop *l, struct loop_child *c)
{
    list_add_tail(&l->children, &c->link);
}

void loop_child_unwatch(struct loop_child *c)
{
    list_del(&c->link);
}

/* ---- fds ---- */

int loop_io_add(struct loop *l, struct loop_io *io, ka_err *e)
{
    struct epoll_event ev = {.events = io->events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return ka_fail_errno(e, errno, "epoll add fd %d", io->fd);
    return 0;
}

int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
    if (io->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -1;
    io->events = events;
    return 0;
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    for (int i = l->cur_event + 1; i < l->n_events; i++)
        if (l->events[i].data.ptr == io)
            l->events[i].data.ptr = NULL;
}

/* ---- defers ---- */

void loop_defer_init(struct loop_defer *d, void (*cb)(struct loop_defer *d))
{
    list_init(&d->link);
    d->cb = cb;
}

void loop_defer(struct loop *l, struct loop_defer *d)
{
    if (list_empty(&d->link))
        list_add_tail(&l->defers, &d->link);
}

void loop_defer_cancel(struct loop_defer *d)
{
    list_del(&d->link);
}

static void run_defers(struct loop *l)
{
    /* Only what was queued before this pass runs now; new defers wait for the next pass. */
    struct list batch;
    list_init(&batch);
    if (list_empty(&l->defers))
        return;
    batch.next = l->defers.next;
    batch.prev = l->defers.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    list_init(&l->defers);
    while (!list_empty(&batch)) {
        struct loop_defer *d = container_of(batch.next, struct loop_defer, link);
        list_del(&d->link);
        d->cb(d);
    }
}

/* ---- lifecycle ---- */

struct loop *loop_new(ka_err *e)
{
    struct loop *l = calloc(1, sizeof(*l));
    if (!l) {
        ka_fail_errno(e, ENOMEM, "loop");
        return NULL;
    }
    list_init(&l->defers);
    list_init(&l->children);
    sigemptyset(&l->sigmask);
    l->signal_io.fd = -1;
    l->timer_io.fd = -1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        ka_fail_errno(e, errno, "epoll_create1");
        goto fail;
    }
    l->timer_io.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (l->timer_io.fd < 0) {
        ka_fail_errno(e, errno, "timerfd_create");
        goto fail;
    }
    l->timer_io.events = EPOLLIN;
    l->timer_io.cb = on_timerfd;
    if (loop_io_add(l, &l->timer_io, e) < 0)
        goto fail;
    return l;
fail:
    loop_free(l);
    return NULL;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    /* the signals stay blocked: unblocking one that is pending (a SIGTERM during shutdown) would kill the
     * process with the default action instead of letting it finish */
    if (l->signal_io.fd >= 0)
        close(l->signal_io.fd);
    if (l->timer_io.fd >= 0)
        close(l->timer_io.fd);
    if (l->epfd >= 0)
        close(l->epfd);
    free(l->heap);
    free(l);
}

void loop_stop(struct loop *l)
{
    l->running = false;
}

int loop_run_once(struct loop *l, int timeout_ms, ka_err *e)
{
    if (!list_empty(&l->defers))
        timeout_ms = 0;
    int n = epoll_wait(l->epfd, l->events, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        return ka_fail_errno(e, errno, "epoll_wait");
    }
    l->n_events = n;
    for (l->cur_event = 0; l->cur_event < n; l->cur_event++) {
        struct loop_io *io = l->events[l->cur_event].data.ptr;
        if (io)
            io->cb(io, l->events[l->cur_event].events);
    }
    l->n_events = l->cur_event = 0;
    run_defers(l);
    return n;
}

void loop_set_busy_poll(struct loop *l, uint32_t usec)
{
    l->busy_poll_ns = (uint64_t)usec * 1000;
}

int loop_run(struct loop *l, ka_err *e)
{
    uint64_t spin_until = 0; /* while active, poll without sleeping: a request that follows a reply closely
                              * is picked up without the scheduler's wake-up latency */
    l->running = true;
    while (l->running) {
        bool spin = spin_until && loop_now_ns() < spin_until;
        if (spin)
            sched_yield(); /* a runnable peer on this CPU (the client, a container) goes first */
        int n = loop_run_once(l, spin ? 0 : -1, e);
        if (n < 0)
            return -1;
        if (n > 0 && l->busy_poll_ns)
            spin_until = loop_now_ns() + l->busy_poll_ns;
        else if (!spin)
            spin_until = 0;
    }
    return 0;
}
