/* Network RPCs (spec §3.16-3.19): UpdateInterface, ListInterfaces, UpdateRoutes, ListRoutes, AddARPNeighbors.
 * Text fields are checked and parsed here; the rtnetlink work is in guest/netlink.c. */
#include <inttypes.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent.pb-c.h"
#include "rpc.h"
#include "../guest/netlink.h"
#include "../ttrpc/frame.h"
#include "../util/cleanup.h"

#define MAX_IFACE_ADDRS 1024  /* addresses in one UpdateInterface */
#define MAX_ROUTES      16384 /* routes in one UpdateRoutes (10 000 take ~0.1 s of kernel work) */
#define MAX_NEIGHS      16384 /* entries in one AddARPNeighbors */
#define REPLY_MAX       (TTRPC_MAX_DATA - 64) /* room for the Response envelope around the message */

/* Answer with m, or RESOURCE_EXHAUSTED if it cannot fit in one ttrpc frame. */
static void reply_bounded(struct ttrpc_call *c, const ProtobufCMessage *m, size_t n, const char *what)
{
    size_t size = protobuf_c_message_get_packed_size(m);
    if (size > REPLY_MAX) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED,
                           "%zu %s take %zu bytes, more than the %u-byte reply limit", n, what, size,
                           REPLY_MAX);
        return;
    }
    ttrpc_reply(c, m);
}

static void reply_wrapped(struct ttrpc_call *c, ka_err *e, const char *prefix)
{
    ka_wrap(e, "%s", prefix);
    ttrpc_reply_err(c, e);
}

/* ---- UpdateInterface ---- */

static int decode_iface(const Types__Interface *in, struct nl_iface_cfg *cfg, struct nl_ip *addrs, ka_err *e)
{
    memset(cfg, 0, sizeof(*cfg));
    if (nl_parse_mac(in->hwaddr, cfg->mac, e) < 0)
        return -1;
    if (in->name[0] && nl_check_ifname(in->name, e) < 0)
        return -1;
    cfg->name = in->name;
    if (in->mtu && (in->mtu < NL_MTU_MIN || in->mtu > NL_MTU_MAX))
        return ka_fail(e, KA_INVALID_ARGUMENT, "MTU %" PRIu64 " out of range (%d-%d)", in->mtu, NL_MTU_MIN,
                       NL_MTU_MAX);
    cfg->mtu = (uint32_t)in->mtu;
    cfg->noarp = (in->raw_flags & IFF_NOARP) != 0;
    for (size_t i = 0; i < in->n_ipaddresses; i++) {
        const Types__IPAddress *a = in->ipaddresses[i];
        if (nl_parse_ip(a->address, &addrs[i], e) < 0 ||
            nl_parse_prefix(a->mask, addrs[i].family, &addrs[i].prefix, e) < 0)
            return ka_wrap(e, "address %zu", i);
    }
    cfg->addrs = addrs;
    cfg->n_addrs = in->n_ipaddresses;
    return 0;
}

void rpc_update_interface(struct ttrpc_call *c, void *req)
{
    const Grpc__UpdateInterfaceRequest *r = req;
    struct nl_iface_cfg cfg;
    ka_err e;

    if (!r->interface) {
        ttrpc_reply_status(c, KA_INVALID_ARGUMENT, "empty update interface request");
        return;
    }
    if (r->interface->n_ipaddresses > MAX_IFACE_ADDRS) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "update interface: %zu addresses, at most %d",
                           r->interface->n_ipaddresses, MAX_IFACE_ADDRS);
        return;
    }
    cleanup_free struct nl_ip *addrs = calloc(r->interface->n_ipaddresses + 1, sizeof(*addrs));
    if (!addrs) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (decode_iface(r->interface, &cfg, addrs, &e) < 0 || nl_update_iface(&cfg, &e) < 0) {
        reply_wrapped(c, &e, "update interface");
        return;
    }
    ttrpc_reply(c, &r->interface->base); /* as upstream: the request's interface */
}

/* ---- ListInterfaces ---- */

struct iface_out {
    Types__Interface m;
    char hw[NL_HW_TEXT];
};

struct addr_out {
    Types__IPAddress m;
    char ip[NL_IP_TEXT];
    char mask[4];
};

static void encode_ifaces(const struct nl_links *l, struct iface_out *io, Types__Interface **ip,
                          struct addr_out *ao, Types__IPAddress **ap)
{
    for (size_t i = 0; i < l->n_addrs; i++) {
        const struct nl_ip *a = &l->addrs[i];
        types__ipaddress__init(&ao[i].m);
        /* upstream reports the families the wrong way round (spec §3.18 BUG); this is the right way */
        ao[i].m.family = a->family == AF_INET6 ? TYPES__IPFAMILY__v6 : TYPES__IPFAMILY__v4;
        ao[i].m.address = (char *)nl_format_ip(a, ao[i].ip);
        snprintf(ao[i].mask, sizeof(ao[i].mask), "%u", a->prefix);
        ao[i].m.mask = ao[i].mask;
        ap[i] = &ao[i].m;
    }
    for (size_t i = 0; i < l->n; i++) {
        const struct nl_link *k = &l->v[i];
        types__interface__init(&io[i].m);
        io[i].m.name = (char *)k->name;
        io[i].m.hwaddr = (char *)nl_format_hwaddr(k->hw, k->hw_len, io[i].hw);
        io[i].m.mtu = k->mtu;
        io[i].m.n_ipaddresses = k->n_addrs;
        io[i].m.ipaddresses = k->n_addrs ? &ap[k->first_addr] : NULL;
        ip[i] = &io[i].m;
    }
}

void rpc_list_interfaces(struct ttrpc_call *c, void *req)
{
    (void)req;
    struct nl_links l;
    Grpc__Interfaces resp = GRPC__INTERFACES__INIT;
    ka_err e;

    if (nl_list_links(&l, true, &e) < 0) {
        reply_wrapped(c, &e, "list interfaces");
        return;
    }
    cleanup_free struct iface_out *io = calloc(l.n + 1, sizeof(*io));
    cleanup_free Types__Interface **ip = calloc(l.n + 1, sizeof(*ip));
    cleanup_free struct addr_out *ao = calloc(l.n_addrs + 1, sizeof(*ao));
    cleanup_free Types__IPAddress **ap = calloc(l.n_addrs + 1, sizeof(*ap));
    if (!io || !ip || !ao || !ap) {
        nl_links_free(&l);
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    encode_ifaces(&l, io, ip, ao, ap);
    resp.n_interfaces = l.n;
    resp.interfaces = ip;
    reply_bounded(c, &resp.base, l.n, "interfaces");
    nl_links_free(&l);
}

/* ---- ListRoutes, UpdateRoutes ---- */

struct route_out {
    Types__Route m;
    char dest[NL_CIDR_TEXT], gw[NL_IP_TEXT], src[NL_CIDR_TEXT];
};

static void encode_route(const struct nl_route *r, struct route_out *o)
{
    types__route__init(&o->m);
    /* the real destination also for gateway routes (upstream overwrites it: spec §3.18 BUG); "" = default */
    if (r->has_dst)
        o->m.dest = (char *)nl_format_cidr(&r->dst, o->dest);
    if (r->has_gw)
        o->m.gateway = (char *)nl_format_ip(&r->gw, o->gw);
    /* RTA_SRC as "ip/len"; else the preferred source as a bare address, as UpdateRoutes takes it */
    if (r->has_src)
        o->m.source = (char *)nl_format_cidr(&r->src, o->src);
    else if (r->has_prefsrc)
        o->m.source = (char *)nl_format_ip(&r->prefsrc, o->src);
    o->m.device = (char *)r->dev;
    o->m.scope = r->scope;
    o->m.family = r->family == AF_INET6 ? TYPES__IPFAMILY__v6 : TYPES__IPFAMILY__v4;
}

/* Answer with the main table's routes (ListRoutes, and UpdateRoutes after its changes). */
static void reply_routes(struct ttrpc_call *c, const char *what)
{
    struct nl_routes rs;
    Grpc__Routes resp = GRPC__ROUTES__INIT;
    ka_err e;

    if (nl_list_routes(&rs, &e) < 0) {
        reply_wrapped(c, &e, what);
        return;
    }
    cleanup_free struct route_out *o = calloc(rs.n + 1, sizeof(*o));
    cleanup_free Types__Route **p = calloc(rs.n + 1, sizeof(*p));
    if (!o || !p) {
        nl_routes_free(&rs);
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < rs.n; i++) {
        encode_route(&rs.v[i], &o[i]);
        p[i] = &o[i].m;
    }
    resp.n_routes = rs.n;
    resp.routes = p;
    reply_bounded(c, &resp.base, rs.n, "routes");
    nl_routes_free(&rs);
}

void rpc_list_routes(struct ttrpc_call *c, void *req)
{
    (void)req;
    reply_routes(c, "list routes");
}

/* The family of a route: its addresses', which must agree; the `family` field only when it has none. */
static int route_family(const Types__Route *in, struct nl_route *r, ka_err *e)
{
    const struct nl_ip *ips[] = {r->has_dst ? &r->dst : NULL, r->has_gw ? &r->gw : NULL,
                                 r->has_src ? &r->src : NULL, r->has_prefsrc ? &r->prefsrc : NULL};
    r->family = 0;
    for (size_t i = 0; i < ARRAY_SIZE(ips); i++) {
        if (!ips[i])
            continue;
        if (r->family && r->family != ips[i]->family)
            return ka_fail(e, KA_INVALID_ARGUMENT, "mixes IPv4 and IPv6 addresses");
        r->family = ips[i]->family;
    }
    if (!r->family)
        r->family = in->family == TYPES__IPFAMILY__v6 ? AF_INET6 : AF_INET;
    return 0;
}

static int decode_route(const Types__Route *in, struct nl_route *r, ka_err *e)
{
    struct nl_ip src;
    memset(r, 0, sizeof(*r));
    if (nl_check_ifname(in->device, e) < 0)
        return -1;
    snprintf(r->dev, sizeof(r->dev), "%s", in->device);
    if (in->dest[0] && nl_parse_cidr(in->dest, true, &r->dst, e) < 0)
        return -1;
    r->has_dst = in->dest[0] != '\0';
    if (in->gateway[0] && nl_parse_ip(in->gateway, &r->gw, e) < 0)
        return -1;
    r->has_gw = in->gateway[0] != '\0';
    if (in->source[0]) {
        if (nl_parse_cidr(in->source, false, &src, e) < 0)
            return -1;
        /* as upstream: a source with a prefix is RTA_SRC, a bare one the preferred source */
        if (src.prefix > 0) {
            r->src = src;
            r->has_src = true;
        } else {
            r->prefsrc = src;
            r->has_prefsrc = true;
        }
    }
    if (in->scope > 255)
        return ka_fail(e, KA_INVALID_ARGUMENT, "scope %u out of range (0-255)", in->scope);
    r->scope = (uint8_t)in->scope;
    return route_family(in, r, e);
}

void rpc_update_routes(struct ttrpc_call *c, void *req)
{
    const Grpc__UpdateRoutesRequest *r = req;
    ka_err e;

    if (!r->routes) {
        ttrpc_reply_status(c, KA_INVALID_ARGUMENT, "empty update routes request");
        return;
    }
    size_t n = r->routes->n_routes;
    if (n > MAX_ROUTES) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "Failed to update routes: %zu routes, at most %d", n,
                           MAX_ROUTES);
        return;
    }
    cleanup_free struct nl_route *v = calloc(n + 1, sizeof(*v));
    if (!v) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (decode_route(r->routes->routes[i], &v[i], &e) < 0) {
            ka_wrap(&e, "route %zu", i);
            reply_wrapped(c, &e, "Failed to update routes");
            return;
        }
    }
    if (nl_replace_routes(v, n, &e) < 0) {
        reply_wrapped(c, &e, "Failed to update routes");
        return;
    }
    reply_routes(c, "Failed to list routes after update");
}

/* ---- AddARPNeighbors ---- */

static int decode_neigh(const Types__ARPNeighbor *in, struct nl_neigh *n, ka_err *e)
{
    memset(n, 0, sizeof(*n));
    if (!in->toipaddress || !in->toipaddress->address[0])
        return ka_fail(e, KA_INVALID_ARGUMENT, "Unable to determine ip address of ARP neighbor");
    if (nl_parse_ip(in->toipaddress->address, &n->dst, e) < 0 || nl_check_ifname(in->device, e) < 0)
        return -1;
    snprintf(n->dev, sizeof(n->dev), "%s", in->device);
    if (in->lladdr[0] && nl_parse_mac(in->lladdr, n->lladdr, e) < 0)
        return -1;
    n->has_lladdr = in->lladdr[0] != '\0';
    if (in->state < 0 || in->state > 0xffff)
        return ka_fail(e, KA_INVALID_ARGUMENT, "state %d out of range", in->state);
    if (in->flags < 0 || in->flags > 0xff)
        return ka_fail(e, KA_INVALID_ARGUMENT, "flags %d out of range", in->flags);
    n->state = in->state ? (uint16_t)in->state : NUD_PERMANENT;
    n->flags = (uint8_t)in->flags;
    return 0;
}

void rpc_add_arp_neighbors(struct ttrpc_call *c, void *req)
{
    const Grpc__AddARPNeighborsRequest *r = req;
    ka_err e;

    if (!r->neighbors) {
        ttrpc_reply_status(c, KA_INVALID_ARGUMENT, "empty add arp neighbours request");
        return;
    }
    size_t n = r->neighbors->n_arpneighbors;
    if (n > MAX_NEIGHS) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "Failed to add ARP neighbours: %zu entries, at most %d",
                           n, MAX_NEIGHS);
        return;
    }
    cleanup_free struct nl_neigh *v = calloc(n + 1, sizeof(*v));
    if (!v) {
        ttrpc_reply_status(c, KA_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (decode_neigh(r->neighbors->arpneighbors[i], &v[i], &e) < 0) {
            ka_wrap(&e, "neighbour %zu", i);
            reply_wrapped(c, &e, "Failed to add ARP neighbours");
            return;
        }
    }
    if (nl_add_neighs(v, n, &e) < 0) {
        reply_wrapped(c, &e, "Failed to add ARP neighbours");
        return;
    }
    ttrpc_reply(c, NULL);
}
