/* A process of a container (its init or an exec'd process): identity, exit status, and its stdio streams
 * as the agent holds them (pipe ends or a pty master). Reads and writes are long-polls: a caller queues a
 * waiter on a stream and is called back when the fd is ready, so nothing is read before the host asks
 * (the pipe itself is the buffer) and nothing blocks the loop. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../loop/loop.h"
#include "../util/list.h"

struct container;
struct process;
struct spawn_state;

/* Someone waiting for a stream to become readable/writable, or to go away. */
struct stream_waiter {
    struct list link;
    void (*ready)(struct stream_waiter *w);         /* the fd is ready: try the I/O now */
    void (*gone)(struct stream_waiter *w, int err); /* the stream was closed under the waiter */
};

struct stream {
    int fd; /* -1 when absent or closed */
    struct loop_io io;
    struct loop *loop;
    uint32_t want; /* EPOLLIN or EPOLLOUT */
    bool watching;
    struct list waiters;
};

/* Someone waiting for the process to exit. */
struct exit_waiter {
    struct list link;
    void (*exited)(struct exit_waiter *w, int code);
};

struct process {
    struct list link; /* in container->procs */
    struct container *c;
    char *exec_id;
    bool init;
    pid_t pid;
    int pidfd;
    struct loop_child child;
    bool exited;
    int exit_code; /* WEXITSTATUS, or the signal number of a killed process (as upstream) */
    struct list exit_waiters;
    struct spawn_state *spawn; /* while the parent still talks to the child (spawn.c) */
    struct loop_defer forget;  /* drop the process after its wait was answered */

    bool tty;
    bool stdin_closed;
    struct stream in;  /* pipe write end, or a dup of the pty master */
    struct stream out; /* pipe read end, or the pty master */
    struct stream err; /* pipe read end; unused with a tty (ReadStderr reads the master) */
};

void stream_init(struct stream *s, struct loop *l, int fd, uint32_t want);
/* Queue w; it is called back (ready) once the fd is ready, in FIFO order with other waiters. */
void stream_wait(struct stream *s, struct stream_waiter *w);
/* Remove a waiter (cancelled call). */
void stream_unwait(struct stream *s, struct stream_waiter *w);
/* Re-arm after a waiter found EAGAIN, or move on to the next waiter. */
void stream_rearm(struct stream *s);
/* Close the fd; every waiter gets gone(err). */
void stream_close(struct stream *s, int err);

/* Exit notification: called immediately (deferred) if already exited. */
void process_wait_exit(struct process *p, struct exit_waiter *w);
void process_unwait_exit(struct exit_waiter *w);
/* Record the exit (from the loop's child callback) and wake every exit waiter. */
void process_mark_exited(struct process *p, int status);
/* Close every stream (waiters get gone) and free; the caller unlinks it from its container first. */
void process_free(struct process *p);
/* The stream ReadStdout/ReadStderr use (a tty has one stream for both). */
struct stream *process_read_stream(struct process *p, bool stderr_stream);
