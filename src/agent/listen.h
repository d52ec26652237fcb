/* The agent's listeners: the server_addr endpoint as a listening socket or a virtio-serial port. */
#pragma once
#include "../ttrpc/server.h"

struct listeners;

/* Start serving on addr (vsock://, unix://, serial://). NULL with e set on failure. */
struct listeners *listeners_start(struct ttrpc_server *srv, const char *addr, ka_err *e);
/* Stop and release (removes a unix socket file the agent created). Call after the server is freed. */
void listeners_free(struct listeners *l);
