/* CopyFile benchmark client: sends a file to kata-agent in chunks, as the Kata runtime does, with W requests
 * in flight, and prints the throughput.
 *   copyfile_client -s SOCK -f SRC -p GUEST_PATH [-c CHUNK_BYTES] [-w WINDOW] [-m writev|queue]
 * -m queue builds each request with protobuf-c and ttrpc_client_queue/flush (two copies of the chunk in the
 * client); -m writev (default) encodes the small request prefix by hand and writev()s the chunk straight from
 * the mmap'd source, so the client copies nothing and the agent's side is what is measured.
 * Prints one line: "mode=... bytes=N seconds=S mib_s=M". */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "ttrpc/addr.h"
#include "ttrpc/client.h"

static const char SVC[] = "grpc.AgentService", METHOD[] = "CopyFile";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t put_bytes_hdr(uint8_t *p, unsigned field, size_t len)
{
    size_t n = put_varint(p, (uint64_t)field << 3 | 2);
    return n + put_varint(p + n, len);
}

static size_t put_int(uint8_t *p, unsigned field, uint64_t v)
{
    size_t n = put_varint(p, (uint64_t)field << 3);
    return n + put_varint(p + n, v);
}

/* Frame header + Request envelope + CopyFileRequest up to the data bytes, which follow in the frame. */
static size_t encode_prefix(uint8_t *out, uint32_t stream, const char *path, uint64_t size, uint64_t off,
                            size_t len)
{
    uint8_t req[512], env[600];
    size_t r = 0, e = 0, plen = strlen(path);
    r += put_bytes_hdr(req + r, 1, plen);
    memcpy(req + r, path, plen);
    r += plen;
    r += put_int(req + r, 2, size);
    r += put_int(req + r, 3, 0100644);
    r += put_int(req + r, 4, 0750);
    if (off)
        r += put_int(req + r, 7, off);
    r += put_bytes_hdr(req + r, 8, len);
    size_t payload_len = r + len;
    e += put_bytes_hdr(env + e, 1, sizeof(SVC) - 1);
    memcpy(env + e, SVC, sizeof(SVC) - 1);
    e += sizeof(SVC) - 1;
    e += put_bytes_hdr(env + e, 2, sizeof(METHOD) - 1);
    memcpy(env + e, METHOD, sizeof(METHOD) - 1);
    e += sizeof(METHOD) - 1;
    e += put_bytes_hdr(env + e, 3, payload_len);
    struct ttrpc_hdr h = {.len = (uint32_t)(e + payload_len), .stream = stream, .type = TTRPC_REQUEST};
    ttrpc_hdr_encode(out, &h);
    memcpy(out + TTRPC_HDR_LEN, env, e);
    memcpy(out + TTRPC_HDR_LEN + e, req, r);
    return TTRPC_HDR_LEN + e + r;
}

static int send_writev(struct ttrpc_client *c, const char *path, const uint8_t *src, uint64_t size,
                       uint64_t off, size_t len)
{
    uint8_t prefix[1200];
    size_t n = encode_prefix(prefix, c->next_stream, path, size, off, len);
    c->next_stream += 2;
    struct iovec iov[2] = {{prefix, n}, {(void *)(src + off), len}};
    while (iov[0].iov_len + iov[1].iov_len) {
        ssize_t w = writev(c->fd, iov[0].iov_len ? iov : iov + 1, iov[0].iov_len ? 2 : 1);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        size_t k = (size_t)w;
        for (int i = 0; i < 2 && k; i++) {
            size_t d = k < iov[i].iov_len ? k : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + d;
            iov[i].iov_len -= d;
            k -= d;
        }
    }
    return 0;
}

static int send_queue(struct ttrpc_client *c, const char *path, const uint8_t *src, uint64_t size,
                      uint64_t off, size_t len)
{
    Grpc__CopyFileRequest r = GRPC__COPY_FILE_REQUEST__INIT;
    uint32_t stream;
    ka_err e;
    r.path = (char *)path;
    r.file_size = (int64_t)size;
    r.file_mode = 0100644;
    r.dir_mode = 0750;
    r.offset = (int64_t)off;
    r.data.data = (uint8_t *)(src + off);
    r.data.len = len;
    if (ttrpc_client_queue(c, SVC, METHOD, &r.base, 0, &stream, &e) < 0 || ttrpc_client_flush(c, &e) < 0) {
        fprintf(stderr, "copyfile_client: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int recv_ok(struct ttrpc_client *c)
{
    struct ttrpc_result res;
    ka_err e;
    if (ttrpc_client_recv(c, &res, 0, &e) < 0) {
        fprintf(stderr, "copyfile_client: %s\n", e.msg);
        return -1;
    }
    int rc = res.code == 0 ? 0 : -1;
    if (rc)
        fprintf(stderr, "copyfile_client: status %d: %s\n", res.code, res.message ? res.message : "");
    ttrpc_result_free(&res);
    return rc;
}

static int dial(const char *sock, struct ttrpc_client *c)
{
    struct ka_addr a;
    ka_err e;
    char uri[512];
    snprintf(uri, sizeof(uri), "unix://%s", sock);
    int fd = ka_addr_parse(uri, &a, &e) < 0 ? -1 : ka_addr_dial(&a, 2000, &e);
    if (fd < 0) {
        fprintf(stderr, "copyfile_client: %s\n", e.msg);
        return -1;
    }
    ttrpc_client_init(c, fd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *src_path = NULL, *path = NULL, *mode = "writev";
    size_t chunk = 1 << 20;
    int window = 16, opt;
    while ((opt = getopt(argc, argv, "s:f:p:c:w:m:")) != -1) {
        switch (opt) {
        case 's':
            sock = optarg;
            break;
        case 'f':
            src_path = optarg;
            break;
        case 'p':
            path = optarg;
            break;
        case 'c':
            chunk = strtoul(optarg, NULL, 0);
            break;
        case 'w':
            window = atoi(optarg);
            break;
        case 'm':
            mode = optarg;
            break;
        default:
            return 2;
        }
    }
    if (!sock || !src_path || !path || !chunk || window < 1 || strlen(path) > 400) {
        fprintf(
            stderr,
            "usage: copyfile_client -s SOCK -f SRC -p GUEST_PATH [-c CHUNK] [-w WINDOW] [-m writev|queue]\n");
        return 2;
    }
    int fd = open(src_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(src_path);
        return 1;
    }
    uint64_t size = (uint64_t)st.st_size;
    const uint8_t *src =
        size ? mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0) : (const uint8_t *)"";
    if (src == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct ttrpc_client c;
    if (dial(sock, &c) < 0)
        return 1;
    bool use_queue = strcmp(mode, "queue") == 0;
    double t0 = now_s();
    uint64_t off = 0;
    int in_flight = 0;
    do {
        size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
        int rc = use_queue ? send_queue(&c, path, src, size, off, len)
                           : send_writev(&c, path, src, size, off, len);
        if (rc < 0 || (++in_flight >= window && recv_ok(&c) < 0))
            return 1;
        if (in_flight >= window)
            in_flight--;
        off += len;
    } while (off < size);
    for (; in_flight > 0; in_flight--)
        if (recv_ok(&c) < 0)
            return 1;
    double secs = now_s() - t0;
    printf("mode=%s bytes=%llu seconds=%.4f mib_s=%.1f\n", mode, (unsigned long long)size, secs,
           (double)size / (1 << 20) / secs);
    ttrpc_client_close(&c);
    return 0;
}
