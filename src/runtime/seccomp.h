/* Seccomp from the OCI LinuxSeccomp message via libseccomp: compiled to BPF in the agent (so a bad profile
 * fails CreateContainer/ExecProcess with a clear message before anything is spawned), loaded in the child. */
#pragma once
#include <stdbool.h>

#include "oci.pb-c.h"
#include "../util/err.h"

struct seccomp_prog;

/* Validate and compile: default action, architectures (SCMP_ARCH_X86_64 style names), flags
 * (SECCOMP_FILTER_FLAG_LOG, _SPEC_ALLOW, _TSYNC ...), syscalls by name (unknown names are skipped as runc
 * does, other errors are INVALID_ARGUMENT naming the rule), actions (SCMP_ACT_ALLOW/ERRNO/KILL/KILL_PROCESS/
 * KILL_THREAD/TRAP/TRACE/LOG), errno values (errnoret unset = EPERM), argument rules with every operator
 * (SCMP_CMP_NE/LT/LE/EQ/GE/GT/MASKED_EQ). NULL sc gives *out = NULL (no filter). */
int seccomp_compile(const Grpc__LinuxSeccomp *sc, struct seccomp_prog **out, ka_err *e);
/* In the child, as late as possible (just before exec when NoNewPrivileges, else before dropping
 * capabilities, as the spec 4.6 orders it). Only async-signal-safe-ish syscalls; no allocation. */
int seccomp_prog_load(const struct seccomp_prog *p, ka_err *e);
void seccomp_prog_free(struct seccomp_prog *p);
