/* OCI hooks: each hook is run as a child process with the OCI state JSON on stdin, its args and env, and a
 * timeout (Timeout > 0 seconds, else 10 s as upstream) after which it is killed. Hooks run in order; the
 * agent-side runner is asynchronous (the event loop watches each hook's exit and timer), the child-side one
 * (startContainer hooks, inside the container) is synchronous. Guest hooks come from the sandbox's
 * guest_hook_path: <path>/{prestart,poststart,poststop}/<executable>, run with args [name, type]. */
#pragma once
#include <stddef.h>
#include <sys/types.h>

#include "oci.pb-c.h"
#include "../loop/loop.h"
#include "../util/err.h"

/* OCI state JSON: {"ociVersion","id","status","pid","bundle","annotations"}. malloc'd. */
char *hooks_state_json(const char *oci_version, const char *id, const char *status, pid_t pid,
                       const char *bundle, Grpc__Spec__AnnotationsEntry *const *annotations,
                       size_t n_annotations);

struct hook_list {
    size_t n;
    Grpc__Hook **hooks; /* borrowed or owned, see hooks_scan_guest */
};

struct hooks_run;
/* Run the hooks one after the other. done() is called exactly once, from the loop, with NULL when all
 * succeeded or the first failure ("hook <path>: exit status 3" / "... killed after 10 s timeout" /
 * "... not found"); the caller decides whether failure matters (OCI: prestart/createRuntime/... fail the
 * operation, poststart/poststop only warn). state_json is copied. Returns NULL only if nothing could start
 * (then done is not called) — an empty list still calls done (deferred). */
struct hooks_run *hooks_run_async(struct loop *l, const struct hook_list *list, const char *state_json,
                                  void (*done)(void *arg, const ka_err *err), void *arg, ka_err *e);
/* Kill a running hook and forget the run; done is not called. */
void hooks_run_cancel(struct hooks_run *r);
/* Synchronous variant for the container child (fork, write state, waitpid with timeout). */
int hooks_run_sync(const struct hook_list *list, const char *state_json, ka_err *e);
/* Scan <dir>/<type> (type "prestart", "poststart", "poststop") for regular, non-symlink executables, sorted
 * by name. A missing directory gives an empty list. Free with hooks_list_free. */
int hooks_scan_guest(const char *dir, const char *type, struct hook_list *out, ka_err *e);
void hooks_list_free(struct hook_list *l);
