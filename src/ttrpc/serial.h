/* Serving ttrpc over a virtio-serial port: one long-lived byte stream, served again whenever the host
 * side hangs up (or before it ever connects), for VMs without vhost-vsock. */
#pragma once
#include "server.h"

struct ttrpc_serial;

struct ttrpc_serial *ttrpc_serial_start(struct ttrpc_server *s, const char *path, ka_err *e);
void ttrpc_serial_free(struct ttrpc_serial *ser);
