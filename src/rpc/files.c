/* File and volume RPCs: CopyFile (confined to the runtime base dir), GetVolumeStats, ResizeVolume. */
#include <malloc.h>

#include "agent.pb-c.h"
#include "csi.pb-c.h"
#include "rpc.h"
#include "../ttrpc/frame.h"
#include "../guest/copyfile.h"
#include "../guest/volume.h"

#define MAX_RESIZES 8         /* resize children running at once */
#define BIG_FILE    (4 << 20) /* memory is given back after a transfer of at least this size */

/* Transfers in progress outlive calls: one table for the agent, made on first use. */

void rpc_copy_file(struct ttrpc_call *c, void *req)
{
    const Grpc__CopyFileRequest *r = req;
    struct agent *a = rpc_agent(c);
    ka_err e;
    if (!a->copy) {
        struct copyfile_opts o = {.base_dir = a->sb.cfg.base_dir};
        if (!(a->copy = copyfile_new(a->loop, &o, &e))) {
            ttrpc_reply_err(c, &e);
            return;
        }
    }
    struct copyfile_req cr = {
        .path = r->path,
        .file_size = r->file_size,
        .file_mode = r->file_mode,
        .dir_mode = r->dir_mode,
        .uid = r->uid,
        .gid = r->gid,
        .offset = r->offset,
        .data = r->data.data,
        .len = r->data.len,
    };
    if (copyfile_chunk(a->copy, &cr, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    ttrpc_reply(c, NULL);
    if (r->file_size >= BIG_FILE && (uint64_t)r->offset + r->data.len == (uint64_t)r->file_size)
        malloc_trim(0);
}

void rpc_get_volume_stats(struct ttrpc_call *c, void *req)
{
    const Grpc__VolumeStatsRequest *r = req;
    struct volume_stats st;
    ka_err e;
    if (volume_get_stats(r->volume_guest_path, &st, &e) < 0) {
        ttrpc_reply_err(c, &e);
        return;
    }
    Grpc__VolumeUsage bytes = GRPC__VOLUME_USAGE__INIT, inodes = GRPC__VOLUME_USAGE__INIT;
    bytes.unit = GRPC__VOLUME_USAGE__UNIT__BYTES;
    bytes.total = st.bytes_total;
    bytes.available = st.bytes_available;
    bytes.used = st.bytes_used;
    inodes.unit = GRPC__VOLUME_USAGE__UNIT__INODES;
    inodes.total = st.inodes_total;
    inodes.available = st.inodes_available;
    inodes.used = st.inodes_used;
    Grpc__VolumeUsage *usage[] = {&bytes, &inodes};
    Grpc__VolumeCondition cond = GRPC__VOLUME_CONDITION__INIT;
    cond.abnormal = false;
    cond.message = "OK";
    Grpc__VolumeStatsResponse resp = GRPC__VOLUME_STATS_RESPONSE__INIT;
    resp.n_usage = 2;
    resp.usage = usage;
    resp.volume_condition = &cond;
    ttrpc_reply(c, &resp.base);
}

static void resize_done(void *arg, const ka_err *err)
{
    struct ttrpc_call *c = arg;
    rpc_agent(c)->resizes--;
    if (err)
        ttrpc_reply_err(c, err);
    else
        ttrpc_reply(c, NULL);
}

static void resize_cancel(struct ttrpc_call *c)
{
    rpc_agent(c)->resizes--;
    volume_resize_cancel(c->data);
}

void rpc_resize_volume(struct ttrpc_call *c, void *req)
{
    const Grpc__ResizeVolumeRequest *r = req;
    struct agent *a = rpc_agent(c);
    struct volume_resize_opts o = {.sysfs = a->sysfs_root};
    ka_err e;
    if (a->resizes >= MAX_RESIZES) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "%u volume resizes are already running", a->resizes);
        return;
    }
    c->data = volume_resize_async(a->loop, &o, r->volume_guest_path, r->size, resize_done, c, &e);
    if (!c->data) {
        ttrpc_reply_err(c, &e);
        return;
    }
    a->resizes++;
    c->cancel = resize_cancel;
}

void rpc_files_fini(struct agent *a)
{
    copyfile_free(a->copy);
    a->copy = NULL;
}
