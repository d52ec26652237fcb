/* Process I/O RPCs: ReadStdout/ReadStderr (long-polls that read only when the host asks, so the pipe is the
 * buffer), WriteStdin (long-polls on a full pipe), CloseStdin and TtyWinResize. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "rpc.h"
#include "../runtime/container.h"
#include "../util/cleanup.h"

#define MAX_READ (1024 * 1024) /* one reply stays far below the 4 MiB frame */

struct io_call {
    struct stream_waiter w;
    struct ttrpc_call *call;
    struct stream *s;
    size_t len; /* read: bytes wanted; write: bytes to write */
    size_t off; /* write: bytes written */
    const uint8_t *data;
    int (*attempt)(struct io_call *io); /* try_read or try_write: 1 answered, 0 not ready yet */
};

static void io_cancel(struct ttrpc_call *c)
{
    struct io_call *io = c->data;
    stream_unwait(io->s, &io->w);
    free(io);
}

static void io_gone(struct stream_waiter *w, int err)
{
    struct io_call *io = container_of(w, struct io_call, w);
    struct ttrpc_call *c = io->call;
    free(io);
    if (err == EPIPE)
        ttrpc_reply_status(c, KA_INTERNAL, "Cannot get writer: stdin was closed");
    else
        ttrpc_reply_status(c, KA_INTERNAL, "eof: the process was removed");
}

static void io_ready(struct stream_waiter *w)
{
    struct io_call *io = container_of(w, struct io_call, w);
    struct stream *s = io->s;
    if (!io->attempt(io)) {
        stream_rearm(s);
        return;
    }
    stream_unwait(s, &io->w);
    free(io);
}

/* Try now when nobody is queued before us; otherwise (or when the fd is not ready) queue io on its stream
 * and answer from io_ready()/io_gone(). */
static void io_start(struct io_call *io)
{
    if (list_empty(&io->s->waiters) && io->attempt(io)) {
        free(io);
        return;
    }
    io->w.ready = io_ready;
    io->w.gone = io_gone;
    io->call->data = io;
    io->call->cancel = io_cancel;
    stream_wait(io->s, &io->w);
}

/* ---- reads ---- */

/* 1: answered, 0: nothing to read yet. EOF is an error status, as upstream: the shim treats any error as
 * end of stream, and only after everything written before the process exited was read. */
static int try_read(struct io_call *io)
{
    size_t want = io->len < MAX_READ ? io->len : MAX_READ;
    cleanup_free uint8_t *buf = malloc(want);
    if (!buf) {
        ttrpc_reply_status(io->call, KA_RESOURCE_EXHAUSTED, "out of memory");
        return 1;
    }
    ssize_t n = read(io->s->fd, buf, want);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n > 0) {
        Grpc__ReadStreamResponse resp = GRPC__READ_STREAM_RESPONSE__INIT;
        resp.data.data = buf;
        resp.data.len = (size_t)n;
        ttrpc_reply(io->call, &resp.base);
    } else if (n == 0 || errno == EIO) { /* EIO: a pty whose last slave closed */
        ttrpc_reply_status(io->call, KA_INTERNAL, "read meet eof");
    } else {
        ttrpc_reply_status(io->call, KA_INTERNAL, "read: %s", strerror(errno));
    }
    return 1;
}

static void read_stream(struct ttrpc_call *c, const Grpc__ReadStreamRequest *r, bool err_stream)
{
    struct process *p = rpc_find_process(c, r->container_id, r->exec_id, KA_INTERNAL);
    if (!p)
        return;
    if (r->len == 0) {
        ttrpc_reply_status(c, KA_INVALID_ARGUMENT, "len must be greater than 0");
        return;
    }
    struct stream *s = process_read_stream(p, err_stream);
    if (s->fd < 0) {
        ttrpc_reply_status(c, KA_INTERNAL, "eof");
        return;
    }
    struct io_call *io = calloc(1, sizeof(*io));
    if (!io) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    io->call = c;
    io->s = s;
    io->len = r->len;
    io->attempt = try_read;
    io_start(io);
}

void rpc_read_stdout(struct ttrpc_call *c, void *req)
{
    read_stream(c, req, false);
}

void rpc_read_stderr(struct ttrpc_call *c, void *req)
{
    read_stream(c, req, true);
}

/* ---- writes ---- */

static void reply_written(struct ttrpc_call *c, size_t n)
{
    Grpc__WriteStreamResponse resp = GRPC__WRITE_STREAM_RESPONSE__INIT;
    resp.len = (uint32_t)n;
    ttrpc_reply(c, &resp.base);
}

/* 1: answered, 0: the pipe is full. Everything is written before answering, as upstream. */
static int try_write(struct io_call *io)
{
    while (io->off < io->len) {
        ssize_t n = write(io->s->fd, io->data + io->off, io->len - io->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0) {
            ttrpc_reply_status(io->call, KA_INTERNAL, "write stdin: %s", strerror(errno));
            return 1;
        }
        io->off += (size_t)n;
    }
    reply_written(io->call, io->len);
    return 1;
}

void rpc_write_stdin(struct ttrpc_call *c, void *req)
{
    const Grpc__WriteStreamRequest *r = req;
    struct process *p = rpc_find_process(c, r->container_id, r->exec_id, KA_INTERNAL);
    if (!p)
        return;
    if (p->stdin_closed || p->in.fd < 0) {
        ttrpc_reply_status(c, KA_INTERNAL, "Cannot get writer: stdin was closed");
        return;
    }
    if (r->data.len == 0) {
        reply_written(c, 0);
        return;
    }
    struct io_call *io = calloc(1, sizeof(*io));
    if (!io) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    io->call = c;
    io->s = &p->in;
    io->data = r->data.data; /* owned by the call's request */
    io->len = r->data.len;
    io->attempt = try_write;
    io_start(io);
}

/* ---- CloseStdin, TtyWinResize ---- */

void rpc_close_stdin(struct ttrpc_call *c, void *req)
{
    const Grpc__CloseStdinRequest *r = req;
    struct process *p = rpc_find_process(c, r->container_id, r->exec_id, KA_INVALID_ARGUMENT);
    if (!p)
        return;
    if (p->tty) {
        /* the terminal stays (output must still be read): send it end-of-file and accept no more input */
        if (!p->stdin_closed && p->in.fd >= 0) {
            struct termios t;
            char eof = tcgetattr(p->in.fd, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
            (void)!write(p->in.fd, &eof, 1);
        }
        p->stdin_closed = true;
        stream_close(&p->in, EPIPE);
    } else {
        stream_close(&p->in, EPIPE); /* the process reads end-of-file */
    }
    p->stdin_closed = true;
    ttrpc_reply(c, NULL);
}

void rpc_tty_win_resize(struct ttrpc_call *c, void *req)
{
    const Grpc__TtyWinResizeRequest *r = req;
    struct process *p = rpc_find_process(c, r->container_id, r->exec_id, KA_UNAVAILABLE);
    if (!p)
        return;
    if (!p->tty || p->out.fd < 0) {
        ttrpc_reply_status(c, KA_UNAVAILABLE, "no tty");
        return;
    }
    struct winsize ws = {.ws_row = (unsigned short)r->row, .ws_col = (unsigned short)r->column};
    if (ioctl(p->out.fd, TIOCSWINSZ, &ws) < 0) {
        ttrpc_reply_status(c, KA_INTERNAL, "ioctl error: %s", strerror(errno));
        return;
    }
    ttrpc_reply(c, NULL);
}
