/* Prometheus text exposition of the agent process and guest statistics read from /proc (spec §5.7). */
#include "metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/log.h"

#define SUB "metrics"

/* ======================================================================================================
 * Families and samples
 * ====================================================================================================== */

/* Sorted by name: the output order. */
enum fam {
    F_AGENT_FDS,
    F_AGENT_IO_STAT,
    F_AGENT_PROC_STAT,
    F_AGENT_PROC_STATUS,
    F_AGENT_SCRAPE_COUNT,
    F_AGENT_THREADS,
    F_AGENT_TOTAL_RSS,
    F_AGENT_TOTAL_TIME,
    F_AGENT_TOTAL_VM,
    F_GUEST_CPU_TIME,
    F_GUEST_DISKSTAT,
    F_GUEST_LOAD,
    F_GUEST_MEMINFO,
    F_GUEST_NETDEV_STAT,
    F_GUEST_TASKS,
    F_GUEST_VM_STAT,
    F_COUNT,
};

static const struct {
    const char *name, *help, *type;
} fam_def[F_COUNT] = {
    [F_AGENT_FDS] = {"kata_agent_fds", "Agent process open FDs", "gauge"},
    [F_AGENT_IO_STAT] = {"kata_agent_io_stat", "Agent process IO statistics.", "gauge"},
    [F_AGENT_PROC_STAT] = {"kata_agent_proc_stat", "Agent process statistics.", "gauge"},
    [F_AGENT_PROC_STATUS] = {"kata_agent_proc_status", "Agent process status.", "gauge"},
    [F_AGENT_SCRAPE_COUNT] = {"kata_agent_scrape_count", "Metrics scrape count", "counter"},
    [F_AGENT_THREADS] = {"kata_agent_threads", "Agent process threads", "gauge"},
    [F_AGENT_TOTAL_RSS] = {"kata_agent_total_rss", "Agent process total RSS size", "gauge"},
    [F_AGENT_TOTAL_TIME] = {"kata_agent_total_time", "Agent process total time", "gauge"},
    [F_AGENT_TOTAL_VM] = {"kata_agent_total_vm", "Agent process total VM size", "gauge"},
    [F_GUEST_CPU_TIME] = {"kata_guest_cpu_time", "Guest CPU statistics.", "gauge"},
    [F_GUEST_DISKSTAT] = {"kata_guest_diskstat", "Disks statistics in system.", "gauge"},
    [F_GUEST_LOAD] = {"kata_guest_load", "Guest system load.", "gauge"},
    [F_GUEST_MEMINFO] = {"kata_guest_meminfo", "Statistics about memory usage in the system.", "gauge"},
    [F_GUEST_NETDEV_STAT] = {"kata_guest_netdev_stat", "Guest net devices statistics.", "gauge"},
    [F_GUEST_TASKS] = {"kata_guest_tasks", "Guest system load.", "gauge"},
    [F_GUEST_VM_STAT] = {"kata_guest_vm_stat", "Guest virtual memory statistics.", "gauge"},
};

/* One family's samples: each is the text after the metric name ("{item=\"x\"} 12"). */
struct family {
    char **v;
    size_t n, cap;
    bool cut;
};

struct render {
    const char *proc;
    long tck, page;
    struct family fam[F_COUNT];
    bool oom;
};

/* A label value as Prometheus wants it: \ " and newline escaped; control and non-ASCII bytes become '?'
 * (the text travels in a protobuf string, which must be valid UTF-8). */
static bool put_label_value(struct kbuf *b, const char *v)
{
    bool ok = true;
    for (; *v; v++) {
        unsigned char ch = (unsigned char)*v;
        const char *esc = ch == '\\' ? "\\\\" : ch == '"' ? "\\\"" : ch == '\n' ? "\\n" : NULL;
        if (esc)
            ok &= kbuf_append(b, esc, strlen(esc)) == 0;
        else
            ok &= kbuf_append(b, ch >= 0x20 && ch < 0x7f ? (const char *)&ch : "?", 1) == 0;
    }
    return ok;
}

static bool family_grow(struct family *fm)
{
    if (fm->n < fm->cap)
        return true;
    size_t cap = fm->cap ? fm->cap * 2 : 16;
    char **v = realloc(fm->v, cap * sizeof(*v));
    if (!v)
        return false;
    fm->v = v;
    fm->cap = cap;
    return true;
}

/* labels: NULL-terminated name, value pairs (or NULL). value: the formatted number. */
static void add_sample(struct render *r, enum fam f, const char *const *labels, const char *value)
{
    struct family *fm = &r->fam[f];
    if (fm->n >= METRICS_FAMILY_MAX) {
        if (!fm->cut)
            log_warn(SUB, "%s: more than %d samples, the rest is left out", fam_def[f].name,
                     METRICS_FAMILY_MAX);
        fm->cut = true;
        return;
    }
    struct kbuf b = {0};
    bool ok = true;
    if (labels && labels[0]) {
        ok &= kbuf_append(&b, "{", 1) == 0;
        for (size_t i = 0; labels[i]; i += 2) {
            if (i)
                ok &= kbuf_append(&b, ",", 1) == 0;
            ok &= kbuf_append(&b, labels[i], strlen(labels[i])) == 0;
            ok &= kbuf_append(&b, "=\"", 2) == 0;
            ok &= put_label_value(&b, labels[i + 1]);
            ok &= kbuf_append(&b, "\"", 1) == 0;
        }
        ok &= kbuf_append(&b, "}", 1) == 0;
    }
    ok &= kbuf_append(&b, " ", 1) == 0;
    ok &= kbuf_append(&b, value, strlen(value) + 1) == 0; /* with the NUL */
    if (!ok || !family_grow(fm)) {
        r->oom = true;
        kbuf_free(&b);
        return;
    }
    fm->v[fm->n++] = (char *)b.data;
}

static void add_u64(struct render *r, enum fam f, const char *const *labels, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    add_sample(r, f, labels, buf);
}

static void add_i64(struct render *r, enum fam f, const char *const *labels, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    add_sample(r, f, labels, buf);
}

/* The shortest %g text that reads back as v (as Rust prints an f64). */
static void add_double(struct render *r, enum fam f, const char *const *labels, double v)
{
    char buf[40];
    if (isnan(v))
        snprintf(buf, sizeof(buf), "NaN");
    else if (isinf(v))
        snprintf(buf, sizeof(buf), v > 0 ? "+Inf" : "-Inf");
    else
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof(buf), "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    add_sample(r, f, labels, buf);
}

static void add_item(struct render *r, enum fam f, const char *item, uint64_t v)
{
    const char *labels[] = {"item", item, NULL};
    add_u64(r, f, labels, v);
}

static void add_item2(struct render *r, enum fam f, const char *k, const char *kv, const char *item,
                      uint64_t v)
{
    const char *labels[] = {k, kv, "item", item, NULL};
    add_u64(r, f, labels, v);
}

/* ======================================================================================================
 * Reading /proc
 * ====================================================================================================== */

/* <proc>/<rel> into a malloc'd string; NULL (logged) when unreadable. */
static char *read_proc(const struct render *r, const char *rel)
{
    char path[512];
    char *s = NULL;
    ka_err e;
    snprintf(path, sizeof(path), "%s/%s", r->proc, rel);
    if (fs_read_file(path, &s, NULL, &e) < 0) {
        log_debug(SUB, "%s", e.msg);
        return NULL;
    }
    return s;
}

/* Next line of *cur (NUL-terminated in place), NULL at the end. */
static char *next_line(char **cur)
{
    char *s = *cur;
    if (!s || !*s)
        return NULL;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *cur = nl + 1;
    } else {
        *cur = s + strlen(s);
    }
    return s;
}

/* Up to max unsigned decimal fields from s; returns how many were read. */
static size_t parse_u64s(const char *s, uint64_t *out, size_t max)
{
    size_t n = 0;
    while (n < max) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!isdigit((unsigned char)*s))
            break;
        char *end;
        out[n++] = strtoull(s, &end, 10);
        s = end;
    }
    return n;
}

/* "Key:   123 kB" -> key (in place), value; kB is multiplied by 1024 when to_bytes. */
static bool split_kv(char *line, char **key, uint64_t *v, bool to_bytes)
{
    char *colon = strchr(line, ':');
    if (!colon)
        return false;
    *colon = '\0';
    *key = line;
    char *s = colon + 1, *end;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!isdigit((unsigned char)*s))
        return false;
    *v = strtoull(s, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (to_bytes && strncmp(end, "kB", 2) == 0)
        *v *= 1024;
    return true;
}

/* ---- the agent process ---- */

static void agent_stat(struct render *r)
{
    cleanup_free char *s = read_proc(r, "self/stat");
    char *p = s ? strrchr(s, ')') : NULL;
    if (!p)
        return;
    /* after "pid (comm)": field 3 state, then 4.. ; utime is 14, num_threads 20, vsize 23, rss 24 */
    char *tok, *save = NULL;
    int field = 3;
    uint64_t utime = 0, stime = 0, vsize = 0, threads = 0;
    int64_t cutime = 0, cstime = 0, rss = 0;
    for (tok = strtok_r(p + 1, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save), field++) {
        switch (field) {
        case 14:
            utime = strtoull(tok, NULL, 10);
            break;
        case 15:
            stime = strtoull(tok, NULL, 10);
            break;
        case 16:
            cutime = strtoll(tok, NULL, 10);
            break;
        case 17:
            cstime = strtoll(tok, NULL, 10);
            break;
        case 20:
            threads = strtoull(tok, NULL, 10);
            break;
        case 23:
            vsize = strtoull(tok, NULL, 10);
            break;
        case 24:
            rss = strtoll(tok, NULL, 10);
            break;
        default:
            break;
        }
    }
    if (field <= 24)
        return; /* truncated */
    add_double(r, F_AGENT_TOTAL_TIME, NULL, (double)(utime + stime) / (double)r->tck);
    add_u64(r, F_AGENT_TOTAL_VM, NULL, vsize);
    add_i64(r, F_AGENT_TOTAL_RSS, NULL, rss * (int64_t)r->page);
    add_u64(r, F_AGENT_THREADS, NULL, threads);
    const char *lu[] = {"item", "utime", NULL}, *ls[] = {"item", "stime", NULL};
    const char *lcu[] = {"item", "cutime", NULL}, *lcs[] = {"item", "cstime", NULL};
    add_u64(r, F_AGENT_PROC_STAT, lu, utime);
    add_u64(r, F_AGENT_PROC_STAT, ls, stime);
    add_i64(r, F_AGENT_PROC_STAT, lcu, cutime);
    add_i64(r, F_AGENT_PROC_STAT, lcs, cstime);
}

static const char *const status_keys[][2] = {
    {"VmPeak", "vmpeak"},
    {"VmSize", "vmsize"},
    {"VmLck", "vmlck"},
    {"VmPin", "vmpin"},
    {"VmHWM", "vmhwm"},
    {"VmRSS", "vmrss"},
    {"RssAnon", "rssanon"},
    {"RssFile", "rssfile"},
    {"RssShmem", "rssshmem"},
    {"VmData", "vmdata"},
    {"VmStk", "vmstk"},
    {"VmExe", "vmexe"},
    {"VmLib", "vmlib"},
    {"VmPTE", "vmpte"},
    {"VmSwap", "vmswap"},
    {"HugetlbPages", "hugetlbpages"},
    {"voluntary_ctxt_switches", "voluntary_ctxt_switches"},
    {"nonvoluntary_ctxt_switches", "nonvoluntary_ctxt_switches"},
};

/* Every item, 0 when absent (as upstream's unwrap_or(0)); values as the file has them (kB). */
static void agent_status(struct render *r)
{
    cleanup_free char *s = read_proc(r, "self/status");
    uint64_t vals[ARRAY_SIZE(status_keys)] = {0};
    if (!s)
        return;
    char *cur = s, *line, *key;
    uint64_t v;
    while ((line = next_line(&cur)))
        if (split_kv(line, &key, &v, false))
            for (size_t i = 0; i < ARRAY_SIZE(status_keys); i++)
                if (strcmp(key, status_keys[i][0]) == 0)
                    vals[i] = v;
    for (size_t i = 0; i < ARRAY_SIZE(status_keys); i++)
        add_item(r, F_AGENT_PROC_STATUS, status_keys[i][1], vals[i]);
}

static void agent_io(struct render *r)
{
    static const char *const keys[] = {
        "rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes"};
    cleanup_free char *s = read_proc(r, "self/io");
    uint64_t vals[ARRAY_SIZE(keys)] = {0};
    if (!s)
        return; /* no task I/O accounting in this kernel */
    char *cur = s, *line, *key;
    uint64_t v;
    while ((line = next_line(&cur)))
        if (split_kv(line, &key, &v, false))
            for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
                if (strcmp(key, keys[i]) == 0)
                    vals[i] = v;
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        add_item(r, F_AGENT_IO_STAT, keys[i], vals[i]);
}

static void agent_fds(struct render *r)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/self/fd", r->proc);
    DIR *d = opendir(path);
    if (!d)
        return;
    uint64_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    add_u64(r, F_AGENT_FDS, NULL, n ? n - 1 : 0); /* without the directory's own fd */
}

/* ---- the guest ---- */

static void guest_load(struct render *r)
{
    cleanup_free char *s = read_proc(r, "loadavg");
    double l1, l5, l15;
    unsigned long long cur, max;
    if (!s || sscanf(s, "%lf %lf %lf %llu/%llu", &l1, &l5, &l15, &cur, &max) != 5)
        return;
    const char *a[] = {"item", "load1", NULL}, *b[] = {"item", "load5", NULL},
               *c[] = {"item", "load15", NULL};
    add_double(r, F_GUEST_LOAD, a, l1);
    add_double(r, F_GUEST_LOAD, b, l5);
    add_double(r, F_GUEST_LOAD, c, l15);
    add_item(r, F_GUEST_TASKS, "cur", cur);
    add_item(r, F_GUEST_TASKS, "max", max);
}

/* "cpu" (total) and "cpuN" lines, in milliseconds; the label is the CPU's number (upstream: its index). */
static void guest_cpu_time(struct render *r)
{
    static const char *const items[] = {"user", "nice",    "system", "idle",  "iowait",
                                        "irq",  "softirq", "steal",  "guest", "guest_nice"};
    cleanup_free char *s = read_proc(r, "stat");
    char *cur = s, *line;
    while ((line = next_line(&cur))) {
        if (strncmp(line, "cpu", 3) != 0)
            continue;
        char *rest = line + 3, label[24];
        if (*rest == ' ') {
            snprintf(label, sizeof(label), "total");
        } else {
            char *end;
            unsigned long n = strtoul(rest, &end, 10);
            if (end == rest || *end != ' ')
                continue;
            snprintf(label, sizeof(label), "%lu", n);
            rest = end;
        }
        uint64_t v[ARRAY_SIZE(items)] = {0};
        parse_u64s(rest, v, ARRAY_SIZE(items));
        for (size_t i = 0; i < ARRAY_SIZE(items); i++)
            add_item2(r, F_GUEST_CPU_TIME, "cpu", label, items[i], v[i] * 1000 / (uint64_t)r->tck);
    }
}

static void guest_vmstat(struct render *r)
{
    cleanup_free char *s = read_proc(r, "vmstat");
    char *cur = s, *line;
    while ((line = next_line(&cur))) {
        char *sp = strchr(line, ' ');
        uint64_t v;
        if (!sp || sp == line)
            continue;
        *sp = '\0';
        if (parse_u64s(sp + 1, &v, 1) == 1)
            add_item(r, F_GUEST_VM_STAT, line, v);
    }
}

static void guest_netdev(struct render *r)
{
    static const char *const items[] = {"recv_bytes", "recv_packets", "recv_errs",       "recv_drop",
                                        "recv_fifo",  "recv_frame",   "recv_compressed", "recv_multicast",
                                        "sent_bytes", "sent_packets", "sent_errs",       "sent_drop",
                                        "sent_fifo",  "sent_colls",   "sent_carrier",    "sent_compressed"};
    cleanup_free char *s = read_proc(r, "net/dev");
    char *cur = s, *line;
    while ((line = next_line(&cur))) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue; /* the two header lines */
        *colon = '\0';
        while (*line == ' ')
            line++;
        uint64_t v[ARRAY_SIZE(items)] = {0};
        if (!*line || parse_u64s(colon + 1, v, ARRAY_SIZE(items)) != ARRAY_SIZE(items))
            continue;
        for (size_t i = 0; i < ARRAY_SIZE(items); i++)
            add_item2(r, F_GUEST_NETDEV_STAT, "interface", line, items[i], v[i]);
    }
}

static void guest_diskstats(struct render *r)
{
    static const char *const items[] = {"reads",
                                        "merged",
                                        "sectors_read",
                                        "time_reading",
                                        "writes",
                                        "writes_merged",
                                        "sectors_written",
                                        "time_writing",
                                        "in_progress",
                                        "time_in_progress",
                                        "weighted_time_in_progress",
                                        "discards",
                                        "discards_merged",
                                        "sectors_discarded",
                                        "time_discarding",
                                        "flushes",
                                        "time_flushing"};
    cleanup_free char *s = read_proc(r, "diskstats");
    char *cur = s, *line;
    while ((line = next_line(&cur))) {
        unsigned maj, min;
        char name[64];
        int off = 0;
        if (sscanf(line, " %u %u %63s %n", &maj, &min, name, &off) != 3 || !off)
            continue;
        uint64_t v[ARRAY_SIZE(items)] = {0};
        if (parse_u64s(line + off, v, ARRAY_SIZE(items)) < 11)
            continue; /* older kernels have 11 fields, then 15, then 17 */
        for (size_t i = 0; i < ARRAY_SIZE(items); i++)
            add_item2(r, F_GUEST_DISKSTAT, "disk", name, items[i], v[i]);
    }
}

static const char *const meminfo_keys[][2] = {
    {"MemTotal", "mem_total"},
    {"MemFree", "mem_free"},
    {"MemAvailable", "mem_available"},
    {"Buffers", "buffers"},
    {"Cached", "cached"},
    {"SwapCached", "swap_cached"},
    {"Active", "active"},
    {"Inactive", "inactive"},
    {"Active(anon)", "active_anon"},
    {"Inactive(anon)", "inactive_anon"},
    {"Active(file)", "active_file"},
    {"Inactive(file)", "inactive_file"},
    {"Unevictable", "unevictable"},
    {"Mlocked", "mlocked"},
    {"HighTotal", "high_total"},
    {"HighFree", "high_free"},
    {"LowTotal", "low_total"},
    {"LowFree", "low_free"},
    {"MmapCopy", "mmap_copy"},
    {"SwapTotal", "swap_total"},
    {"SwapFree", "swap_free"},
    {"Dirty", "dirty"},
    {"Writeback", "writeback"},
    {"AnonPages", "anon_pages"},
    {"Mapped", "mapped"},
    {"Shmem", "shmem"},
    {"Slab", "slab"},
    {"SReclaimable", "s_reclaimable"},
    {"SUnreclaim", "s_unreclaim"},
    {"KernelStack", "kernel_stack"},
    {"PageTables", "page_tables"},
    {"Quicklists", "quicklists"},
    {"NFS_Unstable", "nfs_unstable"},
    {"Bounce", "bounce"},
    {"WritebackTmp", "writeback_tmp"},
    {"CommitLimit", "commit_limit"},
    {"Committed_AS", "committed_as"},
    {"VmallocTotal", "vmalloc_total"},
    {"VmallocUsed", "vmalloc_used"},
    {"VmallocChunk", "vmalloc_chunk"},
    {"HardwareCorrupted", "hardware_corrupted"},
    {"AnonHugePages", "anon_hugepages"},
    {"ShmemHugePages", "shmem_hugepages"},
    {"ShmemPmdMapped", "shmem_pmd_mapped"},
    {"CmaTotal", "cma_total"},
    {"CmaFree", "cma_free"},
    {"HugePages_Total", "hugepages_total"},
    {"HugePages_Free", "hugepages_free"},
    {"HugePages_Rsvd", "hugepages_rsvd"},
    {"HugePages_Surp", "hugepages_surp"},
    {"Hugepagesize", "hugepagesize"},
    {"DirectMap4k", "direct_map_4k"},
    {"DirectMap4M", "direct_map_4M"},
    {"DirectMap2M", "direct_map_2M"},
    {"DirectMap1G", "direct_map_1G"},
    {"Hugetlb", "hugetlb"},
    {"Percpu", "per_cpu"},
    {"KReclaimable", "k_reclaimable"},
};

/* Every item, 0 when absent; kB values in bytes (as the procfs crate upstream uses reports them). */
static void guest_meminfo(struct render *r)
{
    cleanup_free char *s = read_proc(r, "meminfo");
    uint64_t vals[ARRAY_SIZE(meminfo_keys)] = {0};
    if (!s)
        return;
    char *cur = s, *line, *key;
    uint64_t v;
    while ((line = next_line(&cur)))
        if (split_kv(line, &key, &v, true))
            for (size_t i = 0; i < ARRAY_SIZE(meminfo_keys); i++)
                if (strcmp(key, meminfo_keys[i][0]) == 0)
                    vals[i] = v;
    for (size_t i = 0; i < ARRAY_SIZE(meminfo_keys); i++)
        add_item(r, F_GUEST_MEMINFO, meminfo_keys[i][1], vals[i]);
}

/* ======================================================================================================
 * Output
 * ====================================================================================================== */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void render_free(struct render *r)
{
    for (int f = 0; f < F_COUNT; f++) {
        for (size_t i = 0; i < r->fam[f].n; i++)
            free(r->fam[f].v[i]);
        free(r->fam[f].v);
    }
}

static int emit(struct render *r, struct kbuf *out, ka_err *e)
{
    for (int f = 0; f < F_COUNT; f++) {
        struct family *fm = &r->fam[f];
        if (!fm->n)
            continue; /* as the Rust registry: a family without samples is not printed */
        qsort(fm->v, fm->n, sizeof(*fm->v), cmp_str);
        char head[256];
        int hn = snprintf(head, sizeof(head), "# HELP %s %s\n# TYPE %s %s\n", fam_def[f].name,
                          fam_def[f].help, fam_def[f].name, fam_def[f].type);
        if (kbuf_append(out, head, (size_t)hn) < 0)
            return ka_fail_errno(e, ENOMEM, "metrics");
        size_t nl = strlen(fam_def[f].name);
        for (size_t i = 0; i < fm->n; i++) {
            if (kbuf_append(out, fam_def[f].name, nl) < 0 ||
                kbuf_append(out, fm->v[i], strlen(fm->v[i])) < 0 || kbuf_append(out, "\n", 1) < 0)
                return ka_fail_errno(e, ENOMEM, "metrics");
            if (out->len > METRICS_MAX)
                return ka_fail(e, KA_RESOURCE_EXHAUSTED, "metrics text exceeds %zu bytes", METRICS_MAX);
        }
    }
    return 0;
}

int metrics_render(const char *proc_root, uint64_t scrape_count, char **out, size_t *len, ka_err *e)
{
    struct render r = {.proc = proc_root, .tck = sysconf(_SC_CLK_TCK), .page = sysconf(_SC_PAGESIZE)};
    struct kbuf b = {0};
    if (r.tck <= 0)
        r.tck = 100;
    if (r.page <= 0)
        r.page = 4096;
    add_u64(&r, F_AGENT_SCRAPE_COUNT, NULL, scrape_count);
    agent_stat(&r);
    agent_status(&r);
    agent_io(&r);
    agent_fds(&r);
    guest_load(&r);
    guest_cpu_time(&r);
    guest_vmstat(&r);
    guest_netdev(&r);
    guest_diskstats(&r);
    guest_meminfo(&r);
    int rc = r.oom ? ka_fail_errno(e, ENOMEM, "metrics") : emit(&r, &b, e);
    render_free(&r);
    if (rc == 0 && kbuf_append(&b, "", 1) < 0)
        rc = ka_fail_errno(e, ENOMEM, "metrics");
    if (rc < 0) {
        kbuf_free(&b);
        return -1;
    }
    *out = (char *)b.data;
    *len = b.len - 1;
    return 0;
}
