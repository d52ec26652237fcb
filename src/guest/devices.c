/* Devices named by a request (storages' disks, CreateContainer's devices) resolved to the guest's. */
#include "devices.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/log.h"

#define SUB         "device"
#define DEVICES_MAX 1024 /* storages, and devices, in one request */

/* One disk the request waits for, and where its /dev path goes. */
struct need {
    struct dev_prep *p;
    struct dev_wait *w;
    Grpc__Storage *storage;  /* its source becomes the path */
    const Grpc__Device *dev; /* its container_path gets the path's device numbers */
    bool wait;               /* false: path is known already (mmioblk, nvdimm devices) */
    enum dev_kind kind;      /* what to wait for, and its key */
    char key[PATH_MAX];
    char path[PATH_MAX];
};

struct dev_prep {
    Grpc__Spec *spec;
    struct need *needs;
    size_t n, pending;
    dev_prep_cb done;
    void *arg;
};

static void set_string(char **dst, const char *src)
{
    char *n = strdup(src);
    if (!n)
        return; /* keeps the old value; the mount then fails with a clear error */
    if (*dst && *dst != protobuf_c_empty_string)
        free(*dst);
    *dst = n;
}

/* "target:lun", both decimal: the SCSI address of a disk on the guest's (virtio-)SCSI host. */
static int check_scsi_addr(const char *a, ka_err *e)
{
    const char *colon = strchr(a, ':');
    bool ok = colon && colon != a && colon[1] && !strchr(colon + 1, ':') && strlen(a) < 32;
    for (const char *p = a; ok && *p; p++)
        ok = (*p >= '0' && *p <= '9') || p == colon;
    if (!ok)
        return ka_fail(e, KA_INVALID_ARGUMENT, "Unexpected format for SCSI Address: \"%.40s\"", a);
    return 0;
}

/* Ask every SCSI host to scan for the target and LUN (a hot-plugged disk may need it to appear). */
static void scsi_scan(const char *sysfs_root, const char *addr)
{
    char dir[PATH_MAX], line[64];
    const char *colon = strchr(addr, ':');
    snprintf(dir, sizeof(dir), "%s/class/scsi_host", sysfs_root);
    snprintf(line, sizeof(line), "0 %.*s %s", (int)(colon - addr), addr, colon + 1);
    cleanup_closedir DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char scan[PATH_MAX + 300];
        if (de->d_name[0] == '.')
            continue;
        snprintf(scan, sizeof(scan), "%s/%s/scan", dir, de->d_name);
        cleanup_close int fd = open(scan, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, line, strlen(line)) < 0)
            log_warn(SUB, "scan %s for SCSI %s: %s", de->d_name, addr, strerror(errno));
    }
}

/* A disk to wait for: a virtio-blk disk at a PCI path ("blk") or a SCSI disk at "target:lun" ("scsi"). */
static int disk_target(const struct dev_env *env, const char *how, const char *addr, enum dev_kind *kind,
                       char *key, size_t keylen, bool *wait, ka_err *e)
{
    *wait = true;
    if (strcmp(how, "blk") == 0) {
        *kind = DEV_VIRTIO_BLK;
        return pci_path_to_sysfs(env->sysfs_root, addr, key, keylen, e);
    }
    *kind = DEV_SCSI;
    if (check_scsi_addr(addr, e) < 0)
        return -1;
    snprintf(key, keylen, "%s", addr);
    return 0;
}

/* What to wait for to find a storage's disk (*wait stays false if its source is already a guest path). */
static int storage_target(const struct dev_env *env, const Grpc__Storage *st, enum dev_kind *kind, char *key,
                          size_t keylen, bool *wait, ka_err *e)
{
    *wait = false;
    if ((strcmp(st->driver, "blk") == 0 && strncmp(st->source, "/dev", 4) != 0) ||
        strcmp(st->driver, "scsi") == 0)
        return disk_target(env, st->driver, st->source, kind, key, keylen, wait, e);
    if (strcmp(st->driver, "nvdimm") == 0) {
        if (strncmp(st->source, "/dev/", 5) != 0 || !st->source[5] || strchr(st->source + 5, '/'))
            return ka_fail(e, KA_INVALID_ARGUMENT, "nvdimm storage source \"%.64s\" is not /dev/<name>",
                           st->source);
        *kind = DEV_PMEM;
        *wait = true;
        snprintf(key, keylen, "%s", st->source + 5);
    }
    return 0;
}

/* The same for a CreateContainer device; mmioblk/nvdimm devices name their guest path directly. */
static int device_target(const struct dev_env *env, const Grpc__Device *d, enum dev_kind *kind, char *key,
                         size_t keylen, char *path, size_t pathlen, bool *wait, ka_err *e)
{
    *wait = false;
    if (!d->type[0])
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid type for device");
    if (!d->id[0] && !d->vm_path[0])
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid ID and VM path for device");
    if (!d->container_path[0])
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid container path for device");
    if (strcmp(d->type, "blk") == 0 || strcmp(d->type, "scsi") == 0)
        return disk_target(env, d->type, d->id, kind, key, keylen, wait, e);
    if (strcmp(d->type, "mmioblk") == 0 || strcmp(d->type, "nvdimm") == 0) {
        if (!d->vm_path[0])
            return ka_fail(e, KA_INVALID_ARGUMENT, "Invalid path for %s device", d->type);
        snprintf(path, pathlen, "%s", d->vm_path);
        return 0;
    }
    if (strncmp(d->type, "vfio", 4) == 0)
        return ka_fail(e, KA_UNIMPLEMENTED, "%s devices are not supported yet", d->type);
    return ka_fail(e, KA_INVALID_ARGUMENT, "Unknown device type %.64s", d->type);
}

/* Give the OCI spec the guest's numbers for one device: its linux.devices entry and the cgroup rules that
 * named the host's numbers. */
static int apply_device(Grpc__Spec *spec, const Grpc__Device *d, const char *path, ka_err *e)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return ka_fail_errno(e, errno, "device %s", path);
    if (!S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode))
        return ka_fail(e, KA_INVALID_ARGUMENT, "%s is not a device node", path);
    Grpc__Linux *lx = spec ? spec->linux : NULL;
    Grpc__LinuxDevice *hit = NULL;
    for (size_t i = 0; lx && i < lx->n_devices; i++)
        if (strcmp(lx->devices[i]->path, d->container_path) == 0)
            hit = lx->devices[i];
    if (!hit)
        return ka_fail(e, KA_INVALID_ARGUMENT, "Missing devices in OCI spec: %.200s", d->container_path);
    int64_t old_major = hit->major, old_minor = hit->minor;
    const char *type = S_ISBLK(st.st_mode) ? "b" : "c";
    hit->major = major(st.st_rdev);
    hit->minor = minor(st.st_rdev);
    for (size_t i = 0; lx->resources && i < lx->resources->n_devices; i++) {
        Grpc__LinuxDeviceCgroup *r = lx->resources->devices[i];
        if (strcmp(r->type, type) == 0 && r->major == old_major && r->minor == old_minor) {
            r->major = hit->major;
            r->minor = hit->minor;
        }
    }
    log_info(SUB, "device %s is %s (%lld:%lld)", d->container_path, path, (long long)hit->major,
             (long long)hit->minor);
    return 0;
}

/* Everything found: rewrite the request. */
static int apply_all(struct dev_prep *p, ka_err *e)
{
    for (size_t i = 0; i < p->n; i++) {
        struct need *n = &p->needs[i];
        if (n->storage)
            set_string(&n->storage->source, n->path);
        else if (apply_device(p->spec, n->dev, n->path, e) < 0)
            return -1;
    }
    return 0;
}

static void prep_free(struct dev_prep *p)
{
    for (size_t i = 0; i < p->n; i++)
        dev_wait_cancel(p->needs[i].w);
    free(p->needs);
    free(p);
}

static void need_done(void *arg, const char *path, const ka_err *err)
{
    struct need *n = arg;
    struct dev_prep *p = n->p;
    ka_err e;
    bool failed = err != NULL;
    n->w = NULL;
    if (err) {
        e = *err;
    } else {
        snprintf(n->path, sizeof(n->path), "%s", path);
        if (--p->pending > 0)
            return;
        failed = apply_all(p, &e) < 0;
    }
    dev_prep_cb done = p->done;
    void *done_arg = p->arg;
    prep_free(p); /* on failure this cancels the other waits */
    done(done_arg, failed ? &e : NULL);
}

/* Check for duplicate container paths before anything waits. */
static int check_conflicts(Grpc__Device **devices, size_t n, ka_err *e)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(devices[i]->container_path, devices[j]->container_path) == 0)
                return ka_fail(e, KA_INVALID_ARGUMENT, "Conflicting device updates for %.200s",
                               devices[i]->container_path);
    return 0;
}

int devices_prepare(const struct dev_env *env, Grpc__Storage **storages, size_t n_storages,
                    Grpc__Device **devices, size_t n_devices, Grpc__Spec *spec, dev_prep_cb done, void *arg,
                    struct dev_prep **out, ka_err *e)
{
    *out = NULL;
    if (n_storages + n_devices == 0)
        return 0;
    if (n_storages > DEVICES_MAX || n_devices > DEVICES_MAX)
        return ka_fail(e, KA_INVALID_ARGUMENT, "too many storages or devices (%zu and %zu, at most %d each)",
                       n_storages, n_devices, DEVICES_MAX);
    if (check_conflicts(devices, n_devices, e) < 0)
        return -1;
    struct dev_prep *p = calloc(1, sizeof(*p));
    if (!p || !(p->needs = calloc(n_storages + n_devices, sizeof(*p->needs)))) {
        free(p);
        return ka_fail_errno(e, ENOMEM, "devices");
    }
    p->spec = spec;
    p->done = done;
    p->arg = arg;
    int rc = 0;
    /* validate everything (and resolve PCI paths) before waiting for anything */
    for (size_t i = 0; rc == 0 && i < n_storages + n_devices; i++) {
        struct need *n = &p->needs[p->n];
        memset(n, 0, sizeof(*n));
        n->p = p;
        if (i < n_storages) {
            n->storage = storages[i];
            rc = storage_target(env, storages[i], &n->kind, n->key, sizeof(n->key), &n->wait, e);
            if (rc < 0)
                ka_wrap(e, "storage %zu (%s)", i + 1, storages[i]->driver);
            if (rc == 0 && !n->wait)
                continue; /* a storage that needs nothing */
        } else {
            const Grpc__Device *d = devices[i - n_storages];
            n->dev = d;
            rc = device_target(env, d, &n->kind, n->key, sizeof(n->key), n->path, sizeof(n->path), &n->wait,
                               e);
            if (rc < 0)
                ka_wrap(e, "device %zu (%s %s)", i - n_storages + 1, d->type, d->id[0] ? d->id : d->vm_path);
        }
        p->n++;
    }
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        struct need *n = &p->needs[i];
        if (!n->wait)
            continue;
        if (n->kind == DEV_SCSI)
            scsi_scan(env->sysfs_root, n->key);
        n->w = dev_wait_start(env->mon, n->kind, n->key, env->timeout_ms, need_done, n, e);
        if (!n->w)
            rc = -1;
        else
            p->pending++;
    }
    if (rc < 0) {
        prep_free(p);
        return -1;
    }
    if (p->pending == 0) { /* only devices with guest paths: apply now */
        rc = apply_all(p, e);
        prep_free(p);
        return rc;
    }
    *out = p;
    return 1;
}

void devices_prepare_cancel(struct dev_prep *p)
{
    if (p)
        prep_free(p);
}

struct dev_wait *devices_wait_pci_slots(const struct dev_env *env, const uint32_t *slots, size_t n,
                                        dev_wait_cb done, void *arg, ka_err *e)
{
    char text[16 * 4], key[PATH_MAX];
    size_t len = 0;
    if (n == 0 || n > 16) {
        ka_fail(e, KA_INVALID_ARGUMENT, "a PCI path has 1 to 16 slots, not %zu", n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (slots[i] > 0x1f) {
            ka_fail(e, KA_INVALID_ARGUMENT, "PCI slot %u is out of range (0-31)", slots[i]);
            return NULL;
        }
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%02x", i ? "/" : "", slots[i]);
    }
    if (pci_path_to_sysfs(env->sysfs_root, text, key, sizeof(key), e) < 0)
        return NULL;
    return dev_wait_start(env->mon, DEV_VIRTIO_BLK, key, env->timeout_ms, done, arg, e);
}
