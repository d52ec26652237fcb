/* Process credentials and limits applied in the child before exec: capabilities (all five sets, names via
 * libcap), user/group ids and additional gids, no_new_privileges, rlimits, oom_score_adj.
 * The *_prepare functions run in the agent (they parse and validate, so errors reach the RPC with a clear
 * message); the *_apply functions run in the child and do not allocate. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "oci.pb-c.h"
#include "../util/err.h"

struct caps_sets {
    uint64_t bounding, effective, inheritable, permitted, ambient; /* bit n = capability n */
};

/* Unknown capability names are INVALID_ARGUMENT naming them ("CAP_FOO"). NULL c -> all sets empty. */
int caps_prepare(const Grpc__LinuxCapabilities *c, struct caps_sets *out, ka_err *e);
/* Drop from the bounding set what is not listed, set effective/permitted/inheritable, then ambient. Call
 * after the uid change (creds_apply_ids keeps permitted across setuid via PR_SET_KEEPCAPS). */
int caps_apply(const struct caps_sets *c, ka_err *e);

#define CREDS_MAX_RLIMITS 32
#define CREDS_MAX_GIDS    256

struct creds {
    uid_t uid;
    gid_t gid;
    size_t n_gids;
    gid_t gids[CREDS_MAX_GIDS];
    bool no_new_privs;
    int64_t oom_score_adj;
    size_t n_rlimits;
    struct {
        int resource;
        struct rlimit lim;
    } rlimits[CREDS_MAX_RLIMITS];
};

/* From Process: User (uid, gid, additional gids), NoNewPrivileges, OOMScoreAdj (always written, 0 when
 * unset, as upstream), Rlimits (RLIMIT_NOFILE style names; unknown -> INVALID_ARGUMENT; soft > hard ->
 * INVALID_ARGUMENT). */
int creds_prepare(const Grpc__Process *p, struct creds *out, ka_err *e);
/* In the child: oom_score_adj and rlimits (before joining namespaces). */
int creds_apply_limits(const struct creds *c, ka_err *e);
/* In the child: setgroups (only when additional gids are given, else clears them... see the .c),
 * setresgid, setresuid with PR_SET_KEEPCAPS so capabilities survive for caps_apply. */
int creds_apply_ids(const struct creds *c, ka_err *e);
/* In the child: PR_SET_NO_NEW_PRIVS when requested. */
int creds_apply_nnp(const struct creds *c, ka_err *e);
