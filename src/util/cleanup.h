/* Scope-bound ownership: variables released automatically when they leave scope. */
#pragma once
#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

static inline void ka_freep(void *p)
{
    free(*(void **)p);
}
static inline void ka_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

static inline void ka_closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

#define cleanup_free     __attribute__((cleanup(ka_freep)))
#define cleanup_close    __attribute__((cleanup(ka_closep)))
#define cleanup_closedir __attribute__((cleanup(ka_closedirp)))

/* Hand ownership out of a cleanup variable. */
#define steal_ptr(p)                                                                                         \
    ({                                                                                                       \
        __typeof__(p) _tmp = (p);                                                                            \
        (p) = NULL;                                                                                          \
        _tmp;                                                                                                \
    })
#define steal_fd(fd)                                                                                         \
    ({                                                                                                       \
        int _tmp = (fd);                                                                                     \
        (fd) = -1;                                                                                           \
        _tmp;                                                                                                \
    })

#define ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define UNLIKELY(x)                     __builtin_expect(!!(x), 0)
