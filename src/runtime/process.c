/* Process objects, their exit waiters and the stdio stream waiter queues. */
#include "process.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/cleanup.h"

static void on_stream_io(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    struct stream *s = container_of(io, struct stream, io);
    /* one waiter at a time, oldest first; it tries its I/O and calls stream_rearm if it must wait again */
    if (list_empty(&s->waiters)) {
        stream_rearm(s);
        return;
    }
    struct stream_waiter *w = container_of(s->waiters.next, struct stream_waiter, link);
    w->ready(w);
}

void stream_init(struct stream *s, struct loop *l, int fd, uint32_t want)
{
    s->fd = fd;
    s->loop = l;
    s->want = want;
    s->watching = false;
    s->io.fd = fd;
    s->io.events = want;
    s->io.cb = on_stream_io;
    list_init(&s->waiters);
}

static void stream_watch(struct stream *s, bool on)
{
    if (on == s->watching || s->fd < 0)
        return;
    if (on) {
        ka_err e;
        s->io.fd = s->fd;
        s->io.events = s->want;
        if (loop_io_add(s->loop, &s->io, &e) < 0)
            return;
    } else {
        loop_io_del(s->loop, &s->io);
    }
    s->watching = on;
}

void stream_rearm(struct stream *s)
{
    stream_watch(s, !list_empty(&s->waiters));
}

void stream_wait(struct stream *s, struct stream_waiter *w)
{
    list_add_tail(&s->waiters, &w->link);
    stream_watch(s, true);
}

void stream_unwait(struct stream *s, struct stream_waiter *w)
{
    list_del(&w->link);
    stream_rearm(s);
}

void stream_close(struct stream *s, int err)
{
    stream_watch(s, false);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    while (!list_empty(&s->waiters)) {
        struct stream_waiter *w = container_of(s->waiters.next, struct stream_waiter, link);
        list_del(&w->link);
        w->gone(w, err);
    }
}

struct stream *process_read_stream(struct process *p, bool stderr_stream)
{
    return p->tty || !stderr_stream ? &p->out : &p->err;
}

void process_wait_exit(struct process *p, struct exit_waiter *w)
{
    list_add_tail(&p->exit_waiters, &w->link);
    if (p->exited) {
        list_del(&w->link);
        list_init(&w->link);
        w->exited(w, p->exit_code);
    }
}

void process_unwait_exit(struct exit_waiter *w)
{
    list_del(&w->link);
}

void process_mark_exited(struct process *p, int status)
{
    p->exited = true;
    p->exit_code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
    if (p->pidfd >= 0) {
        close(p->pidfd);
        p->pidfd = -1;
    }
    while (!list_empty(&p->exit_waiters)) {
        struct exit_waiter *w = container_of(p->exit_waiters.next, struct exit_waiter, link);
        list_del(&w->link);
        list_init(&w->link);
        w->exited(w, p->exit_code);
    }
}

void process_free(struct process *p)
{
    if (!p)
        return;
    loop_defer_cancel(&p->forget);
    stream_close(&p->in, EBADF);
    stream_close(&p->out, EBADF);
    stream_close(&p->err, EBADF);
    if (!p->exited) {
        /* still running: the loop keeps reaping it, as an unknown child */
        loop_child_unwatch(&p->child);
        if (p->pidfd >= 0)
            close(p->pidfd);
    }
    while (!list_empty(&p->exit_waiters)) {
        struct exit_waiter *w = container_of(p->exit_waiters.next, struct exit_waiter, link);
        list_del(&w->link);
        list_init(&w->link);
        w->exited(w, -1);
    }
    free(p->exec_id);
    free(p);
}
