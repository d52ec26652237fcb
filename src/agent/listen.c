/* Opening the configured endpoint: vsock or unix socket listeners, or a virtio-serial port. */
#include "listen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../ttrpc/addr.h"
#include "../ttrpc/serial.h"
#include "../util/log.h"

struct listeners {
    struct ka_addr addr;
    struct ttrpc_serial *serial;
};

struct listeners *listeners_start(struct ttrpc_server *srv, const char *addr, ka_err *e)
{
    struct listeners *l = calloc(1, sizeof(*l));
    if (!l) {
        ka_fail_errno(e, ENOMEM, "listeners");
        return NULL;
    }
    if (ka_addr_parse(addr, &l->addr, e) < 0)
        goto fail;
    switch (l->addr.kind) {
    case KA_ADDR_SERIAL:
        l->serial = ttrpc_serial_start(srv, l->addr.path, e);
        if (!l->serial)
            goto fail;
        break;
    case KA_ADDR_HVSOCK:
        ka_fail(e, KA_INVALID_ARGUMENT,
                "%s: hybrid vsock is dialed by the host; the agent listens on vsock://-1:<port>", addr);
        goto fail;
    default: {
        int fd = ka_addr_listen(&l->addr, e);
        if (fd < 0 || ttrpc_server_listen_fd(srv, fd, e) < 0)
            goto fail;
        break;
    }
    }
    log_info("rpc", "ttrpc server listening on %s", addr);
    return l;
fail:
    ka_wrap(e, "server address %s", addr);
    free(l);
    return NULL;
}

void listeners_free(struct listeners *l)
{
    if (!l)
        return;
    ttrpc_serial_free(l->serial);
    if (l->addr.kind == KA_ADDR_UNIX)
        unlink(l->addr.path);
    free(l);
}
