/* GetIPTables / SetIPTables (spec §3.20): iptables-save, iptables-restore --wait 5 (ip6tables-* for IPv6)
 * run as child processes watched by the event loop. stdin is fed without blocking, stdout is collected up
 * to a bound that keeps the reply inside a ttrpc frame, and the tail of stderr becomes the error message. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../loop/loop.h"
#include "../util/err.h"

/* stdout kept for the reply: a 4 MiB frame minus room for the envelope. */
#define IPT_OUT_MAX ((size_t)(4u << 20) - (64u << 10))
/* Upstream's bound on feeding stdin; the whole run is bounded too (the child is killed). */
#define IPT_STDIN_TIMEOUT_S 5
#define IPT_RUN_TIMEOUT_S   60

struct ipt_job;
/* err is NULL on success; out/len is the program's stdout (valid only during the call). Called exactly
 * once, always from a loop callback, never from the function that started the job. */
typedef void (*ipt_done_cb)(void *arg, const ka_err *err, const uint8_t *out, size_t len);

/* The binary to run: /usr/sbin/<name> if it is executable, else /sbin/<name>, where name is
 * iptables-save, iptables-restore, ip6tables-save or ip6tables-restore (upstream's typos fixed). */
int ipt_binary(bool ipv6, bool restore, char *out, size_t outsz, ka_err *e);
/* iptables-save / ip6tables-save. */
struct ipt_job *ipt_save_async(struct loop *l, bool ipv6, ipt_done_cb done, void *arg, ka_err *e);
/* iptables-restore --wait 5 / ip6tables-restore --wait 5 with data on stdin (copied). */
struct ipt_job *ipt_restore_async(struct loop *l, bool ipv6, const uint8_t *data, size_t len,
                                  ipt_done_cb done, void *arg, ka_err *e);
/* The runner under both: argv (copied) with in/in_len on stdin (/dev/null when in is NULL). */
struct ipt_job *ipt_run_async(struct loop *l, char *const argv[], const uint8_t *in, size_t in_len,
                              ipt_done_cb done, void *arg, ka_err *e);
/* Kill the child and forget the job; done is not called. */
void ipt_cancel(struct ipt_job *j);
