/* Netlink message building and attribute parsing over the kernel's uapi macros.
 * Hand-written (not libmnl) because Debian ships libmnl without a static archive and the agent is linked
 * statically to keep its guest memory small; these are the dozen helpers the network RPCs need. */
#pragma once
#include <linux/netlink.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* A fresh message header at buf (room for it is the caller's). */
static inline struct nlmsghdr *nlm_put_header(void *buf)
{
    struct nlmsghdr *h = buf;
    memset(h, 0, NLMSG_HDRLEN);
    h->nlmsg_len = NLMSG_HDRLEN;
    return h;
}

/* Zeroed room for a family header (ifinfomsg, rtmsg, ...) right after the message header. */
static inline void *nlm_put_extra(struct nlmsghdr *h, size_t size)
{
    char *p = (char *)h + h->nlmsg_len;
    memset(p, 0, NLMSG_ALIGN(size));
    h->nlmsg_len += NLMSG_ALIGN(size);
    return p;
}

static inline void *nlm_payload(const struct nlmsghdr *h)
{
    return (char *)h + NLMSG_HDRLEN;
}

static inline size_t nlm_payload_len(const struct nlmsghdr *h)
{
    return h->nlmsg_len >= NLMSG_HDRLEN ? h->nlmsg_len - NLMSG_HDRLEN : 0;
}

/* Whether a whole message of at least a header fits in the len bytes left at h. */
static inline bool nlm_ok(const struct nlmsghdr *h, size_t len)
{
    return len >= sizeof(*h) && h->nlmsg_len >= sizeof(*h) && h->nlmsg_len <= len;
}

static inline const struct nlmsghdr *nlm_next(const struct nlmsghdr *h, size_t *len)
{
    size_t step = NLMSG_ALIGN(h->nlmsg_len);
    *len = step < *len ? *len - step : 0;
    return (const struct nlmsghdr *)((const char *)h + step);
}

/* Append an attribute; the caller's buffer has room (requests are small and bounded). */
static inline void nla_put(struct nlmsghdr *h, uint16_t type, size_t len, const void *data)
{
    struct nlattr *a = (struct nlattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    memcpy((char *)a + NLA_HDRLEN, data, len);
    memset((char *)a + NLA_HDRLEN + len, 0, NLA_ALIGN(len) - len);
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + NLA_ALIGN(a->nla_len);
}

static inline void nla_put_u32(struct nlmsghdr *h, uint16_t type, uint32_t v)
{
    nla_put(h, type, sizeof(v), &v);
}

static inline void nla_put_strz(struct nlmsghdr *h, uint16_t type, const char *s)
{
    nla_put(h, type, strlen(s) + 1, s);
}

static inline unsigned nla_kind(const struct nlattr *a)
{
    return a->nla_type & NLA_TYPE_MASK;
}

static inline const void *nla_data(const struct nlattr *a)
{
    return (const char *)a + NLA_HDRLEN;
}

static inline size_t nla_data_len(const struct nlattr *a)
{
    return a->nla_len - NLA_HDRLEN; /* nla_ok checked nla_len >= NLA_HDRLEN */
}

/* A NUL-terminated string attribute, or NULL if it is not one. */
static inline const char *nla_str(const struct nlattr *a)
{
    size_t n = nla_data_len(a);
    const char *s = nla_data(a);
    return n > 0 && memchr(s, '\0', n) ? s : NULL;
}

static inline bool nla_ok(const struct nlattr *a, size_t len)
{
    return len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= len;
}

static inline const struct nlattr *nla_next(const struct nlattr *a, size_t *len)
{
    size_t step = NLA_ALIGN(a->nla_len);
    *len = step < *len ? *len - step : 0;
    return (const struct nlattr *)((const char *)a + step);
}

/* Attributes in [p, p + len) into tb[0..max], later duplicates winning; malformed tails are ignored. */
static inline void nla_parse(const void *p, size_t len, const struct nlattr **tb, unsigned max)
{
    memset(tb, 0, (max + 1) * sizeof(*tb));
    for (const struct nlattr *a = p; nla_ok(a, len); a = nla_next(a, &len))
        if (nla_kind(a) <= max)
            tb[nla_kind(a)] = a;
}
