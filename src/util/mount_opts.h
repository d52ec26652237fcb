/* Mount option words ("ro", "nosuid", "rbind", "rshared", ...) as mount(2) flags: the one table shared by
 * the OCI mounts (runtime/rootfs.c), the storages (guest/storage.c) and the ephemeral remounts
 * (runtime/stats.c), each of which adds its own policy. Words not in the table are filesystem data. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct mnt_word {
    const char *name;
    unsigned long flag;
    bool clear;       /* "rw", "suid", ...: the flag is cleared */
    bool propagation; /* "rshared", "private", ...: MS_SHARED/PRIVATE/SLAVE/UNBINDABLE, | MS_REC */
};

/* Parsed words: flags set, flags explicitly cleared, propagation (the last propagation word wins). */
struct mnt_flags {
    unsigned long set;
    unsigned long cleared;
    unsigned long prop;
};

/* The word w[0..len), or NULL when it is filesystem data. */
const struct mnt_word *mnt_word_find(const char *w, size_t len);
void mnt_flags_apply(struct mnt_flags *f, const struct mnt_word *k);
/* Append w[0..len) to the comma-separated data in data[datasz]. */
int mnt_data_append(char *data, size_t datasz, const char *w, size_t len, ka_err *e);
