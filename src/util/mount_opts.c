/* The mount option word table and its lookup (see mount_opts.h). */
#include "mount_opts.h"

#include <string.h>
#include <sys/mount.h>

#include "cleanup.h"

/* clang-format off */
static const struct mnt_word words[] = {
    {"defaults", 0, false, false},
    {"ro", MS_RDONLY, false, false},             {"rw", MS_RDONLY, true, false},
    {"suid", MS_NOSUID, true, false},            {"nosuid", MS_NOSUID, false, false},
    {"dev", MS_NODEV, true, false},              {"nodev", MS_NODEV, false, false},
    {"exec", MS_NOEXEC, true, false},            {"noexec", MS_NOEXEC, false, false},
    {"sync", MS_SYNCHRONOUS, false, false},      {"async", MS_SYNCHRONOUS, true, false},
    {"dirsync", MS_DIRSYNC, false, false},       {"remount", MS_REMOUNT, false, false},
    {"mand", MS_MANDLOCK, false, false},         {"nomand", MS_MANDLOCK, true, false},
    {"atime", MS_NOATIME, true, false},          {"noatime", MS_NOATIME, false, false},
    {"diratime", MS_NODIRATIME, true, false},    {"nodiratime", MS_NODIRATIME, false, false},
    {"bind", MS_BIND, false, false},             {"rbind", MS_BIND | MS_REC, false, false},
    {"relatime", MS_RELATIME, false, false},     {"norelatime", MS_RELATIME, true, false},
    {"strictatime", MS_STRICTATIME, false, false}, {"nostrictatime", MS_STRICTATIME, true, false},
    {"acl", MS_POSIXACL, false, false},          {"noacl", MS_POSIXACL, true, false},
    {"iversion", MS_I_VERSION, false, false},    {"noiversion", MS_I_VERSION, true, false},
    {"lazytime", MS_LAZYTIME, false, false},     {"nolazytime", MS_LAZYTIME, true, false},
    {"silent", MS_SILENT, false, false},         {"loud", MS_SILENT, true, false},
    {"private", MS_PRIVATE, false, true},        {"rprivate", MS_PRIVATE | MS_REC, false, true},
    {"shared", MS_SHARED, false, true},          {"rshared", MS_SHARED | MS_REC, false, true},
    {"slave", MS_SLAVE, false, true},            {"rslave", MS_SLAVE | MS_REC, false, true},
    {"unbindable", MS_UNBINDABLE, false, true},  {"runbindable", MS_UNBINDABLE | MS_REC, false, true},
};
/* clang-format on */

const struct mnt_word *mnt_word_find(const char *w, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(words); i++)
        if (strlen(words[i].name) == len && memcmp(words[i].name, w, len) == 0)
            return &words[i];
    return NULL;
}

void mnt_flags_apply(struct mnt_flags *f, const struct mnt_word *k)
{
    if (k->propagation) {
        f->prop = k->flag;
    } else if (k->clear) {
        f->set &= ~k->flag;
        f->cleared |= k->flag;
    } else {
        f->set |= k->flag;
        f->cleared &= ~k->flag;
    }
}

int mnt_data_append(char *data, size_t datasz, const char *w, size_t len, ka_err *e)
{
    size_t cur = strlen(data), need = cur + (cur ? 1 : 0) + len + 1;
    if (need > datasz)
        return ka_fail(e, KA_INVALID_ARGUMENT, "mount options too long at '%.*s'", (int)(len > 64 ? 64 : len),
                       w);
    if (cur)
        data[cur++] = ',';
    memcpy(data + cur, w, len);
    data[cur + len] = '\0';
    return 0;
}
