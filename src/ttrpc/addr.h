/* Endpoint addresses shared by the agent and its clients: parsing, listening and dialing.
 *   vsock://<cid>:<port>   (cid -1 = any when listening)
 *   unix:///path  unix://@abstract
 *   serial:///dev/virtio-ports/agent.channel.0   (one long-lived byte stream)
 *   hvsock:///path/to/vmm.sock:<port>            (clients only: "CONNECT <port>\n" handshake) */
#pragma once
#include <stdint.h>
#include <sys/un.h>

#include "../util/err.h"

enum ka_addr_kind {
    KA_ADDR_VSOCK,
    KA_ADDR_UNIX,
    KA_ADDR_UNIX_ABSTRACT,
    KA_ADDR_SERIAL,
    KA_ADDR_HVSOCK,
};

struct ka_addr {
    enum ka_addr_kind kind;
    uint32_t cid;                                           /* vsock; VMADDR_CID_ANY for -1 */
    uint32_t port;                                          /* vsock, hvsock */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unix (no '@'), serial, hvsock */
};

int ka_addr_parse(const char *s, struct ka_addr *a, ka_err *e);
/* A listening, non-blocking, close-on-exec socket (vsock and unix kinds). */
int ka_addr_listen(const struct ka_addr *a, ka_err *e);
/* Open the serial device (non-blocking, raw mode when it is a tty). */
int ka_addr_open_serial(const char *path, ka_err *e);
/* A connected, blocking stream to the address; hvsock does its handshake within timeout_ms. */
int ka_addr_dial(const struct ka_addr *a, int timeout_ms, ka_err *e);
