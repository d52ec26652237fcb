/* Small file-system helpers shared by the runtime and guest modules. */
#pragma once
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* mkdir -p; existing directories are fine. */
int fs_mkdir_p(const char *path, mode_t mode, ka_err *e);
/* Write data (len bytes; strlen when len == (size_t)-1) to an existing file, as one write. */
int fs_write_file(const char *path, const char *data, size_t len, ka_err *e);
/* Same, relative to dirfd (O_WRONLY|O_CLOEXEC, no O_CREAT). */
int fs_write_file_at(int dirfd, const char *path, const char *data, size_t len, ka_err *e);
/* Create or truncate a file with mode and write data. */
int fs_create_file(const char *path, const char *data, size_t len, mode_t mode, ka_err *e);
/* Read a whole (small) file into a NUL-terminated malloc'd buffer. *len may be NULL. */
int fs_read_file(const char *path, char **out, size_t *len, ka_err *e);
int fs_read_file_at(int dirfd, const char *path, char **out, size_t *len, ka_err *e);
/* "/a//./b/" -> "/a/b" into out (PATH_MAX bytes); relative paths and ".." components are refused
 * (INVALID_ARGUMENT "<what> '<in>' is not an absolute path" / "<what> <in> must not contain '..'"). */
int fs_normalize_path(const char *what, const char *in, char *out, ka_err *e);
/* rm -rf that never crosses a mount point (it stops with an error instead). */
int fs_remove_tree(const char *path, ka_err *e);
