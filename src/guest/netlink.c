/* rtnetlink for the network RPCs: bounded dumps of links, addresses and routes, batched changes. */
#include "netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "nlmsg.h"

/* ======================================================================================================
 * Pure parsing and formatting
 * ====================================================================================================== */

const char *nl_quote(const char *s, char out[72])
{
    size_t i = 0;
    for (; s[i] && i < 64; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int nl_parse_mac(const char *s, uint8_t mac[6], ka_err *e)
{
    const char *p = s;
    char q[72];
    for (int i = 0; i < 6; i++) {
        int v = 0, digits = 0;
        for (; hexval(*p) >= 0 && digits < 3; p++, digits++)
            v = v * 16 + hexval(*p);
        if (digits == 0 || digits > 2)
            goto bad;
        mac[i] = (uint8_t)v;
        if (i < 5 && *p++ != ':')
            goto bad;
    }
    if (*p == '\0')
        return 0;
bad:
    return ka_fail(e, KA_INVALID_ARGUMENT, "invalid MAC address \"%s\"", nl_quote(s, q));
}

int nl_parse_ip(const char *s, struct nl_ip *ip, ka_err *e)
{
    char q[72];
    memset(ip, 0, sizeof(*ip));
    if (strlen(s) < NL_IP_TEXT) {
        if (inet_pton(AF_INET, s, ip->addr) == 1) {
            ip->family = AF_INET;
            ip->prefix = 32;
            return 0;
        }
        if (inet_pton(AF_INET6, s, ip->addr) == 1) {
            ip->family = AF_INET6;
            ip->prefix = 128;
            return 0;
        }
    }
    return ka_fail(e, KA_INVALID_ARGUMENT, "invalid IP address \"%s\"", nl_quote(s, q));
}

int nl_parse_prefix(const char *s, int family, uint8_t *prefix, ka_err *e)
{
    unsigned max = family == AF_INET6 ? 128 : 32, v = 0;
    size_t n = strlen(s);
    char q[72];
    bool ok = n >= 1 && n <= 3;
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (!ok || v > max)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid prefix length \"%s\" (0-%u)", nl_quote(s, q), max);
    *prefix = (uint8_t)v;
    return 0;
}

int nl_parse_cidr(const char *s, bool bare_prefix_full, struct nl_ip *ip, ka_err *e)
{
    char addr[NL_IP_TEXT], q[72];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n >= sizeof(addr))
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid CIDR \"%s\"", nl_quote(s, q));
    memcpy(addr, s, n);
    addr[n] = '\0';
    if (nl_parse_ip(addr, ip, e) < 0 || (slash && nl_parse_prefix(slash + 1, ip->family, &ip->prefix, e) < 0))
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid CIDR \"%s\"", nl_quote(s, q));
    if (!slash && !bare_prefix_full)
        ip->prefix = 0;
    return 0;
}

int nl_check_ifname(const char *s, ka_err *e)
{
    size_t n = strlen(s);
    char q[72];
    bool ok = n >= 1 && n < IFNAMSIZ && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = s[i] > 0x20 && s[i] < 0x7f && s[i] != '/' && s[i] != ':' && s[i] != '%';
    if (!ok)
        return ka_fail(e, KA_INVALID_ARGUMENT, "invalid interface name \"%s\"", nl_quote(s, q));
    return 0;
}

const char *nl_format_hwaddr(const uint8_t *hw, size_t len, char out[NL_HW_TEXT])
{
    out[0] = '\0';
    if (len == 6)
        snprintf(out, NL_HW_TEXT, "%02X:%02X:%02X:%02X:%02X:%02X", hw[0], hw[1], hw[2], hw[3], hw[4], hw[5]);
    else if (len == 4)
        inet_ntop(AF_INET, hw, out, NL_HW_TEXT);
    else if (len == 16)
        inet_ntop(AF_INET6, hw, out, NL_HW_TEXT);
    return out;
}

const char *nl_format_ip(const struct nl_ip *ip, char out[NL_IP_TEXT])
{
    out[0] = '\0';
    if (ip->family == AF_INET || ip->family == AF_INET6)
        inet_ntop(ip->family, ip->addr, out, NL_IP_TEXT);
    return out;
}

const char *nl_format_cidr(const struct nl_ip *ip, char out[NL_CIDR_TEXT])
{
    char a[NL_IP_TEXT];
    snprintf(out, NL_CIDR_TEXT, "%s/%u", nl_format_ip(ip, a), ip->prefix);
    return out;
}

static size_t ip_len(int family)
{
    return family == AF_INET6 ? 16 : 4;
}

/* ======================================================================================================
 * The socket: dumps, and batches of acknowledged requests
 * ====================================================================================================== */

#define NL_TX_SIZE    (32 * 1024)
#define NL_RX_SIZE    (64 * 1024) /* > the kernel's largest dump skb (32 KiB) */
#define NL_MSG_MAX    512         /* room kept free for the next request (ours are under 200 bytes) */
#define NL_BATCH_MSGS 256         /* so their acknowledgements fit the socket's receive buffer */
#define NL_TIMEOUT_S  10          /* receive timeout */

/* What a queued request was, for the error message: kind and the caller's index. */
enum nl_kind { K_LINK_DOWN, K_ADDR_DEL, K_ADDR_ADD, K_LINK_SET, K_ROUTE_DEL, K_ROUTE_ADD, K_NEIGH_ADD };

struct nl {
    int fd;
    uint32_t portid, seq;
    char *tx, *rx;
    size_t tx_len;
    struct nlmsghdr *last; /* queued, length not yet counted in tx_len */
    uint32_t seq0;         /* of the first queued request */
    unsigned n;
    struct {
        uint8_t kind;
        int ignore; /* errno that counts as success */
        size_t index;
    } q[NL_BATCH_MSGS];
    /* the first failed request */
    int err;
    uint8_t err_kind;
    size_t err_index;
    char err_text[200]; /* the kernel's extended ack message */
};

static void nl_close(struct nl *nl)
{
    if (nl->fd >= 0)
        close(nl->fd);
    free(nl->tx);
    free(nl->rx);
    nl->fd = -1;
    nl->tx = nl->rx = NULL;
}

#define cleanup_nl __attribute__((cleanup(nl_close)))

static int nl_open(struct nl *nl, ka_err *e)
{
    int one = 1;
    memset(nl, 0, sizeof(*nl));
    nl->fd = -1;
    nl->tx = malloc(NL_TX_SIZE);
    nl->rx = malloc(NL_RX_SIZE);
    if (!nl->tx || !nl->rx)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "out of memory");
    nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl->fd < 0)
        return ka_fail_errno(e, errno, "open rtnetlink socket");
    /* short acknowledgements with the kernel's error text; older kernels simply lack them */
    setsockopt(nl->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
    setsockopt(nl->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    /* the kernel answers at once; a bug must not hang the event loop forever */
    struct timeval tv = {.tv_sec = NL_TIMEOUT_S};
    setsockopt(nl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    socklen_t sl = sizeof(sa);
    if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(nl->fd, (struct sockaddr *)&sa, &sl) < 0)
        return ka_fail_errno(e, errno, "bind rtnetlink socket");
    nl->portid = sa.nl_pid;
    nl->seq = 1;
    return 0;
}

static int nl_send(struct nl *nl, const void *buf, size_t len)
{
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t r = sendto(nl->fd, buf, len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
    return r == (ssize_t)len ? 0 : -1;
}

/* One datagram from the kernel into nl->rx; a truncated one is an error (ENOSPC), EINTR is retried. */
static ssize_t nl_recv(struct nl *nl)
{
    for (;;) {
        struct sockaddr_nl from;
        socklen_t fl = sizeof(from);
        ssize_t r = recvfrom(nl->fd, nl->rx, NL_RX_SIZE, MSG_TRUNC, (struct sockaddr *)&from, &fl);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > NL_RX_SIZE) {
            errno = ENOSPC;
            return -1;
        }
        if (r >= 0 && from.nl_pid != 0) /* only the kernel talks to this socket */
            continue;
        return r;
    }
}

/* The NLMSGERR_ATTR_MSG of an error acknowledgement, if the kernel sent one. */
static void ext_ack_text(const struct nlmsghdr *h, char *out, size_t n)
{
    const struct nlmsgerr *er = nlm_payload(h);
    size_t len = nlm_payload_len(h), off = sizeof(*er);
    out[0] = '\0';
    if (len < sizeof(*er) || !(h->nlmsg_flags & NLM_F_ACK_TLVS))
        return;
    if (!(h->nlmsg_flags & NLM_F_CAPPED))
        off += er->msg.nlmsg_len > sizeof(er->msg) ? er->msg.nlmsg_len - sizeof(er->msg) : 0;
    if (off >= len)
        return;
    const struct nlattr *tb[NLMSGERR_ATTR_MSG + 1];
    nla_parse((const char *)er + off, len - off, tb, NLMSGERR_ATTR_MSG);
    const char *msg = tb[NLMSGERR_ATTR_MSG] ? nla_str(tb[NLMSGERR_ATTR_MSG]) : NULL;
    if (!msg)
        return;
    snprintf(out, n, "%s", msg);
    for (char *p = out; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            *p = '?';
}

static void nl_commit(struct nl *nl)
{
    if (nl->last) {
        nl->tx_len += NLMSG_ALIGN(nl->last->nlmsg_len);
        nl->last = NULL;
    }
}

/* Send the queued requests and collect one acknowledgement each; the first failure is kept in nl. */
static int nl_flush(struct nl *nl, ka_err *e)
{
    nl_commit(nl);
    unsigned n = nl->n, acked = 0;
    uint32_t seq0 = nl->seq0;
    size_t len = nl->tx_len;
    nl->n = 0;
    nl->tx_len = 0;
    if (n == 0)
        return 0;
    if (nl_send(nl, nl->tx, len) < 0)
        return ka_fail_errno(e, errno, "rtnetlink send");
    while (acked < n) {
        ssize_t r = nl_recv(nl);
        if (r < 0)
            return ka_fail_errno(e, errno, "rtnetlink receive");
        size_t left = (size_t)r;
        for (const struct nlmsghdr *h = (void *)nl->rx; nlm_ok(h, left); h = nlm_next(h, &left)) {
            uint32_t i = h->nlmsg_seq - seq0;
            if (h->nlmsg_type != NLMSG_ERROR || i >= n)
                continue;
            acked++;
            int code = EPROTO;
            if (nlm_payload_len(h) >= sizeof(struct nlmsgerr))
                code = -((const struct nlmsgerr *)nlm_payload(h))->error;
            if (code == 0 || code == nl->q[i].ignore || nl->err)
                continue;
            nl->err = code;
            nl->err_kind = nl->q[i].kind;
            nl->err_index = nl->q[i].index;
            ext_ack_text(h, nl->err_text, sizeof(nl->err_text));
        }
    }
    if (!nl->err)
        return 0;
    if (nl->err_text[0])
        ka_fail(e, KA_INTERNAL, "%s (%s)", strerror(nl->err), nl->err_text);
    else
        ka_fail(e, KA_INTERNAL, "%s", strerror(nl->err));
    e->errnum = nl->err;
    return -1;
}

/* A new request at the end of the batch (sent first if the batch is full). */
static struct nlmsghdr *nl_queue(struct nl *nl, uint16_t type, uint16_t flags, enum nl_kind kind,
                                 size_t index, int ignore, ka_err *e)
{
    nl_commit(nl);
    if ((nl->n == NL_BATCH_MSGS || NL_TX_SIZE - nl->tx_len < NL_MSG_MAX) && nl_flush(nl, e) < 0)
        return NULL;
    struct nlmsghdr *h = nlm_put_header(nl->tx + nl->tx_len);
    h->nlmsg_type = type;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    h->nlmsg_seq = ++nl->seq;
    if (nl->n == 0)
        nl->seq0 = h->nlmsg_seq;
    nl->q[nl->n].kind = (uint8_t)kind;
    nl->q[nl->n].ignore = ignore;
    nl->q[nl->n].index = index;
    nl->n++;
    nl->last = h;
    return h;
}

/* State shared by the dump callbacks: a bound exceeded or memory exhausted stops the dump. */
struct dump_ctx {
    ka_err *e;
    bool failed;
};

/* A dump callback: 0 to go on, -1 (with ctx->failed set) to stop the dump. */
typedef int (*nl_dump_cb)(const struct nlmsghdr *h, void *ctx);

/* Send a dump request (already filled after its header) and feed every answer to cb until NLMSG_DONE. */
static int nl_dump(struct nl *nl, struct nlmsghdr *req, nl_dump_cb cb, struct dump_ctx *ctx, ka_err *e)
{
    req->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req->nlmsg_seq = ++nl->seq;
    if (nl_send(nl, req, req->nlmsg_len) < 0)
        return ka_fail_errno(e, errno, "rtnetlink dump request");
    for (;;) {
        ssize_t r = nl_recv(nl);
        if (r < 0)
            return ka_fail_errno(e, errno, "rtnetlink dump");
        size_t left = (size_t)r;
        for (const struct nlmsghdr *h = (void *)nl->rx; nlm_ok(h, left); h = nlm_next(h, &left)) {
            if (h->nlmsg_seq != req->nlmsg_seq || (h->nlmsg_pid && h->nlmsg_pid != nl->portid))
                continue; /* not an answer to this dump */
            if (h->nlmsg_type == NLMSG_DONE)
                return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                int code = EPROTO;
                if (nlm_payload_len(h) >= sizeof(struct nlmsgerr))
                    code = -((const struct nlmsgerr *)nlm_payload(h))->error;
                if (code == 0)
                    return 0;
                return ka_fail_errno(e, code, "rtnetlink dump%s", code == EINTR ? " interrupted" : "");
            }
            if (h->nlmsg_type < NLMSG_MIN_TYPE)
                continue; /* NOOP, OVERRUN */
            if (cb(h, ctx) < 0)
                return -1;
        }
    }
}

/* Attributes of a message after its family header of hdr_len bytes into tb[0..max] (later duplicates win). */
static void parse_attrs(const struct nlmsghdr *h, size_t hdr_len, const struct nlattr **tb, unsigned max)
{
    size_t off = NLMSG_ALIGN(hdr_len), len = nlm_payload_len(h);
    nla_parse((const char *)nlm_payload(h) + off, off < len ? len - off : 0, tb, max);
}

/* An address attribute of the right size for family into ip; false if absent or malformed. */
static bool attr_ip(const struct nlattr *a, int family, uint8_t prefix, struct nl_ip *ip)
{
    if (!a || nla_data_len(a) != ip_len(family))
        return false;
    memset(ip, 0, sizeof(*ip));
    ip->family = (uint8_t)family;
    ip->prefix = prefix;
    memcpy(ip->addr, nla_data(a), ip_len(family));
    return true;
}

static bool attr_u32(const struct nlattr *a, uint32_t *v)
{
    if (!a || nla_data_len(a) != sizeof(uint32_t))
        return false;
    memcpy(v, nla_data(a), sizeof(*v));
    return true;
}

/* Grow *v (elements of size sz) to hold one more than n, up to max elements. */
static int grow(void **v, size_t *cap, size_t n, size_t sz, size_t max, const char *what, ka_err *e)
{
    if (n < *cap)
        return 0;
    if (n >= max)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "more than %zu %s", max, what);
    size_t ncap = *cap ? *cap * 2 : 16;
    if (ncap > max)
        ncap = max;
    void *p = realloc(*v, ncap * sz);
    if (!p)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "out of memory");
    *v = p;
    *cap = ncap;
    return 0;
}

/* ======================================================================================================
 * Links and addresses
 * ====================================================================================================== */

struct link_dump {
    struct dump_ctx ctx;
    struct nl_link *v;
    size_t n, cap;
};

static int link_cb(const struct nlmsghdr *h, void *data)
{
    struct link_dump *d = data;
    const struct nlattr *tb[IFLA_MAX + 1];
    if (h->nlmsg_type != RTM_NEWLINK || nlm_payload_len(h) < sizeof(struct ifinfomsg))
        return 0;
    if (grow((void **)&d->v, &d->cap, d->n, sizeof(*d->v), NL_MAX_LINKS, "links", d->ctx.e) < 0) {
        d->ctx.failed = true;
        return -1;
    }
    const struct ifinfomsg *ifi = nlm_payload(h);
    struct nl_link *l = &d->v[d->n++];
    memset(l, 0, sizeof(*l));
    l->index = ifi->ifi_index;
    l->flags = ifi->ifi_flags;
    parse_attrs(h, sizeof(*ifi), tb, IFLA_MAX);
    const char *name = tb[IFLA_IFNAME] ? nla_str(tb[IFLA_IFNAME]) : NULL;
    if (name)
        snprintf(l->name, sizeof(l->name), "%s", name);
    attr_u32(tb[IFLA_MTU], &l->mtu);
    if (tb[IFLA_ADDRESS] && nla_data_len(tb[IFLA_ADDRESS]) <= NL_HWADDR_MAX) {
        l->hw_len = (uint8_t)nla_data_len(tb[IFLA_ADDRESS]);
        memcpy(l->hw, nla_data(tb[IFLA_ADDRESS]), l->hw_len);
    }
    return 0;
}

static int cmp_link_index(const void *a, const void *b)
{
    const struct nl_link *x = a, *y = b;
    return (x->index > y->index) - (x->index < y->index);
}

static int dump_links(struct nl *nl, struct nl_links *out, ka_err *e)
{
    char buf[128];
    struct nlmsghdr *h = nlm_put_header(buf);
    struct link_dump d = {.ctx = {.e = e}};
    h->nlmsg_type = RTM_GETLINK;
    struct ifinfomsg *ifi = nlm_put_extra(h, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    nla_put_u32(h, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    if (nl_dump(nl, h, link_cb, &d.ctx, e) < 0) {
        free(d.v);
        return ka_wrap(e, "list links");
    }
    if (d.n)
        qsort(d.v, d.n, sizeof(*d.v), cmp_link_index);
    out->v = d.v;
    out->n = d.n;
    return 0;
}

static struct nl_link *link_by_index(const struct nl_links *l, int index)
{
    struct nl_link key = {.index = index};
    return l->n ? bsearch(&key, l->v, l->n, sizeof(*l->v), cmp_link_index) : NULL;
}

static struct nl_link *link_by_name(const struct nl_links *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    return NULL;
}

/* One dumped address: local (IFA_LOCAL, else IFA_ADDRESS) and address (IFA_ADDRESS, else IFA_LOCAL). */
struct addr_rec {
    int index;
    struct nl_ip local, address;
};

struct addr_dump {
    struct dump_ctx ctx;
    int only_index; /* 0 = every link */
    struct addr_rec *v;
    size_t n, cap;
};

static int addr_cb(const struct nlmsghdr *h, void *data)
{
    struct addr_dump *d = data;
    const struct nlattr *tb[IFA_MAX + 1];
    if (h->nlmsg_type != RTM_NEWADDR || nlm_payload_len(h) < sizeof(struct ifaddrmsg))
        return 0;
    const struct ifaddrmsg *ifa = nlm_payload(h);
    if ((ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) ||
        (d->only_index && (int)ifa->ifa_index != d->only_index))
        return 0;
    parse_attrs(h, sizeof(*ifa), tb, IFA_MAX);
    struct addr_rec r = {.index = (int)ifa->ifa_index};
    bool has_local = attr_ip(tb[IFA_LOCAL], ifa->ifa_family, ifa->ifa_prefixlen, &r.local);
    bool has_addr = attr_ip(tb[IFA_ADDRESS], ifa->ifa_family, ifa->ifa_prefixlen, &r.address);
    if (!has_local && !has_addr)
        return 0;
    if (!has_local)
        r.local = r.address;
    if (!has_addr)
        r.address = r.local;
    if (grow((void **)&d->v, &d->cap, d->n, sizeof(*d->v), NL_MAX_ADDRS, "addresses", d->ctx.e) < 0) {
        d->ctx.failed = true;
        return -1;
    }
    d->v[d->n++] = r;
    return 0;
}

static int dump_addrs(struct nl *nl, struct addr_dump *d, ka_err *e)
{
    char buf[64];
    struct nlmsghdr *h = nlm_put_header(buf);
    h->nlmsg_type = RTM_GETADDR;
    struct ifaddrmsg *ifa = nlm_put_extra(h, sizeof(*ifa));
    ifa->ifa_family = AF_UNSPEC;
    d->ctx.e = e;
    if (nl_dump(nl, h, addr_cb, &d->ctx, e) < 0) {
        free(d->v);
        d->v = NULL;
        return ka_wrap(e, "list addresses");
    }
    return 0;
}

/* Group the dumped addresses by link (their dump order kept within a link). */
static int attach_addrs(struct nl_links *l, const struct addr_dump *d, ka_err *e)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++) {
        struct nl_link *k = link_by_index(l, d->v[i].index);
        if (k) {
            k->n_addrs++;
            n++;
        }
    }
    l->addrs = calloc(n ? n : 1, sizeof(*l->addrs));
    if (!l->addrs)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "out of memory");
    size_t pos = 0;
    for (size_t i = 0; i < l->n; i++) {
        l->v[i].first_addr = pos;
        pos += l->v[i].n_addrs;
        l->v[i].n_addrs = 0;
    }
    for (size_t i = 0; i < d->n; i++) {
        struct nl_link *k = link_by_index(l, d->v[i].index);
        if (k)
            l->addrs[k->first_addr + k->n_addrs++] = d->v[i].local;
    }
    l->n_addrs = n;
    return 0;
}

void nl_links_free(struct nl_links *l)
{
    free(l->v);
    free(l->addrs);
    memset(l, 0, sizeof(*l));
}

int nl_list_links(struct nl_links *out, bool with_addrs, ka_err *e)
{
    cleanup_nl struct nl nl = {.fd = -1};
    struct addr_dump d = {0};
    memset(out, 0, sizeof(*out));
    if (nl_open(&nl, e) < 0 || dump_links(&nl, out, e) < 0)
        return -1;
    if (with_addrs && (dump_addrs(&nl, &d, e) < 0 || attach_addrs(out, &d, e) < 0)) {
        free(d.v);
        nl_links_free(out);
        return -1;
    }
    free(d.v);
    return 0;
}

/* Queue RTM_DELADDR for a dumped address. */
static int queue_addr_del(struct nl *nl, const struct addr_rec *a, size_t i, ka_err *e)
{
    struct nlmsghdr *h = nl_queue(nl, RTM_DELADDR, 0, K_ADDR_DEL, i, EADDRNOTAVAIL, e);
    if (!h)
        return -1;
    struct ifaddrmsg *ifa = nlm_put_extra(h, sizeof(*ifa));
    ifa->ifa_family = a->local.family;
    ifa->ifa_prefixlen = a->local.prefix;
    ifa->ifa_index = (unsigned)a->index;
    nla_put(h, IFA_LOCAL, ip_len(a->local.family), a->local.addr);
    nla_put(h, IFA_ADDRESS, ip_len(a->address.family), a->address.addr);
    return 0;
}

/* Queue RTM_NEWADDR; IPv4 gets the broadcast address of its subnet as `ip addr add ... brd +`. */
static int queue_addr_add(struct nl *nl, int index, const struct nl_ip *ip, size_t i, ka_err *e)
{
    struct nlmsghdr *h = nl_queue(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, K_ADDR_ADD, i, EEXIST, e);
    if (!h)
        return -1;
    struct ifaddrmsg *ifa = nlm_put_extra(h, sizeof(*ifa));
    ifa->ifa_family = ip->family;
    ifa->ifa_prefixlen = ip->prefix;
    ifa->ifa_index = (unsigned)index;
    nla_put(h, IFA_LOCAL, ip_len(ip->family), ip->addr);
    nla_put(h, IFA_ADDRESS, ip_len(ip->family), ip->addr);
    if (ip->family == AF_INET && ip->prefix < 31) {
        uint32_t a;
        memcpy(&a, ip->addr, 4);
        a = htonl(ntohl(a) | (ip->prefix ? 0xffffffffu >> ip->prefix : 0xffffffffu));
        nla_put(h, IFA_BROADCAST, 4, &a);
    }
    return 0;
}

/* Queue RTM_NEWLINK changing the flags in mask to flags, plus name and MTU when given. */
static int queue_link_set(struct nl *nl, int index, unsigned mask, unsigned flags, const char *name,
                          uint32_t mtu, enum nl_kind kind, ka_err *e)
{
    struct nlmsghdr *h = nl_queue(nl, RTM_NEWLINK, 0, kind, 0, 0, e);
    if (!h)
        return -1;
    struct ifinfomsg *ifi = nlm_put_extra(h, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = index;
    ifi->ifi_change = mask;
    ifi->ifi_flags = flags;
    if (mtu)
        nla_put_u32(h, IFLA_MTU, mtu);
    if (name && name[0])
        nla_put_strz(h, IFLA_IFNAME, name);
    return 0;
}

static void mac_text(const uint8_t mac[6], char out[NL_HW_TEXT])
{
    nl_format_hwaddr(mac, 6, out);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
}

/* The link with this MAC (the first, by index, as upstream), and a check that the new name is free. */
static int iface_find(const struct nl_links *l, const struct nl_iface_cfg *cfg, struct nl_link **out,
                      ka_err *e)
{
    char mac[NL_HW_TEXT];
    *out = NULL;
    for (size_t i = 0; i < l->n && !*out; i++)
        if (l->v[i].hw_len == 6 && memcmp(l->v[i].hw, cfg->mac, 6) == 0)
            *out = &l->v[i];
    if (!*out) {
        mac_text(cfg->mac, mac);
        return ka_fail(e, KA_INTERNAL, "Link not found (Address: %s)", mac);
    }
    struct nl_link *other = cfg->name[0] ? link_by_name(l, cfg->name) : NULL;
    if (other && other != *out)
        return ka_fail(e, KA_INTERNAL, "cannot rename %s to %s: link %d has that name", (*out)->name,
                       cfg->name, other->index);
    return 0;
}

static const char *iface_step(uint8_t kind)
{
    switch (kind) {
    case K_LINK_DOWN:
        return "set link down and MTU";
    case K_ADDR_DEL:
        return "delete address";
    case K_ADDR_ADD:
        return "add address";
    default:
        return "set link";
    }
}

int nl_update_iface(const struct nl_iface_cfg *cfg, ka_err *e)
{
    cleanup_nl struct nl nl = {.fd = -1};
    struct nl_links links = {0};
    struct addr_dump d = {0};
    struct nl_link *l;
    int ret = -1;

    if (nl_open(&nl, e) < 0 || dump_links(&nl, &links, e) < 0)
        return -1;
    if (iface_find(&links, cfg, &l, e) < 0)
        goto out;
    d.only_index = l->index;
    if (dump_addrs(&nl, &d, e) < 0)
        goto out;
    /* one batch, applied by the kernel in this order. The MTU goes before the addresses (upstream sets it
     * last): an IPv6 address on a link whose MTU is below 1280 then fails clearly instead of vanishing. */
    if ((l->flags & IFF_UP || cfg->mtu) &&
        queue_link_set(&nl, l->index, IFF_UP, 0, NULL, cfg->mtu, K_LINK_DOWN, e) < 0)
        goto out;
    for (size_t i = 0; i < d.n; i++)
        if (queue_addr_del(&nl, &d.v[i], i, e) < 0)
            goto out;
    for (size_t i = 0; i < cfg->n_addrs; i++)
        if (queue_addr_add(&nl, l->index, &cfg->addrs[i], i, e) < 0)
            goto out;
    if (queue_link_set(&nl, l->index, IFF_UP | IFF_NOARP, IFF_UP | (cfg->noarp ? IFF_NOARP : 0),
                       strcmp(cfg->name, l->name) != 0 ? cfg->name : NULL, 0, K_LINK_SET, e) < 0)
        goto out;
    if (nl_flush(&nl, e) < 0)
        goto out;
    ret = 0;
out:
    if (ret < 0 && nl.err) {
        char ip[NL_CIDR_TEXT] = "";
        if (nl.err_kind == K_ADDR_ADD && nl.err_index < cfg->n_addrs)
            nl_format_cidr(&cfg->addrs[nl.err_index], ip);
        else if (nl.err_kind == K_ADDR_DEL && nl.err_index < d.n)
            nl_format_cidr(&d.v[nl.err_index].local, ip);
        ka_wrap(e, "%s %s%s%s", l->name, iface_step(nl.err_kind), ip[0] ? " " : "", ip);
    }
    free(d.v);
    nl_links_free(&links);
    return ret;
}

/* ======================================================================================================
 * Routes
 * ====================================================================================================== */

struct route_dump {
    struct dump_ctx ctx;
    struct nl_route *v;
    size_t n, cap;
};

static int route_cb(const struct nlmsghdr *h, void *data)
{
    struct route_dump *d = data;
    const struct nlattr *tb[RTA_MAX + 1];
    if (h->nlmsg_type != RTM_NEWROUTE || nlm_payload_len(h) < sizeof(struct rtmsg))
        return 0;
    const struct rtmsg *rtm = nlm_payload(h);
    if ((rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6) || (rtm->rtm_flags & RTM_F_CLONED))
        return 0;
    parse_attrs(h, sizeof(*rtm), tb, RTA_MAX);
    uint32_t table = rtm->rtm_table;
    attr_u32(tb[RTA_TABLE], &table);
    if (table != RT_TABLE_MAIN)
        return 0;
    if (grow((void **)&d->v, &d->cap, d->n, sizeof(*d->v), NL_MAX_ROUTES, "routes", d->ctx.e) < 0) {
        d->ctx.failed = true;
        return -1;
    }
    struct nl_route *r = &d->v[d->n++];
    uint32_t oif = 0;
    memset(r, 0, sizeof(*r));
    r->family = rtm->rtm_family;
    r->scope = rtm->rtm_scope;
    r->protocol = rtm->rtm_protocol;
    r->type = rtm->rtm_type;
    r->tos = rtm->rtm_tos;
    r->table = table;
    r->dst.prefix = rtm->rtm_dst_len;
    r->has_dst = attr_ip(tb[RTA_DST], r->family, rtm->rtm_dst_len, &r->dst);
    r->has_src = attr_ip(tb[RTA_SRC], r->family, rtm->rtm_src_len, &r->src);
    r->has_prefsrc = attr_ip(tb[RTA_PREFSRC], r->family, ip_len(r->family) * 8, &r->prefsrc);
    r->has_gw = attr_ip(tb[RTA_GATEWAY], r->family, ip_len(r->family) * 8, &r->gw);
    r->has_priority = attr_u32(tb[RTA_PRIORITY], &r->priority);
    if (attr_u32(tb[RTA_OIF], &oif))
        r->oif = (int)oif;
    return 0;
}

static int dump_routes(struct nl *nl, struct route_dump *d, ka_err *e)
{
    static const uint8_t families[] = {AF_INET, AF_INET6};
    d->ctx.e = e;
    for (size_t i = 0; i < ARRAY_SIZE(families); i++) {
        char buf[64];
        struct nlmsghdr *h = nlm_put_header(buf);
        h->nlmsg_type = RTM_GETROUTE;
        struct rtmsg *rtm = nlm_put_extra(h, sizeof(*rtm));
        rtm->rtm_family = families[i];
        if (nl_dump(nl, h, route_cb, &d->ctx, e) < 0) {
            free(d->v);
            d->v = NULL;
            return ka_wrap(e, "list %s routes", families[i] == AF_INET ? "IPv4" : "IPv6");
        }
    }
    return 0;
}

void nl_routes_free(struct nl_routes *r)
{
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

int nl_list_routes(struct nl_routes *out, ka_err *e)
{
    cleanup_nl struct nl nl = {.fd = -1};
    struct nl_links links = {0};
    struct route_dump d = {0};
    memset(out, 0, sizeof(*out));
    if (nl_open(&nl, e) < 0 || dump_links(&nl, &links, e) < 0)
        return -1;
    if (dump_routes(&nl, &d, e) < 0) {
        nl_links_free(&links);
        return -1;
    }
    for (size_t i = 0; i < d.n; i++) {
        const struct nl_link *l = d.v[i].oif ? link_by_index(&links, d.v[i].oif) : NULL;
        if (l)
            memcpy(d.v[i].dev, l->name, sizeof(l->name));
    }
    nl_links_free(&links);
    out->v = d.v;
    out->n = d.n;
    return 0;
}

static void put_ip(struct nlmsghdr *h, uint16_t type, const struct nl_ip *ip)
{
    nla_put(h, type, ip_len(ip->family), ip->addr);
}

/* RTM_DELROUTE matching one dumped route exactly (as `ip route flush` does, from its own fields). */
static int queue_route_del(struct nl *nl, const struct nl_route *r, size_t i, ka_err *e)
{
    struct nlmsghdr *h = nl_queue(nl, RTM_DELROUTE, 0, K_ROUTE_DEL, i, ESRCH, e);
    if (!h)
        return -1;
    struct rtmsg *rtm = nlm_put_extra(h, sizeof(*rtm));
    rtm->rtm_family = r->family;
    rtm->rtm_dst_len = r->dst.prefix;
    rtm->rtm_src_len = r->has_src ? r->src.prefix : 0;
    rtm->rtm_tos = r->tos;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = r->protocol;
    rtm->rtm_scope = RT_SCOPE_NOWHERE;
    rtm->rtm_type = r->type;
    if (r->has_dst)
        put_ip(h, RTA_DST, &r->dst);
    if (r->has_src)
        put_ip(h, RTA_SRC, &r->src);
    if (r->has_gw)
        put_ip(h, RTA_GATEWAY, &r->gw);
    if (r->has_priority)
        nla_put_u32(h, RTA_PRIORITY, r->priority);
    nla_put_u32(h, RTA_OIF, (uint32_t)r->oif);
    return 0;
}

/* RTM_NEWROUTE: table main, protocol boot, unicast, the caller's scope. */
static int queue_route_add(struct nl *nl, const struct nl_route *r, int oif, size_t i, ka_err *e)
{
    struct nlmsghdr *h = nl_queue(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, K_ROUTE_ADD, i, EEXIST, e);
    if (!h)
        return -1;
    struct rtmsg *rtm = nlm_put_extra(h, sizeof(*rtm));
    rtm->rtm_family = r->family;
    rtm->rtm_dst_len = r->has_dst ? r->dst.prefix : 0;
    rtm->rtm_src_len = r->has_src ? r->src.prefix : 0;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_scope = r->scope;
    rtm->rtm_type = RTN_UNICAST;
    if (r->has_dst)
        put_ip(h, RTA_DST, &r->dst);
    if (r->has_src)
        put_ip(h, RTA_SRC, &r->src);
    if (r->has_prefsrc)
        put_ip(h, RTA_PREFSRC, &r->prefsrc);
    if (r->has_gw)
        put_ip(h, RTA_GATEWAY, &r->gw);
    nla_put_u32(h, RTA_OIF, (uint32_t)oif);
    return 0;
}

/* A device name to its index (every one is resolved before anything changes). */
static int resolve_dev(const struct nl_links *l, const char *what, size_t i, const char *dev, int *idx,
                       ka_err *e)
{
    const struct nl_link *k = link_by_name(l, dev);
    if (!k)
        return ka_fail(e, KA_INTERNAL, "%s %zu: link %s not found", what, i, dev);
    *idx = k->index;
    return 0;
}

static bool route_is_kept(const struct nl_links *l, const struct nl_route *r)
{
    if (r->protocol == RTPROT_KERNEL || r->oif == 0)
        return true;
    const struct nl_link *k = link_by_index(l, r->oif);
    return !k || (k->flags & IFF_LOOPBACK);
}

static void route_text(const struct nl_route *r, const char *dev, char *out, size_t n)
{
    char dst[NL_CIDR_TEXT], gw[NL_IP_TEXT];
    snprintf(out, n, "%s%s%s dev %s", r->has_dst ? nl_format_cidr(&r->dst, dst) : "default",
             r->has_gw ? " via " : "", r->has_gw ? nl_format_ip(&r->gw, gw) : "", dev);
}

int nl_replace_routes(const struct nl_route *routes, size_t n, ka_err *e)
{
    cleanup_nl struct nl nl = {.fd = -1};
    struct nl_links links = {0};
    struct route_dump d = {0};
    cleanup_free int *oif = calloc(n ? n : 1, sizeof(int));
    int ret = -1;

    if (!oif)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "out of memory");
    if (nl_open(&nl, e) < 0 || dump_links(&nl, &links, e) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (resolve_dev(&links, "route", i, routes[i].dev, &oif[i], e) < 0)
            goto out;
    if (dump_routes(&nl, &d, e) < 0)
        goto out;
    for (size_t i = 0; i < d.n; i++)
        if (!route_is_kept(&links, &d.v[i]) && queue_route_del(&nl, &d.v[i], i, e) < 0)
            goto out;
    for (int with_gw = 0; with_gw <= 1; with_gw++)
        for (size_t i = 0; i < n; i++)
            if (routes[i].has_gw == with_gw && queue_route_add(&nl, &routes[i], oif[i], i, e) < 0)
                goto out;
    if (nl_flush(&nl, e) < 0)
        goto out;
    ret = 0;
out:
    if (ret < 0 && nl.err) {
        char text[160];
        if (nl.err_kind == K_ROUTE_ADD && nl.err_index < n) {
            route_text(&routes[nl.err_index], routes[nl.err_index].dev, text, sizeof(text));
            ka_wrap(e, "add route %zu (%s)", nl.err_index, text);
        } else if (nl.err_kind == K_ROUTE_DEL && nl.err_index < d.n) {
            const struct nl_link *k = link_by_index(&links, d.v[nl.err_index].oif);
            route_text(&d.v[nl.err_index], k ? k->name : "?", text, sizeof(text));
            ka_wrap(e, "delete route %s", text);
        }
    }
    free(d.v);
    nl_links_free(&links);
    return ret;
}

/* ======================================================================================================
 * Neighbours
 * ====================================================================================================== */

int nl_add_neighs(const struct nl_neigh *v, size_t n, ka_err *e)
{
    cleanup_nl struct nl nl = {.fd = -1};
    struct nl_links links = {0};
    cleanup_free int *idx = calloc(n ? n : 1, sizeof(int));
    int ret = -1;

    if (!idx)
        return ka_fail(e, KA_RESOURCE_EXHAUSTED, "out of memory");
    if (n == 0)
        return 0;
    if (nl_open(&nl, e) < 0 || dump_links(&nl, &links, e) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (resolve_dev(&links, "neighbour", i, v[i].dev, &idx[i], e) < 0)
            goto out;
    for (size_t i = 0; i < n; i++) {
        struct nlmsghdr *h = nl_queue(&nl, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, K_NEIGH_ADD, i, 0, e);
        if (!h)
            goto out;
        struct ndmsg *nd = nlm_put_extra(h, sizeof(*nd));
        nd->ndm_family = v[i].dst.family;
        nd->ndm_ifindex = idx[i];
        nd->ndm_state = v[i].state;
        nd->ndm_flags = v[i].flags;
        put_ip(h, NDA_DST, &v[i].dst);
        if (v[i].has_lladdr)
            nla_put(h, NDA_LLADDR, 6, v[i].lladdr);
    }
    if (nl_flush(&nl, e) < 0)
        goto out;
    ret = 0;
out:
    if (ret < 0 && nl.err && nl.err_index < n) {
        char ip[NL_IP_TEXT];
        ka_wrap(e, "neighbour %zu (%s dev %s)", nl.err_index, nl_format_ip(&v[nl.err_index].dst, ip),
                v[nl.err_index].dev);
    }
    nl_links_free(&links);
    return ret;
}
