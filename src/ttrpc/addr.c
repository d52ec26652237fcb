/* Address parsing, listening sockets and client dialing for vsock, unix, serial and hybrid vsock. */
#include "addr.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "../util/cleanup.h"

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    if (!*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* "<a>:<port>" split at the last ':' */
static int split_port(const char *s, char *head, size_t headsz, uint32_t *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= headsz)
        return -1;
    memcpy(head, s, (size_t)(colon - s));
    head[colon - s] = '\0';
    return parse_u32(colon + 1, port);
}

int ka_addr_parse(const char *s, struct ka_addr *a, ka_err *e)
{
    memset(a, 0, sizeof(*a));
    if (strncmp(s, "vsock://", 8) == 0) {
        char cid[32];
        a->kind = KA_ADDR_VSOCK;
        if (split_port(s + 8, cid, sizeof(cid), &a->port) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid vsock address %s: want vsock://<cid>:<port>", s);
        if (strcmp(cid, "-1") == 0 || cid[0] == '\0')
            a->cid = VMADDR_CID_ANY;
        else if (parse_u32(cid, &a->cid) < 0)
            return ka_fail(e, KA_INVALID_ARGUMENT, "invalid vsock CID '%s' in %s", cid, s);
        return 0;
    }
    if (strncmp(s, "hvsock://", 9) == 0) {
        a->kind = KA_ADDR_HVSOCK;
        if (split_port(s + 9, a->path, sizeof(a->path), &a->port) < 0 || !a->path[0])
            return ka_fail(e, KA_INVALID_ARGUMENT,
                           "invalid hybrid vsock address %s: want hvsock://<path>:<port>", s);
        return 0;
    }
    const char *rest;
    if (strncmp(s, "unix://", 7) == 0) {
        rest = s + 7;
        a->kind = KA_ADDR_UNIX;
        if (rest[0] == '@') {
            a->kind = KA_ADDR_UNIX_ABSTRACT;
            rest++;
        }
    } else if (strncmp(s, "serial://", 9) == 0) {
        rest = s + 9;
        a->kind = KA_ADDR_SERIAL;
    } else {
        return ka_fail(e, KA_INVALID_ARGUMENT,
                       "scheme of '%s' is not supported (use vsock://, unix://, serial:// or hvsock://)", s);
    }
    if (!*rest)
        return ka_fail(e, KA_INVALID_ARGUMENT, "address %s has an empty path", s);
    if (strlen(rest) >= sizeof(a->path))
        return ka_fail(e, KA_INVALID_ARGUMENT, "path of %s is longer than %zu bytes", s, sizeof(a->path) - 1);
    strcpy(a->path, rest);
    return 0;
}

static socklen_t unix_sockaddr(const struct ka_addr *a, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    size_t n = strlen(a->path);
    if (a->kind == KA_ADDR_UNIX_ABSTRACT) {
        memcpy(sun->sun_path + 1, a->path, n < sizeof(sun->sun_path) - 1 ? n : sizeof(sun->sun_path) - 1);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    }
    memcpy(sun->sun_path, a->path, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

int ka_addr_listen(const struct ka_addr *a, ka_err *e)
{
    cleanup_close int fd = -1;
    if (a->kind == KA_ADDR_VSOCK) {
        struct sockaddr_vm svm = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = a->port};
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return ka_fail_errno(e, errno, "vsock socket (is the vsock transport loaded?)");
        if (bind(fd, (struct sockaddr *)&svm, sizeof(svm)) < 0)
            return ka_fail_errno(e, errno, "bind vsock port %u", a->port);
    } else if (a->kind == KA_ADDR_UNIX || a->kind == KA_ADDR_UNIX_ABSTRACT) {
        struct sockaddr_un sun;
        socklen_t len = unix_sockaddr(a, &sun);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return ka_fail_errno(e, errno, "unix socket");
        if (bind(fd, (struct sockaddr *)&sun, len) < 0)
            return ka_fail_errno(e, errno, "bind unix socket %s%s",
                                 a->kind == KA_ADDR_UNIX_ABSTRACT ? "@" : "", a->path);
    } else {
        return ka_fail(e, KA_INVALID_ARGUMENT, "cannot listen on this kind of address");
    }
    if (listen(fd, 128) < 0)
        return ka_fail_errno(e, errno, "listen");
    return steal_fd(fd);
}

int ka_addr_open_serial(const char *path, ka_err *e)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open serial port %s", path);
    struct termios t;
    if (isatty(fd) && tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
    return fd;
}

static int read_line(int fd, char *buf, size_t size, int timeout_ms)
{
    size_t n = 0;
    while (n + 1 < size) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        ssize_t got = read(fd, buf + n, 1); /* one byte at a time: nothing after '\n' may be consumed */
        if (got <= 0) {
            if (got < 0 && errno == EINTR)
                continue;
            errno = got == 0 ? ECONNRESET : errno;
            return -1;
        }
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
    return 0;
}

int ka_addr_dial(const struct ka_addr *a, int timeout_ms, ka_err *e)
{
    cleanup_close int fd = -1;
    switch (a->kind) {
    case KA_ADDR_VSOCK: {
        struct sockaddr_vm svm = {.svm_family = AF_VSOCK, .svm_cid = a->cid, .svm_port = a->port};
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return ka_fail_errno(e, errno, "vsock socket");
        if (connect(fd, (struct sockaddr *)&svm, sizeof(svm)) < 0)
            return ka_fail_errno(e, errno, "connect to vsock %u:%u", a->cid, a->port);
        break;
    }
    case KA_ADDR_UNIX:
    case KA_ADDR_UNIX_ABSTRACT:
    case KA_ADDR_HVSOCK: {
        struct ka_addr u = *a;
        if (u.kind == KA_ADDR_HVSOCK)
            u.kind = KA_ADDR_UNIX;
        struct sockaddr_un sun;
        socklen_t len = unix_sockaddr(&u, &sun);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return ka_fail_errno(e, errno, "unix socket");
        if (connect(fd, (struct sockaddr *)&sun, len) < 0)
            return ka_fail_errno(e, errno, "connect to %s%s", a->kind == KA_ADDR_UNIX_ABSTRACT ? "@" : "",
                                 a->path);
        if (a->kind == KA_ADDR_HVSOCK) {
            char line[128];
            int n = snprintf(line, sizeof(line), "CONNECT %u\n", a->port);
            if (write(fd, line, (size_t)n) != n)
                return ka_fail_errno(e, errno, "hybrid vsock handshake to %s", a->path);
            if (read_line(fd, line, sizeof(line), timeout_ms) < 0)
                return ka_fail_errno(e, errno, "hybrid vsock handshake reply from %s", a->path);
            if (!strstr(line, "OK"))
                return ka_fail(e, KA_UNAVAILABLE, "hybrid vsock handshake to %s port %u refused: '%s'",
                               a->path, a->port, line);
        }
        break;
    }
    case KA_ADDR_SERIAL: {
        fd = ka_addr_open_serial(a->path, e);
        if (fd < 0)
            return -1;
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        break;
    }
    }
    return steal_fd(fd);
}
