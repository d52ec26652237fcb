/* Guest networking over rtnetlink (libmnl) for UpdateInterface, ListInterfaces, UpdateRoutes, ListRoutes and
 * AddARPNeighbors (spec §3.16-3.19), and the pure parsers/formatters of their text fields.
 *
 * Every operation opens its own NETLINK_ROUTE socket in the agent's network namespace, dumps what it needs
 * (bounded: NL_MAX_*), and sends its changes as batches of requests whose acknowledgements it collects; the
 * kernel's extended-ack text is added to error messages. Kernel failures are INTERNAL, exceeded bounds
 * RESOURCE_EXHAUSTED; the parsers answer INVALID_ARGUMENT. */
#pragma once
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/err.h"

#define NL_HWADDR_MAX 32    /* MAX_ADDR_LEN */
#define NL_MAX_LINKS  4096  /* links in one dump */
#define NL_MAX_ADDRS  65536 /* addresses in one dump */
#define NL_MAX_ROUTES 65536 /* main-table routes in one dump (v4 + v6); ~0.15 s of dump */
#define NL_MTU_MIN    68    /* IPv4 minimum; lower would silently drop the link's IPv4 configuration */
#define NL_MTU_MAX    65536 /* loopback's MTU; no IP packet is larger */
#define NL_IP_TEXT    46    /* INET6_ADDRSTRLEN */
#define NL_CIDR_TEXT  (NL_IP_TEXT + 4)
#define NL_HW_TEXT    (3 * NL_HWADDR_MAX)

/* An IPv4 or IPv6 address with a prefix length. family 0 = none. */
struct nl_ip {
    uint8_t family; /* AF_INET, AF_INET6 */
    uint8_t prefix;
    uint8_t addr[16];
};

/* ---- pure parsing and formatting (no kernel) ---- */

/* "aa:bb:cc:dd:ee:ff" (1 or 2 hex digits per octet, any case) into 6 bytes. */
int nl_parse_mac(const char *s, uint8_t mac[6], ka_err *e);
/* A bare IPv4 or IPv6 address; prefix is set to the full length (32 or 128). */
int nl_parse_ip(const char *s, struct nl_ip *ip, ka_err *e);
/* A prefix length in decimal ("24"), at most 32 for AF_INET and 128 for AF_INET6. */
int nl_parse_prefix(const char *s, int family, uint8_t *prefix, ka_err *e);
/* "ip/len" or a bare "ip", whose prefix is then bare_prefix_full ? 32/128 : 0. */
int nl_parse_cidr(const char *s, bool bare_prefix_full, struct nl_ip *ip, ka_err *e);
/* A name the kernel accepts for a link and that is not a template: 1-15 printable ASCII characters, none of
 * '/', ':', '%' or space, not "." or "..". */
int nl_check_ifname(const char *s, ka_err *e);
/* Text of a link-layer address: 6 bytes "AA:BB:CC:DD:EE:FF", 4 bytes dotted IPv4, 16 bytes IPv6, else "".
 * Returns out. */
const char *nl_format_hwaddr(const uint8_t *hw, size_t len, char out[NL_HW_TEXT]);
/* "10.0.0.1" / "fe80::1"; "" for family 0. Returns out. */
const char *nl_format_ip(const struct nl_ip *ip, char out[NL_IP_TEXT]);
/* "10.0.0.0/24". Returns out. */
const char *nl_format_cidr(const struct nl_ip *ip, char out[NL_CIDR_TEXT]);
/* Copy of untrusted text fit for an error message: printable ASCII, others as '?', cut to 64 characters. */
const char *nl_quote(const char *s, char out[72]);

/* ---- links and addresses ---- */

struct nl_link {
    int index;
    unsigned flags; /* IFF_* */
    uint32_t mtu;
    char name[IFNAMSIZ];
    uint8_t hw[NL_HWADDR_MAX];
    uint8_t hw_len;
    size_t first_addr, n_addrs; /* its addresses in nl_links.addrs */
};

struct nl_links {
    struct nl_link *v; /* sorted by index */
    size_t n;
    struct nl_ip *addrs; /* the local address (IFA_LOCAL, else IFA_ADDRESS) and prefix, grouped by link */
    size_t n_addrs;
};

/* Every link, with its addresses when with_addrs. */
int nl_list_links(struct nl_links *out, bool with_addrs, ka_err *e);
void nl_links_free(struct nl_links *l);

struct nl_iface_cfg {
    uint8_t mac[6];            /* the link to change */
    const char *name;          /* new name; "" keeps it */
    uint32_t mtu;              /* 0 keeps it */
    bool noarp;                /* IFF_NOARP on or off */
    const struct nl_ip *addrs; /* replace every address of the link */
    size_t n_addrs;
};

/* UpdateInterface: find the link by MAC (the name must be free), take it down and set the MTU, delete its
 * addresses, add cfg's, then set name, ARP and up in one request. */
int nl_update_iface(const struct nl_iface_cfg *cfg, ka_err *e);

/* ---- routes ---- */

struct nl_route {
    uint8_t family, scope, protocol, type, tos;
    uint32_t table;
    bool has_dst, has_src, has_prefsrc, has_gw, has_priority;
    struct nl_ip dst, src, prefsrc, gw;
    uint32_t priority;
    int oif;            /* 0 = none */
    char dev[IFNAMSIZ]; /* by name: given to nl_replace_routes, filled by nl_list_routes ("" = none) */
};

struct nl_routes {
    struct nl_route *v;
    size_t n;
};

/* Routes of the main table, IPv4 then IPv6, in the kernel's order, with device names. */
int nl_list_routes(struct nl_routes *out, ka_err *e);
void nl_routes_free(struct nl_routes *r);
/* UpdateRoutes: resolve every route's device first, then delete the main table's routes except those of the
 * kernel, those without a device and loopback's, then add routes (table main, protocol boot, unicast; those
 * without a gateway first). A route already present is not an error. */
int nl_replace_routes(const struct nl_route *routes, size_t n, ka_err *e);

/* ---- neighbours ---- */

struct nl_neigh {
    struct nl_ip dst;
    char dev[IFNAMSIZ];
    bool has_lladdr;
    uint8_t lladdr[6];
    uint16_t state; /* NUD_* */
    uint8_t flags;  /* NTF_* */
};

/* AddARPNeighbors: resolve every device first, then create or replace each entry. */
int nl_add_neighs(const struct nl_neigh *v, size_t n, ka_err *e);
