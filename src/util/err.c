/* The error object: formatting, errno text and context wrapping. */
#include "err.h"

#include <stdio.h>
#include <string.h>

static void vset(ka_err *e, const char *fmt, va_list ap)
{
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int ka_fail(ka_err *e, int status, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->errnum = 0;
    va_start(ap, fmt);
    vset(e, fmt, ap);
    va_end(ap);
    return -1;
}

int ka_fail_errno(ka_err *e, int errnum, const char *fmt, ...)
{
    va_list ap;
    e->status = KA_INTERNAL;
    e->errnum = errnum;
    va_start(ap, fmt);
    vset(e, fmt, ap);
    va_end(ap);
    size_t n = strlen(e->msg);
    snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(errnum));
    return -1;
}

int ka_wrap(ka_err *e, const char *fmt, ...)
{
    char prefix[KA_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof(prefix) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    size_t plen = strlen(prefix);
    prefix[plen++] = ':';
    prefix[plen++] = ' ';
    size_t mlen = strnlen(e->msg, sizeof(e->msg) - 1);
    if (plen >= sizeof(e->msg))
        plen = sizeof(e->msg) - 1;
    if (plen + mlen >= sizeof(e->msg))
        mlen = sizeof(e->msg) - 1 - plen;
    memmove(e->msg + plen, e->msg, mlen);
    memcpy(e->msg, prefix, plen);
    e->msg[plen + mlen] = '\0';
    return -1;
}

void ka_err_clear(ka_err *e)
{
    e->status = KA_OK;
    e->errnum = 0;
    e->msg[0] = '\0';
}

const char *ka_status_name(int status)
{
    static const char *const names[] = {
        "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED",
    };
    if (status < 0 || status >= (int)(sizeof(names) / sizeof(names[0])))
        return "UNKNOWN_CODE";
    return names[status];
}
