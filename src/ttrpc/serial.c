/* virtio-serial listener: open the port, serve it as one connection, re-open after a hang-up. */
#include "serial.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

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
    char path[PATH_MAX];
};

static void serial_closed(void *arg);

static void serial_open(struct loop_timer *t)
{
    struct ttrpc_serial *ser = container_of(t, struct ttrpc_serial, reopen);
    ka_err e;
    int fd = ka_addr_open_serial(ser->path, &e);
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
    free(ser);
}
