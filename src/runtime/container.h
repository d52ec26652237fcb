/* Containers: creation (bundle, namespaces, cgroup, stdio, the parked init process), start, exec, signals,
 * waits, and removal that releases exactly what the container acquired. Long operations are asynchronous:
 * they return at once and call done(arg, err) from the event loop. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "agent.pb-c.h"
#include "creds.h"
#include "process.h"
#include "sandbox.h"
#include "seccomp.h"

enum container_status {
    CTR_CREATING,
    CTR_CREATED,
    CTR_RUNNING,
    CTR_PAUSED,
    CTR_STOPPED,
    CTR_REMOVING,
};

struct ctr_op;
struct ctr_freeze;
struct oom_watch;

struct container {
    struct list link; /* in sandbox->containers */
    struct sandbox *sb;
    char *id;
    Grpc__Spec *spec; /* owned copy */
    char *bundle;     /* <base>/<id> */
    char *rootfs;     /* <bundle>/rootfs, a bind of spec->Root.Path */
    bool rootfs_mounted;
    struct cgroup *cg;
    struct process *init;
    struct list procs;
    enum container_status status;
    struct storage_refs refs;
    struct seccomp_prog *seccomp;
    struct hook_list hooks_create_container, hooks_start_container, hooks_prestart, hooks_poststart,
        hooks_poststop;          /* spec hooks + guest hooks, borrowed pointers */
    char *state_json;            /* for the hooks run inside the container */
    struct ctr_op *op;           /* the asynchronous operation in progress, if any */
    struct ctr_freeze *freezing; /* a pause, resume or whole-container signal in progress, if any */
    struct oom_watch *oom;       /* OOM kill watch, while running (not for the sandbox container) */
};

const char *container_status_name(enum container_status s);

int container_create(struct sandbox *sb, const Grpc__CreateContainerRequest *req, rt_done_cb done, void *arg,
                     struct ctr_op **op, ka_err *e);
int container_start(struct container *c, rt_done_cb done, void *arg, struct ctr_op **op, ka_err *e);
int container_exec(struct container *c, const Grpc__ExecProcessRequest *req, rt_done_cb done, void *arg,
                   struct ctr_op **op, ka_err *e);
/* timeout_s 0 = no limit. */
int container_remove(struct container *c, uint32_t timeout_s, rt_done_cb done, void *arg, struct ctr_op **op,
                     ka_err *e);
/* Forget the callback of a pending operation (its RPC was cancelled); the operation itself completes. */
void ctr_op_detach(struct ctr_op *op);

/* exec_id "" = the init process. Errors: INVALID_ARGUMENT/NOT_FOUND style messages as upstream. */
struct process *container_find_process(struct container *c, const char *exec_id, ka_err *e);
/* One process: exec_id "" (or the container's id) is the init. SIGTERM to an init that neither blocks,
 * ignores nor catches it becomes SIGKILL (upstream); a process already gone (ESRCH) is a success. */
int container_signal(struct container *c, const char *exec_id, uint32_t sig, ka_err *e);
/* SignalProcess with exec_id "": the init as container_signal, then every process of the cgroup: SIGKILL at
 * once (cgroup.kill, or each pid), other signals with the cgroup frozen meanwhile (freeze, signal, thaw; a
 * paused container stays paused), without blocking. While another operation is in progress on the container
 * the cgroup is signalled at once without freezing. Returns 1 when finished already (done not called), 0 when
 * done(arg, err) will be called once from the loop (*op set, for container_freeze_cancel), -1 on error. */
int container_signal_all(struct container *c, uint32_t sig, rt_done_cb done, void *arg,
                         struct ctr_freeze **op, ka_err *e);
/* PauseContainer (from created or running) / ResumeContainer (from paused, back to the state it was paused
 * in) without blocking: 0 and done(arg, err) once from the loop, or -1 (done not called). A pause that fails
 * (after 2 s: DEADLINE_EXCEEDED) leaves the container thawed in its old state. */
int container_pause(struct container *c, rt_done_cb done, void *arg, struct ctr_freeze **op, ka_err *e);
int container_resume(struct container *c, rt_done_cb done, void *arg, struct ctr_freeze **op, ka_err *e);
/* The RPC of a pause, resume or signal went away (disconnect, timeout_nano): stop it now, done is not called.
 * The container is left in a defined state: a cancelled pause is undone (thawed, status unchanged), a
 * cancelled resume stands (thawed, resumed), a cancelled signal reaches every process at once and undoes its
 * own freeze (a paused container stays paused). RemoveContainer does the same to the operation in progress
 * and answers a pause or resume with ABORTED, a signal with success. */
void container_freeze_cancel(struct ctr_freeze *op);
/* After WaitProcess answered: an exec'd process is forgotten (as upstream), once the current batch of
 * callbacks is over (other waiters of the same exit are answered first). The init stays until removal. */
void container_forget_after_wait(struct process *p);
