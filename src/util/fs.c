/* File-system helpers: mkdir -p, whole-file reads and writes, a mount-safe recursive remove. */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

int fs_mkdir_p(const char *path, mode_t mode, ka_err *e)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return ka_fail_errno(e, errno, "mkdir %s", buf);
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return ka_fail_errno(e, errno, "stat %s", path);
    if (!S_ISDIR(st.st_mode))
        return ka_fail(e, KA_INTERNAL, "%s exists and is not a directory", path);
    return 0;
}

static int write_fd(int fd, const char *what, const char *data, size_t len, ka_err *e)
{
    if (len == (size_t)-1)
        len = strlen(data);
    ssize_t w = write(fd, data, len);
    if (w < 0)
        return ka_fail_errno(e, errno, "write %s", what);
    if ((size_t)w != len)
        return ka_fail(e, KA_INTERNAL, "short write to %s", what);
    return 0;
}

int fs_write_file_at(int dirfd, const char *path, const char *data, size_t len, ka_err *e)
{
    cleanup_close int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s", path);
    return write_fd(fd, path, data, len, e);
}

int fs_write_file(const char *path, const char *data, size_t len, ka_err *e)
{
    return fs_write_file_at(AT_FDCWD, path, data, len, e);
}

int fs_create_file(const char *path, const char *data, size_t len, mode_t mode, ka_err *e)
{
    cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0)
        return ka_fail_errno(e, errno, "create %s", path);
    return write_fd(fd, path, data, len, e);
}

int fs_read_file_at(int dirfd, const char *path, char **out, size_t *len, ka_err *e)
{
    cleanup_close int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return ka_fail_errno(e, ENOMEM, "read %s", path);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= 64u << 20) {
                free(buf);
                return ka_fail(e, KA_RESOURCE_EXHAUSTED, "%s is too large", path);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return ka_fail_errno(e, ENOMEM, "read %s", path);
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            free(buf);
            return ka_fail_errno(e, err, "read %s", path);
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

int fs_read_file(const char *path, char **out, size_t *len, ka_err *e)
{
    return fs_read_file_at(AT_FDCWD, path, out, len, e);
}

int fs_normalize_path(const char *what, const char *in, char *out, ka_err *e)
{
    if (in[0] != '/')
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s '%s' is not an absolute path", what, in);
    size_t len = 0;
    for (const char *p = in; *p;) {
        size_t cl = strcspn(p, "/");
        if (cl == 2 && p[0] == '.' && p[1] == '.')
            return ka_fail(e, KA_INVALID_ARGUMENT, "%s %s must not contain '..'", what, in);
        if (cl > 0 && !(cl == 1 && p[0] == '.')) {
            if (len + 1 + cl >= PATH_MAX)
                return ka_fail(e, KA_INVALID_ARGUMENT, "%s %s is too long", what, in);
            out[len++] = '/';
            memcpy(out + len, p, cl);
            len += cl;
        }
        p += cl;
        p += strspn(p, "/");
    }
    out[len] = '\0';
    return 0;
}

static int remove_at(int parent, const char *name, dev_t dev, int depth, ka_err *e)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "stat %s", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
            return ka_fail_errno(e, errno, "unlink %s", name);
        return 0;
    }
    if (st.st_dev != dev)
        return ka_fail(e, KA_FAILED_PRECONDITION, "%s is a mount point; not removing across it", name);
    if (depth > 256)
        return ka_fail(e, KA_INTERNAL, "%s: directory tree too deep", name);
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ka_fail_errno(e, errno, "open %s", name);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return ka_fail_errno(e, errno, "opendir %s", name);
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = remove_at(dirfd(d), de->d_name, dev, depth + 1, e);
    }
    closedir(d);
    if (rc < 0)
        return ka_wrap(e, "%s", name);
    if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return ka_fail_errno(e, errno, "rmdir %s", name);
    return 0;
}

int fs_remove_tree(const char *path, ka_err *e)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : ka_fail_errno(e, errno, "stat %s", path);
    return remove_at(AT_FDCWD, path, st.st_dev, 0, e);
}
