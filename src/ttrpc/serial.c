/* virtio-serial listener: open the port, serve it as one connection, serve it again after a hang-up.
 *
 * The port itself stays open for the agent's lifetime; each connection gets a dup of it. Closing the port
 * would lose requests: the guest kernel discards whatever the port holds when it is closed, and whatever
 * arrives while it is closed, so a host that hangs up and connects again at once (its first request already
 * on the way while the agent was still closing the old connection) would wait for an answer forever. The
 * port is opened again only when its path names another device. */
#include "serial.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../util/cleanup.h"
#include "../util/log.h"
#include "addr.h"

#define REOPEN_DELAY_NS (50 * 1000000ull)

struct ttrpc_serial {
    struct ttrpc_server *srv;
    struct loop *loop;
    struct loop_timer reopen;
    bool open;
    bool warned;
    int fd; /* the port, open from the first successful open on; connections get dups */
    char path[PATH_MAX];
};

static void serial_closed(void *arg);

/* Does the path still name the port we hold open? */
static bool same_port(const struct ttrpc_serial *ser)
{
    struct stat held, now;
    return fstat(ser->fd, &held) == 0 && stat(ser->path, &now) == 0 && held.st_rdev == now.st_rdev &&
           held.st_ino == now.st_ino && held.st_dev == now.st_dev;
}

static void serial_open(struct loop_timer *t)
{
    struct ttrpc_serial *ser = container_of(t, struct ttrpc_serial, reopen);
    ka_err e;
    if (ser->fd >= 0 && !same_port(ser)) { /* the path names another device now (a new pty in tests) */
        close(ser->fd);
        ser->fd = -1;
    }
    if (ser->fd < 0)
        ser->fd = ka_addr_open_serial(ser->path, &e);
    int fd = ser->fd < 0 ? -1 : fcntl(ser->fd, F_DUPFD_CLOEXEC, 0);
    if (ser->fd >= 0 && fd < 0)
        ka_fail_errno(&e, errno, "dup serial port %s", ser->path);
    if (fd >= 0 && ttrpc_server_serve_fd(ser->srv, fd, serial_closed, ser, &e) == 0) {
        ser->open = true;
        ser->warned = false;
        log_debug("rpc", "serving ttrpc on serial port %s", ser->path);
        return;
    }
    if (fd >= 0)
        close(fd);
    if (!ser->warned) /* the port may appear later; say so once, keep trying */
        log_warn("rpc", "%s; retrying", e.msg);
    ser->warned = true;
    loop_timer_start(ser->loop, &ser->reopen, REOPEN_DELAY_NS);
}

/* The host hung up (or is not connected yet: a virtio port reports POLLHUP then). */
static void serial_closed(void *arg)
{
    struct ttrpc_serial *ser = arg;
    ser->open = false;
    loop_timer_start(ser->loop, &ser->reopen, REOPEN_DELAY_NS);
}

struct ttrpc_serial *ttrpc_serial_start(struct ttrpc_server *s, const char *path, ka_err *e)
{
    struct ttrpc_serial *ser = calloc(1, sizeof(*ser));
    if (!ser) {
        ka_fail_errno(e, ENOMEM, "serial listener");
        return NULL;
    }
    if (strlen(path) >= sizeof(ser->path)) {
        free(ser);
        ka_fail(e, KA_INVALID_ARGUMENT, "serial path too long");
        return NULL;
    }
    strcpy(ser->path, path);
    ser->fd = -1;
    ser->srv = s;
    ser->loop = ttrpc_server_loop(s);
    loop_timer_init(&ser->reopen, serial_open);
    serial_open(&ser->reopen);
    return ser;
}

void ttrpc_serial_free(struct ttrpc_serial *ser)
{
    if (!ser)
        return;
    loop_timer_stop(ser->loop, &ser->reopen);
    if (ser->fd >= 0)
        close(ser->fd);
    free(ser);
}
