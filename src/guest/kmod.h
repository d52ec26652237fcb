/* Loading kernel modules for CreateSandbox (KernelModule{name, parameters}): "modprobe -v <name> <params...>"
 * run as child processes watched by the event loop, one after the other. A missing modprobe or module is a
 * clear error carrying modprobe's stderr. */
#pragma once
#include <stddef.h>

#include "agent.pb-c.h"
#include "../loop/loop.h"
#include "../util/err.h"

struct kmod_load;
/* done(arg, NULL | err) is called exactly once from the loop (also for n == 0). modprobe is the binary to
 * run ("/sbin/modprobe" by default; tests point it elsewhere). NULL if nothing could start (done not called).
 */
struct kmod_load *kmod_load_async(struct loop *l, const char *modprobe, Grpc__KernelModule *const *mods,
                                  size_t n, void (*done)(void *arg, const ka_err *err), void *arg, ka_err *e);
void kmod_load_cancel(struct kmod_load *k);
