/* The one error convention of the agent: a failing function fills a ka_err and returns -1.
 * Context is prefixed on the way up (ka_wrap); the RPC boundary turns it into one status + message. */
#pragma once
#include <stdarg.h>

/* gRPC / ttrpc status codes (google.rpc.Code). */
enum ka_status {
    KA_OK = 0,
    KA_CANCELLED = 1,
    KA_UNKNOWN = 2,
    KA_INVALID_ARGUMENT = 3,
    KA_DEADLINE_EXCEEDED = 4,
    KA_NOT_FOUND = 5,
    KA_ALREADY_EXISTS = 6,
    KA_PERMISSION_DENIED = 7,
    KA_RESOURCE_EXHAUSTED = 8,
    KA_FAILED_PRECONDITION = 9,
    KA_ABORTED = 10,
    KA_OUT_OF_RANGE = 11,
    KA_UNIMPLEMENTED = 12,
    KA_INTERNAL = 13,
    KA_UNAVAILABLE = 14,
    KA_DATA_LOSS = 15,
    KA_UNAUTHENTICATED = 16,
};

#define KA_ERR_MSG_MAX 1024

typedef struct ka_err {
    int status; /* enum ka_status the RPC boundary will answer with */
    int errnum; /* errno of the failing call, 0 when none */
    char msg[KA_ERR_MSG_MAX];
} ka_err;

/* Set status and message; returns -1. */
int ka_fail(ka_err *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Message becomes "<fmt>: <strerror(errnum)>", status INTERNAL; returns -1. */
int ka_fail_errno(ka_err *e, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix "<fmt>: " to the message already in e; returns -1. */
int ka_wrap(ka_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reset to "no error". */
void ka_err_clear(ka_err *e);
/* Name of a status code ("NOT_FOUND"), for logs and the ctl tool. */
const char *ka_status_name(int status);
