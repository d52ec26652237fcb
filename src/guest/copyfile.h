/* CopyFile (spec §3.29), confined to a base directory (/run/kata-containers in the agent).
 *
 * Where the destination goes: the path must lexically start with the base; the rest is resolved from the
 * base with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so "..", absolute symlinks, symlinks that
 * climb out and /proc magic links cannot leave it. Symlinks that stay inside the base are followed in the
 * parents; the final component is never followed (it is replaced by rename). Missing parents are created
 * (mode dir_mode & 07777, 0755 when that is 0), existing ones are left as they are.
 *
 * Regular files (type bits of file_mode 0 or S_IFREG) arrive in chunks: offset 0 starts (or restarts) a
 * transfer into an unnamed O_TMPFILE inode in the destination's directory (a named ".<name>.kata-copy-<hex>"
 * file created O_EXCL when the file system has no O_TMPFILE); later chunks must continue it without a gap
 * (offset <= bytes received). When file_size bytes are there the file gets uid, gid and mode and is renamed
 * over the destination, so the destination is never partial. Transfers idle for stale_ns are dropped (the
 * unnamed inode is freed; a named temp file is unlinked), as are all of them at copyfile_free.
 * S_IFDIR makes a directory (mode, uid, gid applied, also to an existing one); S_IFLNK makes a symlink whose
 * target is `data`, replacing the destination atomically. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../loop/loop.h"
#include "../util/err.h"

#define COPYFILE_MAX_CHUNK     (4u << 20)               /* the 4 MiB ttrpc frame bounds it anyway */
#define COPYFILE_MAX_SIZE      (1ull << 40)             /* file_size limit (also: free space at offset 0) */
#define COPYFILE_MAX_TRANSFERS 64                       /* transfers in progress at once */
#define COPYFILE_STALE_NS      (300ull * 1000000000ull) /* idle transfers are dropped after 5 minutes */

struct copyfile_opts {
    const char *base_dir; /* destinations must resolve beneath it (copied) */
    uint64_t stale_ns;    /* 0 = COPYFILE_STALE_NS */
    size_t max_transfers; /* 0 = COPYFILE_MAX_TRANSFERS */
    bool no_tmpfile;      /* tests: always use named temp files */
};

struct copyfile_req {
    const char *path;
    int64_t file_size;
    uint32_t file_mode; /* S_IFMT type bits + permission bits */
    uint32_t dir_mode;  /* for created parents; only & 07777 is used */
    int32_t uid, gid;   /* -1 = unchanged */
    int64_t offset;
    const uint8_t *data;
    size_t len;
};

struct copyfile;

/* l may be NULL (no timer: call copyfile_sweep yourself). */
struct copyfile *copyfile_new(struct loop *l, const struct copyfile_opts *o, ka_err *e);
/* Drop every transfer in progress and free. */
void copyfile_free(struct copyfile *cf);
/* One CopyFileRequest. */
int copyfile_chunk(struct copyfile *cf, const struct copyfile_req *r, ka_err *e);
/* Drop transfers idle since before now_ns - stale_ns; returns how many were dropped. */
size_t copyfile_sweep(struct copyfile *cf, uint64_t now_ns);
size_t copyfile_pending(const struct copyfile *cf);

/* ---- path resolution, exposed for the unit tests ---- */

/* Lexical split of an absolute path below base into the parent relative to base ("." when directly below)
 * and the final name. Errors: INVALID_ARGUMENT. */
int copyfile_split(const char *base, const char *path, char **parent, char **name, ka_err *e);
/* Open directory rel beneath basefd (O_RDONLY|O_DIRECTORY), creating missing components with mode when
 * create is set. Escapes are PERMISSION_DENIED, a missing directory NOT_FOUND. Returns the fd or -1. */
int copyfile_open_dir(int basefd, const char *rel, bool create, mode_t mode, ka_err *e);
