/* Unit tests for tools/ctl/pbjson.c: proto3 JSON <-> protobuf-c messages, round trips and input errors. */
#include "../../tools/ctl/pbjson.h"

#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "oci.pb-c.h"
#include "types.pb-c.h"

#include "unit.h"

/* ---- helpers ---------------------------------------------------------------------------------------- */

static ProtobufCMessage *parse_ok(const ProtobufCMessageDescriptor *d, const char *json)
{
    ka_err e = {0};
    ProtobufCMessage *m = pbjson_parse(d, json, &e);
    if (!m)
        printf("# unexpected parse error: %s\n", e.msg);
    return m;
}

/* Plain JSON text of m (caller frees). */
static char *plain(const ProtobufCMessage *m)
{
    return pbjson_to_string(m, 0);
}

/* Pack m to the wire and unpack it again (free with protobuf_c_message_free_unpacked). */
static ProtobufCMessage *wire_copy(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    size_t packed = protobuf_c_message_pack(m, buf);
    ProtobufCMessage *u = packed == n ? protobuf_c_message_unpack(m->descriptor, NULL, n, buf) : NULL;
    free(buf);
    return u;
}

/* Parse json, expect the canonical output `want`, and the same output after a trip over the wire and
 * after re-parsing the output. Returns nonzero when all three matched. */
static int roundtrip(const ProtobufCMessageDescriptor *d, const char *json, const char *want)
{
    int ok = 0;
    ProtobufCMessage *m = parse_ok(d, json);
    ProtobufCMessage *w = m ? wire_copy(m) : NULL;
    char *out = m ? plain(m) : NULL;
    char *wout = w ? plain(w) : NULL;
    ProtobufCMessage *again = out ? parse_ok(d, out) : NULL;
    char *aout = again ? plain(again) : NULL;
    if (out && wout && aout) {
        ok = !strcmp(out, want) && !strcmp(wout, want) && !strcmp(aout, want);
        if (!ok)
            printf("# want: %s\n#  got: %s\n# wire: %s\n# again: %s\n", want, out, wout, aout);
    }
    free(out);
    free(wout);
    free(aout);
    protobuf_c_message_free_unpacked(m, NULL);
    protobuf_c_message_free_unpacked(w, NULL);
    protobuf_c_message_free_unpacked(again, NULL);
    return ok;
}

/* Parsing must fail with INVALID_ARGUMENT and a message containing every non-NULL needle. */
static int fails_with(const ProtobufCMessageDescriptor *d, const char *json, const char *needle,
                      const char *needle2)
{
    ka_err e = {0};
    ProtobufCMessage *m = pbjson_parse(d, json, &e);
    if (m) {
        printf("# expected an error for: %s\n", json);
        protobuf_c_message_free_unpacked(m, NULL);
        return 0;
    }
    int ok = e.status == KA_INVALID_ARGUMENT && strstr(e.msg, needle) && (!needle2 || strstr(e.msg, needle2));
    if (!ok)
        printf("# input: %s\n# error (status %d): %s\n# wanted: %s%s%s\n", json, e.status, e.msg, needle,
               needle2 ? " + " : "", needle2 ? needle2 : "");
    return ok;
}

/* ---- CreateContainerRequest with a full OCI spec ----------------------------------------------------- */

static const char create_container_in[] =
    "{\"container_id\": \"c1\", \"execId\": \"e1\", \"sandboxPidns\": true,"
    " \"storages\": [{\"driver\": \"virtio-fs\", \"source\": \"kataShared\", \"fstype\": \"virtiofs\","
    "   \"options\": [\"nodev\"], \"mount_point\": \"/run/kata-containers/shared/containers/c1/rootfs\","
    "   \"fsGroup\": {\"groupId\": 1000, \"group_change_policy\": \"OnRootMismatch\"}}],"
    " \"OCI\": {\"Version\": \"1.0.2\","
    "  \"Process\": {\"Terminal\": false, \"User\": {\"UID\": 0, \"GID\": 0, \"AdditionalGids\": [1, \"2\"]},"
    "    \"Args\": [\"/bin/sh\", \"-c\", \"echo hi\"], \"Env\": [\"PATH=/usr/bin\", \"TERM=xterm\"],"
    "    \"Cwd\": \"/\", \"OOMScoreAdj\": -999,"
    "    \"Rlimits\": [{\"Type\": \"RLIMIT_NOFILE\", \"Hard\": \"1024\", \"Soft\": 1024}]},"
    "  \"Root\": {\"Path\": \"/run/kata-containers/c1/rootfs\", \"Readonly\": true},"
    "  \"Hostname\": \"box\","
    "  \"Mounts\": [{\"destination\": \"/proc\", \"source\": \"proc\", \"type\": \"proc\","
    "    \"options\": [\"nosuid\", \"noexec\"]}],"
    "  \"Annotations\": {\"io.kubernetes.cri.container-type\": \"container\", \"empty\": \"\"},"
    "  \"Linux\": {\"Sysctl\": {\"net.ipv4.ip_forward\": \"1\"},"
    "    \"Namespaces\": [{\"Type\": \"pid\"}, {\"Type\": \"network\", \"Path\": \"/var/run/netns/x\"}],"
    "    \"Seccomp\": {\"DefaultAction\": \"SCMP_ACT_ERRNO\", \"Architectures\": [\"SCMP_ARCH_X86_64\"],"
    "      \"Syscalls\": [{\"Names\": [\"read\", \"write\"], \"Action\": \"SCMP_ACT_ALLOW\"},"
    "        {\"Names\": [\"personality\"], \"Action\": \"SCMP_ACT_ERRNO\", \"errnoret\": 1,"
    "         \"Args\": [{\"Index\": 0, \"Value\": \"4294967295\", \"ValueTwo\": 0, \"Op\": "
    "\"SCMP_CMP_EQ\"}]}]},"
    "    \"MaskedPaths\": [\"/proc/kcore\"]}}}";

static const char create_container_out[] =
    "{\"containerId\":\"c1\",\"execId\":\"e1\","
    "\"storages\":[{\"driver\":\"virtio-fs\",\"source\":\"kataShared\",\"fstype\":\"virtiofs\","
    "\"options\":[\"nodev\"],\"mountPoint\":\"/run/kata-containers/shared/containers/c1/rootfs\","
    "\"fsGroup\":{\"groupId\":1000,\"groupChangePolicy\":\"OnRootMismatch\"}}],"
    "\"OCI\":{\"Version\":\"1.0.2\","
    "\"Process\":{\"User\":{\"AdditionalGids\":[1,2]},\"Args\":[\"/bin/sh\",\"-c\",\"echo hi\"],"
    "\"Env\":[\"PATH=/usr/bin\",\"TERM=xterm\"],\"Cwd\":\"/\","
    "\"Rlimits\":[{\"Type\":\"RLIMIT_NOFILE\",\"Hard\":\"1024\",\"Soft\":\"1024\"}],\"OOMScoreAdj\":\"-999\"}"
    ","
    "\"Root\":{\"Path\":\"/run/kata-containers/c1/rootfs\",\"Readonly\":true},\"Hostname\":\"box\","
    "\"Mounts\":[{\"destination\":\"/proc\",\"source\":\"proc\",\"type\":\"proc\","
    "\"options\":[\"nosuid\",\"noexec\"]}],"
    "\"Annotations\":{\"io.kubernetes.cri.container-type\":\"container\",\"empty\":\"\"},"
    "\"Linux\":{\"Sysctl\":{\"net.ipv4.ip_forward\":\"1\"},"
    "\"Namespaces\":[{\"Type\":\"pid\"},{\"Type\":\"network\",\"Path\":\"/var/run/netns/x\"}],"
    "\"Seccomp\":{\"DefaultAction\":\"SCMP_ACT_ERRNO\",\"Architectures\":[\"SCMP_ARCH_X86_64\"],"
    "\"Syscalls\":[{\"Names\":[\"read\",\"write\"],\"Action\":\"SCMP_ACT_ALLOW\"},"
    "{\"Names\":[\"personality\"],\"Action\":\"SCMP_ACT_ERRNO\",\"errnoret\":1,"
    "\"Args\":[{\"Value\":\"4294967295\",\"Op\":\"SCMP_CMP_EQ\"}]}]},"
    "\"MaskedPaths\":[\"/proc/kcore\"]}},\"sandboxPidns\":true}";

TEST(create_container_fields)
{
    Grpc__CreateContainerRequest *r = (Grpc__CreateContainerRequest *)parse_ok(
        &grpc__create_container_request__descriptor, create_container_in);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_STR(r->container_id, "c1");
    CHECK_STR(r->exec_id, "e1");
    CHECK(r->sandbox_pidns);
    CHECK(r->string_user == NULL);
    CHECK_INT(r->n_storages, 1);
    CHECK_STR(r->storages[0]->mount_point, "/run/kata-containers/shared/containers/c1/rootfs");
    CHECK_INT(r->storages[0]->fs_group->group_id, 1000);
    CHECK_INT(r->storages[0]->fs_group->group_change_policy, TYPES__FSGROUP_CHANGE_POLICY__OnRootMismatch);

    Grpc__Spec *spec = r->oci;
    CHECK_STR(spec->version, "1.0.2");
    CHECK_INT(spec->process->n_args, 3);
    CHECK_STR(spec->process->args[2], "echo hi");
    CHECK_STR(spec->process->env[1], "TERM=xterm");
    CHECK_INT(spec->process->user->n_additionalgids, 2);
    CHECK_INT(spec->process->user->additionalgids[1], 2);
    CHECK_INT(spec->process->oomscoreadj, -999);
    CHECK_INT(spec->process->rlimits[0]->soft, 1024);
    CHECK(spec->root->readonly);
    CHECK_INT(spec->n_mounts, 1);
    CHECK_STR(spec->mounts[0]->options[1], "noexec");
    CHECK_INT(spec->n_annotations, 2);
    CHECK_STR(spec->annotations[0]->key, "io.kubernetes.cri.container-type");
    CHECK_STR(spec->annotations[0]->value, "container");
    CHECK_STR(spec->annotations[1]->value, "");

    Grpc__Linux *lx = spec->linux;
    CHECK_INT(lx->n_sysctl, 1);
    CHECK_STR(lx->sysctl[0]->key, "net.ipv4.ip_forward");
    CHECK_INT(lx->n_namespaces, 2);
    CHECK_STR(lx->namespaces[1]->path, "/var/run/netns/x");
    CHECK_STR(lx->namespaces[0]->path, "");
    CHECK_INT(lx->seccomp->n_syscalls, 2);
    CHECK_INT(lx->seccomp->syscalls[0]->errno_ret_case, GRPC__LINUX_SYSCALL__ERRNO_RET__NOT_SET);
    CHECK_INT(lx->seccomp->syscalls[1]->errno_ret_case, GRPC__LINUX_SYSCALL__ERRNO_RET_ERRNORET);
    CHECK_INT(lx->seccomp->syscalls[1]->errnoret, 1);
    CHECK_INT(lx->seccomp->syscalls[1]->args[0]->value, 4294967295u);
    CHECK_STR(lx->seccomp->syscalls[1]->args[0]->op, "SCMP_CMP_EQ");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

TEST(create_container_roundtrip)
{
    CHECK(roundtrip(&grpc__create_container_request__descriptor, create_container_in, create_container_out));
}

TEST(oneof_zero_is_kept)
{
    /* A oneof member is output whenever it is the set case, even with its default value. */
    CHECK(roundtrip(&grpc__linux_syscall__descriptor, "{\"Names\":[\"x\"],\"errnoret\":0}",
                    "{\"Names\":[\"x\"],\"errnoret\":0}"));
    CHECK(roundtrip(&grpc__linux_syscall__descriptor, "{\"Names\":[\"x\"],\"errnoret\":null}",
                    "{\"Names\":[\"x\"]}"));
}

/* ---- networking: enums and json names ---------------------------------------------------------------- */

TEST(update_interface_enums)
{
    const char *in = "{\"interface\": {\"device\": \"eth0\", \"name\": \"eth0\", \"mtu\": 1500,"
                     " \"hwAddr\": \"02:00:ca:fe:00:01\", \"raw_flags\": 4163,"
                     " \"IPAddresses\": [{\"family\": \"v6\", \"address\": \"fe80::1\", \"mask\": \"64\"},"
                     "                   {\"family\": 0, \"address\": \"10.0.0.2\", \"mask\": \"24\"},"
                     "                   {\"family\": 1, \"address\": \"::2\"}]}}";
    const char *out = "{\"interface\":{\"device\":\"eth0\",\"name\":\"eth0\","
                      "\"IPAddresses\":[{\"family\":\"v6\",\"address\":\"fe80::1\",\"mask\":\"64\"},"
                      "{\"address\":\"10.0.0.2\",\"mask\":\"24\"},{\"family\":\"v6\",\"address\":\"::2\"}],"
                      "\"mtu\":\"1500\",\"hwAddr\":\"02:00:ca:fe:00:01\",\"rawFlags\":4163}}";
    CHECK(roundtrip(&grpc__update_interface_request__descriptor, in, out));

    Grpc__UpdateInterfaceRequest *r =
        (Grpc__UpdateInterfaceRequest *)parse_ok(&grpc__update_interface_request__descriptor, in);
    CHECK(r && r->interface && r->interface->n_ipaddresses == 3);
    if (r && r->interface && r->interface->n_ipaddresses == 3) {
        CHECK_INT(r->interface->ipaddresses[0]->family, TYPES__IPFAMILY__v6);
        CHECK_INT(r->interface->ipaddresses[1]->family, TYPES__IPFAMILY__v4);
        CHECK_INT(r->interface->mtu, 1500);
        CHECK_INT(r->interface->raw_flags, 4163);
    }
    protobuf_c_message_free_unpacked((ProtobufCMessage *)r, NULL);
}

TEST(enum_output_from_c_struct)
{
    Grpc__HealthCheckResponse h = GRPC__HEALTH_CHECK_RESPONSE__INIT;
    char *s = plain(&h.base);
    CHECK_STR(s, "{}");
    free(s);
    h.status = GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    s = plain(&h.base);
    CHECK_STR(s, "{\"status\":\"NOT_SERVING\"}");
    free(s);
    h.status = 42; /* open enum: unknown numbers are printed as numbers */
    s = plain(&h.base);
    CHECK_STR(s, "{\"status\":42}");
    free(s);
}

/* ---- bytes, 64-bit integers, Empty ------------------------------------------------------------------- */

TEST(bytes_base64)
{
    CHECK(roundtrip(&grpc__read_stream_response__descriptor, "{\"data\":\"aGVsbG8gd29ybGQ=\"}",
                    "{\"data\":\"aGVsbG8gd29ybGQ=\"}"));
    /* unpadded and URL-safe input, standard padded output */
    CHECK(roundtrip(&grpc__read_stream_response__descriptor, "{\"data\":\"aGVsbG8gd29ybGQ\"}",
                    "{\"data\":\"aGVsbG8gd29ybGQ=\"}"));
    CHECK(roundtrip(&grpc__read_stream_response__descriptor, "{\"data\":\"-_8\"}", "{\"data\":\"+/8=\"}"));
    CHECK(roundtrip(&grpc__read_stream_response__descriptor, "{\"data\":\"\"}", "{}"));

    Grpc__ReadStreamResponse *r =
        (Grpc__ReadStreamResponse *)parse_ok(&grpc__read_stream_response__descriptor, "{\"data\":\"AP8A\"}");
    CHECK(r && r->data.len == 3);
    if (r && r->data.len == 3)
        CHECK(r->data.data[0] == 0 && r->data.data[1] == 0xff && r->data.data[2] == 0);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)r, NULL);

    uint8_t raw[] = {'h', 'i', 0, 1, 2};
    Grpc__ReadStreamResponse o = GRPC__READ_STREAM_RESPONSE__INIT;
    o.data.data = raw;
    o.data.len = sizeof(raw);
    char *s = plain(&o.base);
    CHECK_STR(s, "{\"data\":\"aGkAAQI=\"}");
    free(s);
}

TEST(int64_strings_and_numbers)
{
    const ProtobufCMessageDescriptor *d = &grpc__copy_file_request__descriptor;
    CHECK(roundtrip(
        d, "{\"path\":\"/run/f\",\"fileSize\":\"123\",\"offset\":456,\"file_mode\":420,\"uid\":-1}",
        "{\"path\":\"/run/f\",\"fileSize\":\"123\",\"fileMode\":420,\"uid\":-1,\"offset\":\"456\"}"));
    /* beyond 2^53 a string keeps every digit */
    CHECK(roundtrip(d, "{\"fileSize\":\"9007199254740993\",\"offset\":\"-9223372036854775808\"}",
                    "{\"fileSize\":\"9007199254740993\",\"offset\":\"-9223372036854775808\"}"));
    CHECK(roundtrip(d, "{\"fileSize\":9223372036854775807}", "{\"fileSize\":\"9223372036854775807\"}"));
    /* integral floats and exponents are accepted for integer fields */
    CHECK(roundtrip(d, "{\"fileSize\":1e3,\"gid\":\"7.0\",\"dirMode\":4.0}",
                    "{\"fileSize\":\"1000\",\"dirMode\":4,\"gid\":7}"));
    CHECK(roundtrip(&grpc__memory_stats__descriptor, "{\"cache\":\"18446744073709551615\"}",
                    "{\"cache\":\"18446744073709551615\"}"));
    CHECK(roundtrip(&grpc__add_swap_request__descriptor, "{\"PCIPath\":[1,\"2\",4294967295]}",
                    "{\"PCIPath\":[1,2,4294967295]}"));
}

TEST(empty_message)
{
    CHECK(roundtrip(&google__protobuf__empty__descriptor, "{}", "{}"));
    CHECK(roundtrip(&google__protobuf__empty__descriptor, " \n{ }\t", "{}"));
    CHECK(roundtrip(&grpc__create_container_request__descriptor, "{\"OCI\":{}}", "{\"OCI\":{}}"));
    CHECK(roundtrip(&grpc__create_container_request__descriptor,
                    "{\"containerId\":\"\",\"sandboxPidns\":false,\"devices\":[],\"OCI\":null}", "{}"));
    CHECK(fails_with(&google__protobuf__empty__descriptor, "{\"x\":1}", "unknown field \"x\"",
                     "google.protobuf.Empty"));
}

/* ---- maps -------------------------------------------------------------------------------------------- */

TEST(maps)
{
    CHECK(roundtrip(&grpc__memory_stats__descriptor,
                    "{\"stats\":{\"rss\":1024,\"cache\":\"0\"},\"useHierarchy\":true}",
                    "{\"useHierarchy\":true,\"stats\":{\"rss\":\"1024\",\"cache\":\"0\"}}"));
    CHECK(roundtrip(&grpc__cgroup_stats__descriptor,
                    "{\"hugetlb_stats\":{\"2MB\":{\"usage\":2097152,\"failcnt\":1},\"1GB\":{}}}",
                    "{\"hugetlbStats\":{\"2MB\":{\"usage\":\"2097152\",\"failcnt\":\"1\"},\"1GB\":{}}}"));

    /* built by hand, as a reply unpacked from the wire would be */
    Grpc__MemoryStats__StatsEntry e1 = GRPC__MEMORY_STATS__STATS_ENTRY__INIT, e2 = e1;
    e1.key = "pgfault";
    e1.value = 7;
    e2.key = "zero";
    Grpc__MemoryStats__StatsEntry *entries[] = {&e1, &e2};
    Grpc__MemoryStats ms = GRPC__MEMORY_STATS__INIT;
    ms.n_stats = 2;
    ms.stats = entries;
    char *s = plain(&ms.base);
    CHECK_STR(s, "{\"stats\":{\"pgfault\":\"7\",\"zero\":\"0\"}}");
    free(s);

    /* not a map: BlkioStatsEntry ends in "Entry" but has four fields */
    CHECK(roundtrip(&grpc__blkio_stats__descriptor,
                    "{\"ioServicedRecursive\":[{\"major\":8,\"op\":\"Read\",\"value\":3}]}",
                    "{\"ioServicedRecursive\":[{\"major\":\"8\",\"op\":\"Read\",\"value\":\"3\"}]}"));
}

/* ---- output formatting ------------------------------------------------------------------------------- */

TEST(pretty_and_escaping)
{
    Grpc__CopyFileRequest *r = (Grpc__CopyFileRequest *)parse_ok(
        &grpc__copy_file_request__descriptor, "{\"path\":\"/run/a \\\"b\\\"\\n\\u00e9\",\"uid\":5}");
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_STR(r->path, "/run/a \"b\"\n\xc3\xa9");
    char *p = plain(&r->base);
    CHECK_STR(p, "{\"path\":\"/run/a \\\"b\\\"\\n\xc3\xa9\",\"uid\":5}");
    char *pretty = pbjson_to_string(&r->base, 1);
    CHECK_STR(pretty, "{\n  \"path\": \"/run/a \\\"b\\\"\\n\xc3\xa9\",\n  \"uid\": 5\n}");
    struct json_object *o = pbjson_to_object(&r->base);
    CHECK(o && json_object_is_type(o, json_type_object));
    CHECK_INT(json_object_get_int(json_object_object_get(o, "uid")), 5);
    json_object_put(o);
    free(p);
    free(pretty);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    CHECK(pbjson_to_string(NULL, 0) == NULL);

    /* empty messages print as {} in pretty mode too */
    Grpc__CreateContainerRequest *c =
        (Grpc__CreateContainerRequest *)parse_ok(&grpc__create_container_request__descriptor, "{\"OCI\":{}}");
    char *cp = c ? pbjson_to_string(&c->base, 1) : NULL;
    CHECK_STR(cp, "{\n  \"OCI\": {}\n}");
    free(cp);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)c, NULL);
}

TEST(from_object)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "signal", json_object_new_int(9));
    json_object_object_add(o, "exec_id", json_object_new_string("e"));
    ka_err e = {0};
    Grpc__SignalProcessRequest *r =
        (Grpc__SignalProcessRequest *)pbjson_from_object(&grpc__signal_process_request__descriptor, o, &e);
    CHECK(r != NULL);
    if (r) {
        CHECK_INT(r->signal, 9);
        CHECK_STR(r->exec_id, "e");
        CHECK_STR(r->container_id, "");
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    json_object_put(o);
    CHECK(pbjson_from_object(&grpc__signal_process_request__descriptor, NULL, &e) == NULL);
    CHECK(strstr(e.msg, "expected an object") != NULL);
}

/* ---- input errors ------------------------------------------------------------------------------------ */

TEST(error_unknown_field)
{
    CHECK(fails_with(&grpc__create_container_request__descriptor, "{\"containerID\":\"x\"}",
                     "unknown field \"containerID\"", "grpc.CreateContainerRequest"));
    CHECK(fails_with(&grpc__create_container_request__descriptor,
                     "{\"OCI\":{\"Linux\":{\"Seccomp\":{\"bogus\":1}}}}",
                     "OCI.Linux.Seccomp: unknown field \"bogus\"", "grpc.LinuxSeccomp"));
    /* json names are matched exactly: only the first letter after an underscore is upper-cased */
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"FileSize\":1}", "unknown field \"FileSize\"",
                     NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"file_size\":1,\"fileSize\":2}",
                     "given more than once", NULL));
}

TEST(error_wrong_type)
{
    const ProtobufCMessageDescriptor *d = &grpc__create_container_request__descriptor;
    CHECK(fails_with(d, "{\"sandboxPidns\":\"true\"}", "sandboxPidns: expected a boolean, got string", NULL));
    CHECK(fails_with(d, "{\"sandboxPidns\":1}", "expected a boolean", NULL));
    CHECK(fails_with(d, "{\"containerId\":5}", "containerId: expected a string, got int", NULL));
    CHECK(fails_with(d, "{\"OCI\":[]}", "expected an object for message grpc.Spec", NULL));
    CHECK(fails_with(d, "{\"OCI\":{\"Mounts\":{}}}", "OCI.Mounts: expected an array", NULL));
    CHECK(
        fails_with(d, "{\"OCI\":{\"Process\":{\"Args\":[\"a\",null]}}}", "OCI.Process.Args[1]: null", NULL));
    CHECK(fails_with(d, "{\"OCI\":{\"Process\":{\"Args\":[\"a\",7]}}}",
                     "OCI.Process.Args[1]: expected a string", NULL));
    CHECK(fails_with(d, "{\"OCI\":{\"Annotations\":[\"a\"]}}", "expected an object (map)", NULL));
    CHECK(fails_with(d, "{\"OCI\":{\"Annotations\":{\"k\":1}}}", "OCI.Annotations[\"k\"]: expected a string",
                     NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"uid\":\"abc\"}", "\"abc\" is not an integer",
                     NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"uid\":1.5}", "is not an integer", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"uid\":true}", "expected an integer", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"uid\":\" 1\"}", "is not an integer", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"uid\":\"0x10\"}", "is not an integer", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"uid\":\"+1\"}", "is not an integer", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"uid\":\"NaN\"}", "is not an integer", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"uid\":\"\"}", "is not an integer", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "{\"path\":\"a\\u0000b\"}", "NUL", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "[]", "expected an object for message", NULL));
    CHECK(fails_with(&grpc__copy_file_request__descriptor, "null", "expected an object for message", NULL));
}

TEST(error_out_of_range)
{
    const ProtobufCMessageDescriptor *d = &grpc__copy_file_request__descriptor;
    CHECK(fails_with(d, "{\"uid\":2147483648}", "uid: value 2147483648 is out of range for int32", NULL));
    CHECK(fails_with(d, "{\"uid\":\"-2147483649\"}", "out of range for int32", NULL));
    CHECK(fails_with(d, "{\"fileMode\":-1}", "fileMode: value -1 is out of range for uint32", NULL));
    CHECK(fails_with(d, "{\"fileMode\":4294967296}", "out of range for uint32", NULL));
    CHECK(fails_with(d, "{\"fileSize\":\"9223372036854775808\"}", "out of range for int64", NULL));
    CHECK(fails_with(d, "{\"fileSize\":9223372036854775808}", "out of range for int64", NULL));
    CHECK(fails_with(d, "{\"fileSize\":\"99999999999999999999\"}", "out of range for int64", NULL));
    CHECK(fails_with(d, "{\"fileSize\":1e20}", "out of range", NULL));
    /* json-c would saturate these literals silently; they are caught in the text */
    CHECK(fails_with(d, "{\"fileSize\":99999999999999999999}", "beyond the 64-bit range", NULL));
    CHECK(fails_with(&grpc__memory_stats__descriptor, "{\"cache\":18446744073709551616}", "beyond the 64-bit",
                     NULL));
    CHECK(fails_with(d, "{\"fileSize\":-9223372036854775809}", "beyond the 64-bit range", NULL));
    CHECK(roundtrip(d, "{\"path\":\"99999999999999999999\",\"offset\":-9223372036854775808}",
                    "{\"path\":\"99999999999999999999\",\"offset\":\"-9223372036854775808\"}"));
    CHECK(fails_with(&grpc__memory_stats__descriptor, "{\"cache\":-1}", "out of range for uint64", NULL));
    CHECK(fails_with(&grpc__memory_stats__descriptor, "{\"stats\":{\"a\":\"-5\"}}", "stats[\"a\"]: value -5",
                     NULL));
    /* accepted edges */
    CHECK(roundtrip(d, "{\"uid\":-2147483648,\"gid\":2147483647,\"fileMode\":\"4294967295\"}",
                    "{\"fileMode\":4294967295,\"uid\":-2147483648,\"gid\":2147483647}"));
}

TEST(error_bad_base64)
{
    const ProtobufCMessageDescriptor *d = &grpc__read_stream_response__descriptor;
    CHECK(fails_with(d, "{\"data\":\"a\"}", "data: invalid base64", NULL));
    CHECK(fails_with(d, "{\"data\":\"ab!d\"}", "invalid base64", NULL));
    CHECK(fails_with(d, "{\"data\":\"ab=d\"}", "invalid base64", NULL));
    CHECK(fails_with(d, "{\"data\":\"abc==\"}", "invalid base64", NULL));
    CHECK(fails_with(d, "{\"data\":\"ab c\"}", "invalid base64", NULL));
    CHECK(fails_with(d, "{\"data\":5}", "expected a base64 string", NULL));
}

TEST(error_enum)
{
    const ProtobufCMessageDescriptor *d = &grpc__update_interface_request__descriptor;
    CHECK(fails_with(d, "{\"interface\":{\"IPAddresses\":[{\"family\":\"v5\"}]}}",
                     "interface.IPAddresses[0].family: unknown value \"v5\" for enum types.IPFamily", NULL));
    CHECK(fails_with(d, "{\"interface\":{\"IPAddresses\":[{\"family\":\"V6\"}]}}", "unknown value \"V6\"",
                     NULL));
    CHECK(fails_with(d, "{\"interface\":{\"IPAddresses\":[{\"family\":true}]}}", "expected an enum name",
                     NULL));
    CHECK(fails_with(d, "{\"interface\":{\"IPAddresses\":[{\"family\":4294967296}]}}", "out of range", NULL));
}

TEST(error_invalid_json)
{
    const ProtobufCMessageDescriptor *d = &grpc__create_container_request__descriptor;
    CHECK(fails_with(d, "", "invalid JSON", NULL));
    CHECK(fails_with(d, "{", "invalid JSON", NULL));
    CHECK(fails_with(d, "{\"containerId\":\"c1\"", "invalid JSON", NULL));
    CHECK(fails_with(d, "{\"containerId\":\"c1\"} x", "invalid JSON", NULL));
    CHECK(fails_with(d, "{} {}", "invalid JSON", NULL));
    CHECK(fails_with(d, "{'containerId':'c1'}", "invalid JSON", NULL));
    CHECK(fails_with(d, "{\"containerId\":\"c1\",}", "invalid JSON", NULL));
    CHECK(fails_with(d, "{\"containerId\":\"\xff\"}", "invalid JSON", NULL));
    CHECK(fails_with(d, "{\"sandboxPidns\":tru}", "invalid JSON", NULL));
    ka_err e = {0};
    CHECK(pbjson_parse(d, NULL, &e) == NULL && e.status == KA_INVALID_ARGUMENT);
    CHECK(pbjson_parse(d, "{", NULL) == NULL); /* no error object: still just NULL */
}

/* A failure deep inside a half-built message must free everything built so far (valgrind/ASan check it). */
TEST(error_partial_message_freed)
{
    const ProtobufCMessageDescriptor *d = &grpc__create_container_request__descriptor;
    CHECK(fails_with(d,
                     "{\"containerId\":\"c\",\"storages\":[{\"driver\":\"d\",\"options\":[\"a\",\"b\"]},"
                     "{\"fsGroup\":{\"groupChangePolicy\":\"Never\"}}]}",
                     "storages[1].fsGroup.groupChangePolicy: unknown value", NULL));
    CHECK(
        fails_with(d,
                   "{\"OCI\":{\"Annotations\":{\"a\":\"1\",\"b\":\"2\"},\"Linux\":{\"Seccomp\":{\"Syscalls\":"
                   "[{\"Names\":[\"read\"],\"errnoret\":1,\"Args\":[{\"Op\":\"EQ\"},{\"Index\":-1}]}]}}}}",
                   "OCI.Linux.Seccomp.Syscalls[0].Args[1].Index: value -1 is out of range for uint64", NULL));
    CHECK(fails_with(&grpc__cgroup_stats__descriptor,
                     "{\"hugetlbStats\":{\"2MB\":{\"usage\":1},\"1GB\":{\"x\":1}}}",
                     "hugetlbStats[\"1GB\"]: unknown field \"x\" in message grpc.HugetlbStats", NULL));
    CHECK(fails_with(&grpc__cgroup_stats__descriptor, "{\"hugetlbStats\":{\"2MB\":null}}", "null", NULL));
}

TEST(error_hostile_nesting)
{
    const ProtobufCMessageDescriptor *d = &grpc__create_container_request__descriptor;
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 64);
    CHECK(deep != NULL);
    if (!deep)
        return;
    /* 100000 nested arrays: stopped by the tokener's depth limit, not by the stack */
    size_t n = (size_t)sprintf(deep, "{\"OCI\":");
    memset(deep + n, '[', depth);
    memset(deep + n + depth, ']', depth);
    strcpy(deep + n + 2 * depth, "}");
    CHECK(fails_with(d, deep, "invalid JSON", NULL));
    /* the same with objects */
    n = 0;
    for (size_t i = 0; i < depth / 8; i++)
        n += (size_t)sprintf(deep + n, "{\"a\":");
    deep[n] = '\0';
    CHECK(fails_with(d, deep, "invalid JSON", NULL));
    free(deep);
    /* nested within the tokener's limit but not where the schema has messages */
    CHECK(fails_with(d, "{\"OCI\":{\"Process\":{\"User\":{\"UID\":{\"a\":{\"b\":{}}}}}}}",
                     "OCI.Process.User.UID: expected an integer", NULL));
}

/* ---- a hand-written descriptor for what the agent protos lack: float/double, proto2-style optional,
 * int and bool map keys, a oneof holding a message, and a recursive message ---------------------------- */

typedef struct IntEntry {
    ProtobufCMessage base;
    int32_t key;
    char *value;
} IntEntry;

typedef struct BoolEntry {
    ProtobufCMessage base;
    protobuf_c_boolean key;
    double value;
} BoolEntry;

typedef struct Scalars {
    ProtobufCMessage base;
    float f_float;
    double f_double;
    protobuf_c_boolean has_opt_int;
    int32_t opt_int;
    size_t n_int_map;
    IntEntry **int_map;
    size_t n_bool_map;
    BoolEntry **bool_map;
    size_t n_reals;
    double *reals;
    int64_t s64;
    char *opt_str;
    uint32_t choice_case;
    union {
        struct Scalars *choice_msg;
        char *choice_str;
    };
} Scalars;

static const ProtobufCMessageDescriptor int_entry_desc, bool_entry_desc, scalars_desc;

static void int_entry_init(ProtobufCMessage *m)
{
    *(IntEntry *)m = (IntEntry){PROTOBUF_C_MESSAGE_INIT(&int_entry_desc), 0, (char *)protobuf_c_empty_string};
}

static void bool_entry_init(ProtobufCMessage *m)
{
    *(BoolEntry *)m = (BoolEntry){PROTOBUF_C_MESSAGE_INIT(&bool_entry_desc), 0, 0};
}

static void scalars_init(ProtobufCMessage *m)
{
    memset(m, 0, sizeof(Scalars));
    *m = (ProtobufCMessage)PROTOBUF_C_MESSAGE_INIT(&scalars_desc);
}

#define FIELD(name, id, label, type, q, off, desc, def, flags)                                               \
    {                                                                                                        \
        name, id, PROTOBUF_C_LABEL_##label, PROTOBUF_C_TYPE_##type, q, off, desc, def, flags, 0, NULL, NULL  \
    }

static const ProtobufCIntRange ranges_2[] = {{1, 0}, {0, 2}};
static const unsigned entry_by_name[] = {0, 1};

static const ProtobufCFieldDescriptor int_entry_fields[] = {
    FIELD("key", 1, NONE, INT32, 0, offsetof(IntEntry, key), NULL, NULL, 0),
    FIELD("value", 2, NONE, STRING, 0, offsetof(IntEntry, value), NULL, &protobuf_c_empty_string, 0),
};
static const ProtobufCMessageDescriptor int_entry_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                          "test.Scalars.IntMapEntry",
                                                          "IntMapEntry",
                                                          "IntEntry",
                                                          "test",
                                                          sizeof(IntEntry),
                                                          2,
                                                          int_entry_fields,
                                                          entry_by_name,
                                                          1,
                                                          ranges_2,
                                                          int_entry_init,
                                                          NULL,
                                                          NULL,
                                                          NULL};

static const ProtobufCFieldDescriptor bool_entry_fields[] = {
    FIELD("key", 1, NONE, BOOL, 0, offsetof(BoolEntry, key), NULL, NULL, 0),
    FIELD("value", 2, NONE, DOUBLE, 0, offsetof(BoolEntry, value), NULL, NULL, 0),
};
static const ProtobufCMessageDescriptor bool_entry_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                           "test.Scalars.BoolMapEntry",
                                                           "BoolMapEntry",
                                                           "BoolEntry",
                                                           "test",
                                                           sizeof(BoolEntry),
                                                           2,
                                                           bool_entry_fields,
                                                           entry_by_name,
                                                           1,
                                                           ranges_2,
                                                           bool_entry_init,
                                                           NULL,
                                                           NULL,
                                                           NULL};

static const ProtobufCFieldDescriptor scalars_fields[] = {
    FIELD("f_float", 1, NONE, FLOAT, 0, offsetof(Scalars, f_float), NULL, NULL, 0),
    FIELD("f_double", 2, NONE, DOUBLE, 0, offsetof(Scalars, f_double), NULL, NULL, 0),
    FIELD("opt_int", 3, OPTIONAL, INT32, offsetof(Scalars, has_opt_int), offsetof(Scalars, opt_int), NULL,
          NULL, 0),
    FIELD("int_map", 4, REPEATED, MESSAGE, offsetof(Scalars, n_int_map), offsetof(Scalars, int_map),
          &int_entry_desc, NULL, 0),
    FIELD("bool_map", 5, REPEATED, MESSAGE, offsetof(Scalars, n_bool_map), offsetof(Scalars, bool_map),
          &bool_entry_desc, NULL, 0),
    FIELD("reals", 6, REPEATED, DOUBLE, offsetof(Scalars, n_reals), offsetof(Scalars, reals), NULL, NULL, 0),
    FIELD("s64", 7, NONE, SINT64, 0, offsetof(Scalars, s64), NULL, NULL, 0),
    FIELD("opt_str", 8, OPTIONAL, STRING, 0, offsetof(Scalars, opt_str), NULL, NULL, 0),
    FIELD("choice_msg", 9, NONE, MESSAGE, offsetof(Scalars, choice_case), offsetof(Scalars, choice_msg),
          &scalars_desc, NULL, PROTOBUF_C_FIELD_FLAG_ONEOF),
    FIELD("choice_str", 10, NONE, STRING, offsetof(Scalars, choice_case), offsetof(Scalars, choice_str), NULL,
          &protobuf_c_empty_string, PROTOBUF_C_FIELD_FLAG_ONEOF),
};
static const unsigned scalars_by_name[] = {4, 8, 9, 1, 0, 3, 2, 7, 5, 6};
static const ProtobufCIntRange scalars_ranges[] = {{1, 0}, {0, 10}};
static const ProtobufCMessageDescriptor scalars_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                        "test.Scalars",
                                                        "Scalars",
                                                        "Scalars",
                                                        "test",
                                                        sizeof(Scalars),
                                                        10,
                                                        scalars_fields,
                                                        scalars_by_name,
                                                        1,
                                                        scalars_ranges,
                                                        scalars_init,
                                                        NULL,
                                                        NULL,
                                                        NULL};

TEST(floats_and_doubles)
{
    CHECK(roundtrip(&scalars_desc,
                    "{\"fFloat\":0.1,\"f_double\":\"NaN\",\"reals\":[1.5,\"Infinity\",\"-Infinity\","
                    "-2.5e-7,1e300,\"3.25\",7]}",
                    "{\"fFloat\":0.1,\"fDouble\":\"NaN\",\"reals\":[1.5,\"Infinity\",\"-Infinity\",-2.5e-07,"
                    "1e+300,3.25,7]}"));
    CHECK(roundtrip(&scalars_desc, "{\"fFloat\":\"-Infinity\",\"fDouble\":0.30000000000000004}",
                    "{\"fFloat\":\"-Infinity\",\"fDouble\":0.30000000000000004}"));
    CHECK(roundtrip(&scalars_desc, "{\"fFloat\":0,\"fDouble\":0.0}", "{}"));
    CHECK(fails_with(&scalars_desc, "{\"fFloat\":1e39}", "fFloat: value 1e+39 is out of range for float",
                     NULL));
    CHECK(fails_with(&scalars_desc, "{\"fDouble\":\"1.5x\"}", "\"1.5x\" is not a number", NULL));
    CHECK(fails_with(&scalars_desc, "{\"fDouble\":\"nan\"}", "is not a number", NULL));
    CHECK(fails_with(&scalars_desc, "{\"fDouble\":\" 1\"}", "is not a number", NULL));
    CHECK(fails_with(&scalars_desc, "{\"fDouble\":\"0x10\"}", "is not a number", NULL));
    CHECK(fails_with(&scalars_desc, "{\"fDouble\":true}", "expected a number, got boolean", NULL));
}

TEST(optional_and_sint64)
{
    /* with a has_ flag, an explicit zero is kept; without the field it stays absent */
    CHECK(roundtrip(&scalars_desc, "{\"optInt\":0,\"optStr\":\"\"}", "{\"optInt\":0,\"optStr\":\"\"}"));
    CHECK(roundtrip(&scalars_desc, "{\"s64\":\"-42\"}", "{\"s64\":\"-42\"}"));
    Scalars *s = (Scalars *)parse_ok(&scalars_desc, "{\"opt_int\":-3}");
    CHECK(s && s->has_opt_int && s->opt_int == -3 && s->opt_str == NULL);
    protobuf_c_message_free_unpacked((ProtobufCMessage *)s, NULL);
}

TEST(map_key_types)
{
    CHECK(roundtrip(&scalars_desc,
                    "{\"intMap\":{\"-5\":\"neg\",\"7\":\"\"},\"boolMap\":{\"true\":1.5,\"false\":0}}",
                    "{\"intMap\":{\"-5\":\"neg\",\"7\":\"\"},\"boolMap\":{\"true\":1.5,\"false\":0}}"));
    CHECK(fails_with(&scalars_desc, "{\"intMap\":{\"x\":\"y\"}}",
                     "intMap[\"x\"]: map key \"x\" is not a valid int32", NULL));
    CHECK(fails_with(&scalars_desc, "{\"intMap\":{\"1e3\":\"y\"}}", "is not a valid int32", NULL));
    CHECK(fails_with(&scalars_desc, "{\"intMap\":{\"2147483648\":\"y\"}}", "out of range for int32", NULL));
    CHECK(fails_with(&scalars_desc, "{\"boolMap\":{\"yes\":1}}", "map key \"yes\" is not a boolean", NULL));
}

TEST(oneof_message_member)
{
    CHECK(roundtrip(&scalars_desc, "{\"choiceMsg\":{\"choiceMsg\":{\"choiceStr\":\"deep\"}}}",
                    "{\"choiceMsg\":{\"choiceMsg\":{\"choiceStr\":\"deep\"}}}"));
    CHECK(roundtrip(&scalars_desc, "{\"choiceStr\":\"\"}", "{\"choiceStr\":\"\"}"));
    CHECK(roundtrip(&scalars_desc, "{\"choiceMsg\":{}}", "{\"choiceMsg\":{}}"));
    CHECK(fails_with(&scalars_desc, "{\"choiceMsg\":{},\"choiceStr\":\"x\"}",
                     "choiceStr: only one member of a oneof", "\"choice_msg\""));
    /* the half-built member message is owned by its parent through the oneof case and freed with it */
    CHECK(fails_with(&scalars_desc, "{\"choiceMsg\":{\"reals\":[1,2],\"choiceMsg\":{\"fFloat\":\"bad\"}}}",
                     "choiceMsg.choiceMsg.fFloat: \"bad\" is not a number", NULL));
}

/* Objects built in memory bypass the tokener's depth limit: the decoder has its own. */
static struct json_object *nested(int levels)
{
    struct json_object *o = json_object_new_object();
    for (int i = 0; i < levels; i++) {
        struct json_object *outer = json_object_new_object();
        json_object_object_add(outer, "choiceMsg", o);
        o = outer;
    }
    return o;
}

TEST(message_depth_limit)
{
    ka_err e = {0};
    struct json_object *ok = nested(40), *deep = nested(5000);
    ProtobufCMessage *m = pbjson_from_object(&scalars_desc, ok, &e);
    CHECK(m != NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    CHECK(pbjson_from_object(&scalars_desc, deep, &e) == NULL);
    CHECK(strstr(e.msg, "nested too deeply") != NULL);
    json_object_put(ok);
    json_object_put(deep);
}

RUN(create_container_fields, create_container_roundtrip, oneof_zero_is_kept, update_interface_enums,
    enum_output_from_c_struct, bytes_base64, int64_strings_and_numbers, empty_message, maps,
    pretty_and_escaping, from_object, error_unknown_field, error_wrong_type, error_out_of_range,
    error_bad_base64, error_enum, error_invalid_json, error_partial_message_freed, error_hostile_nesting,
    floats_and_doubles, optional_and_sint64, map_key_types, oneof_message_member, message_depth_limit)
