/* Network text parsing and formatting (MAC addresses, IPs, prefixes, CIDRs, interface names, hwAddr text) and
 * the netlink message helpers (building, and parsing truncated or malformed attribute streams). */
#include <arpa/inet.h>
#include <string.h>

#include "guest/netlink.h"
#include "guest/nlmsg.h"
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include "unit.h"

static bool mac_ok(const char *s, const char *want_hex)
{
    uint8_t mac[6];
    ka_err e;
    char hex[13];
    if (nl_parse_mac(s, mac, &e) < 0)
        return false;
    for (int i = 0; i < 6; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    return strcmp(hex, want_hex) == 0;
}

static bool mac_bad(const char *s)
{
    uint8_t mac[6];
    ka_err e;
    return nl_parse_mac(s, mac, &e) < 0 && e.status == KA_INVALID_ARGUMENT && strstr(e.msg, "MAC");
}

TEST(mac_parsing)
{
    CHECK(mac_ok("02:42:ac:11:00:02", "0242ac110002"));
    CHECK(mac_ok("02:42:AC:11:00:FF", "0242ac1100ff"));
    CHECK(mac_ok("2:4:a:1:0:f", "02040a01000f"));
    CHECK(mac_bad(""));
    CHECK(mac_bad("02:42:ac:11:00"));
    CHECK(mac_bad("02:42:ac:11:00:02:03"));
    CHECK(mac_bad("02:42:ac:11:00:02:"));
    CHECK(mac_bad("02-42-ac-11-00-02"));
    CHECK(mac_bad("002:42:ac:11:00:02"));
    CHECK(mac_bad("0g:42:ac:11:00:02"));
    CHECK(mac_bad("02::ac:11:00:02"));
    CHECK(mac_bad(" 02:42:ac:11:00:02"));
    CHECK(mac_bad("02:42:ac:11:00:02 "));
}

TEST(ip_parsing)
{
    struct nl_ip ip;
    ka_err e;
    CHECK_INT(nl_parse_ip("10.1.2.3", &ip, &e), 0);
    CHECK_INT(ip.family, AF_INET);
    CHECK_INT(ip.prefix, 32);
    CHECK(memcmp(ip.addr, "\x0a\x01\x02\x03", 4) == 0);
    CHECK_INT(nl_parse_ip("fd00::1", &ip, &e), 0);
    CHECK_INT(ip.family, AF_INET6);
    CHECK_INT(ip.prefix, 128);
    CHECK_INT(ip.addr[0], 0xfd);
    CHECK_INT(ip.addr[15], 1);
    CHECK_INT(nl_parse_ip("::ffff:10.0.0.1", &ip, &e), 0);
    CHECK_INT(ip.family, AF_INET6);
    const char *bad[] = {"",    "10.1.2",    "10.1.2.256",        "10.1.2.3/24", "1.2.3.4 ", "fe80::1%eth0",
                         "::g", "localhost", "1:2:3:4:5:6:7:8:9", "0x0a.1.2.3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(nl_parse_ip(bad[i], &ip, &e), -1);
        CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    }
    char longs[300];
    memset(longs, '1', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    CHECK_INT(nl_parse_ip(longs, &ip, &e), -1);
    CHECK(strlen(e.msg) < 120); /* untrusted text is cut in messages */
}

TEST(prefix_parsing)
{
    uint8_t p = 99;
    ka_err e;
    CHECK_INT(nl_parse_prefix("24", AF_INET, &p, &e), 0);
    CHECK_INT(p, 24);
    CHECK_INT(nl_parse_prefix("0", AF_INET, &p, &e), 0);
    CHECK_INT(p, 0);
    CHECK_INT(nl_parse_prefix("32", AF_INET, &p, &e), 0);
    CHECK_INT(nl_parse_prefix("128", AF_INET6, &p, &e), 0);
    CHECK_INT(p, 128);
    CHECK_INT(nl_parse_prefix("33", AF_INET, &p, &e), -1);
    CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    CHECK_INT(nl_parse_prefix("129", AF_INET6, &p, &e), -1);
    CHECK_INT(nl_parse_prefix("", AF_INET, &p, &e), -1);
    CHECK_INT(nl_parse_prefix("-1", AF_INET, &p, &e), -1);
    CHECK_INT(nl_parse_prefix("+8", AF_INET, &p, &e), -1);
    CHECK_INT(nl_parse_prefix("0024", AF_INET, &p, &e), -1);
    CHECK_INT(nl_parse_prefix("24 ", AF_INET, &p, &e), -1);
    CHECK_INT(nl_parse_prefix("255.255.255.0", AF_INET, &p, &e), -1);
    CHECK_INT(nl_parse_prefix("4294967320", AF_INET, &p, &e), -1);
}

TEST(cidr_parsing)
{
    struct nl_ip ip;
    ka_err e;
    char t[NL_CIDR_TEXT];
    CHECK_INT(nl_parse_cidr("192.168.1.0/24", true, &ip, &e), 0);
    CHECK_STR(nl_format_cidr(&ip, t), "192.168.1.0/24");
    CHECK_INT(nl_parse_cidr("2001:db8::/32", true, &ip, &e), 0);
    CHECK_INT(ip.family, AF_INET6);
    CHECK_STR(nl_format_cidr(&ip, t), "2001:db8::/32");
    /* a bare address: a host route for destinations, no prefix (preferred source) for sources */
    CHECK_INT(nl_parse_cidr("10.0.0.7", true, &ip, &e), 0);
    CHECK_INT(ip.prefix, 32);
    CHECK_INT(nl_parse_cidr("10.0.0.7", false, &ip, &e), 0);
    CHECK_INT(ip.prefix, 0);
    CHECK_INT(nl_parse_cidr("fd00::7", true, &ip, &e), 0);
    CHECK_INT(ip.prefix, 128);
    CHECK_INT(nl_parse_cidr("0.0.0.0/0", true, &ip, &e), 0);
    CHECK_INT(ip.prefix, 0);
    const char *bad[] = {"",          "/24",        "10.0.0.0/",    "10.0.0.0/33", "10.0.0.0/24/1",
                         "10.0.0/24", "fd00::/129", "10.0.0.0/ 24", "10.0.0.0/x",  "fd00::1%lo/64"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(nl_parse_cidr(bad[i], true, &ip, &e), -1);
        CHECK_INT(e.status, KA_INVALID_ARGUMENT);
        CHECK(strstr(e.msg, "CIDR") != NULL);
    }
}

TEST(ifname_check)
{
    ka_err e;
    CHECK_INT(nl_check_ifname("eth0", &e), 0);
    CHECK_INT(nl_check_ifname("a", &e), 0);
    CHECK_INT(nl_check_ifname("veth-123456789a", &e), 0); /* 15 characters */
    const char *bad[] = {"",      "veth-123456789ab", "a/b", "a:1", "eth%d", "a b", ".", "..",
                         "tab\t", "\xc3\xa9t"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(nl_check_ifname(bad[i], &e), -1);
        CHECK_INT(e.status, KA_INVALID_ARGUMENT);
    }
    /* the message quotes the name safely: printable ASCII only */
    nl_check_ifname("\x01\xff", &e);
    for (const char *p = e.msg; *p; p++)
        CHECK(*p >= 0x20 && *p < 0x7f);
}

TEST(hwaddr_format)
{
    char t[NL_HW_TEXT];
    const uint8_t mac[6] = {0x02, 0x42, 0xac, 0x11, 0x00, 0xfe};
    CHECK_STR(nl_format_hwaddr(mac, 6, t), "02:42:AC:11:00:FE");
    const uint8_t zero[6] = {0};
    CHECK_STR(nl_format_hwaddr(zero, 6, t), "00:00:00:00:00:00");
    const uint8_t v4[4] = {10, 0, 0, 1};
    CHECK_STR(nl_format_hwaddr(v4, 4, t), "10.0.0.1");
    uint8_t v6[16] = {0xfe, 0x80};
    v6[15] = 1;
    CHECK_STR(nl_format_hwaddr(v6, 16, t), "fe80::1");
    uint8_t ib[20] = {1};
    CHECK_STR(nl_format_hwaddr(ib, 20, t), "");
    CHECK_STR(nl_format_hwaddr(ib, 0, t), "");
    CHECK_STR(nl_format_hwaddr(ib, 8, t), "");
    uint8_t big[NL_HWADDR_MAX];
    memset(big, 0xff, sizeof(big));
    CHECK_STR(nl_format_hwaddr(big, sizeof(big), t), "");
}

TEST(ip_format)
{
    char t[NL_IP_TEXT];
    struct nl_ip ip = {0};
    CHECK_STR(nl_format_ip(&ip, t), "");
    ka_err e;
    CHECK_INT(nl_parse_ip("2001:db8:0:0:0:0:0:1", &ip, &e), 0);
    CHECK_STR(nl_format_ip(&ip, t), "2001:db8::1");
    char q[72];
    CHECK_STR(nl_quote("ok", q), "ok");
    char longs[200];
    memset(longs, 'x', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    CHECK_INT(strlen(nl_quote(longs, q)), 67);
}

TEST(nlmsg_build)
{
    _Alignas(4) char buf[256];
    struct nlmsghdr *h = nlm_put_header(buf);
    CHECK_INT(h->nlmsg_len, NLMSG_HDRLEN);
    struct ifinfomsg *ifi = nlm_put_extra(h, sizeof(*ifi));
    CHECK(ifi->ifi_index == 0 && (char *)ifi == buf + NLMSG_HDRLEN);
    nla_put_strz(h, IFLA_IFNAME, "eth0"); /* 5 bytes: padded to 8 */
    nla_put_u32(h, IFLA_MTU, 1400);
    nla_put(h, IFLA_ADDRESS, 6, "\x02\x42\xac\x11\x00\x02");
    CHECK_INT(h->nlmsg_len, NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(*ifi)) + 12 + 8 + 12);
    CHECK_INT(nlm_payload_len(h), h->nlmsg_len - NLMSG_HDRLEN);

    const struct nlattr *tb[IFLA_MAX + 1];
    size_t off = NLMSG_ALIGN(sizeof(*ifi));
    nla_parse((char *)nlm_payload(h) + off, nlm_payload_len(h) - off, tb, IFLA_MAX);
    CHECK(tb[IFLA_IFNAME] && nla_str(tb[IFLA_IFNAME]) && strcmp(nla_str(tb[IFLA_IFNAME]), "eth0") == 0);
    CHECK(tb[IFLA_MTU] && nla_data_len(tb[IFLA_MTU]) == 4 &&
          *(const uint32_t *)nla_data(tb[IFLA_MTU]) == 1400);
    CHECK(tb[IFLA_ADDRESS] && nla_data_len(tb[IFLA_ADDRESS]) == 6);
    CHECK(!tb[IFLA_BROADCAST]);

    /* two messages back to back, then a truncated third */
    size_t total = 2 * NLMSG_ALIGN(h->nlmsg_len);
    memcpy(buf + NLMSG_ALIGN(h->nlmsg_len), buf, h->nlmsg_len);
    size_t left = total + 8, n = 0;
    for (const struct nlmsghdr *m = (void *)buf; nlm_ok(m, left); m = nlm_next(m, &left))
        n++;
    CHECK_INT(n, 2);
}

TEST(nlmsg_hostile_attrs)
{
    _Alignas(4) char buf[64] = {0};
    const struct nlattr *tb[8];
    struct nlattr *a = (void *)buf;

    a->nla_len = 3; /* shorter than its own header: nothing parsed, no loop */
    a->nla_type = 1;
    nla_parse(buf, sizeof(buf), tb, 7);
    CHECK(!tb[1]);

    a->nla_len = 200; /* longer than the buffer */
    nla_parse(buf, sizeof(buf), tb, 7);
    CHECK(!tb[1]);

    a->nla_len = 8; /* fine, followed by a type beyond max and a NUL-less string */
    a->nla_type = 1 | NLA_F_NESTED;
    struct nlattr *b = (void *)(buf + 8);
    b->nla_len = 8;
    b->nla_type = 60;
    struct nlattr *c = (void *)(buf + 16);
    c->nla_len = 8;
    c->nla_type = 2;
    memcpy(buf + 20, "abcd", 4);
    nla_parse(buf, 24, tb, 7);
    CHECK(tb[1] == a && nla_kind(tb[1]) == 1);
    CHECK(tb[2] == c && nla_str(c) == NULL);
    nla_parse(buf, 23, tb, 7); /* the last attribute cut short: dropped */
    CHECK(tb[1] == a && !tb[2]);
    nla_parse(buf, 2, tb, 7); /* less than a header */
    CHECK(!tb[1]);

    struct nlmsghdr *h = (void *)buf; /* message headers claiming too much or too little */
    h->nlmsg_len = 100;
    CHECK(!nlm_ok(h, sizeof(buf)));
    h->nlmsg_len = 4;
    CHECK(!nlm_ok(h, sizeof(buf)));
    CHECK_INT(nlm_payload_len(h), 0);
    h->nlmsg_len = 16;
    CHECK(nlm_ok(h, 16) && !nlm_ok(h, 15));
}

RUN(nlmsg_build, nlmsg_hostile_attrs, mac_parsing, ip_parsing, prefix_parsing, cidr_parsing, ifname_check,
    hwaddr_format, ip_format)
