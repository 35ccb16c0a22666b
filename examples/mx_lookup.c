/* Print the mail routing of a domain (MX hosts in the order to try, with
 * their addresses), or a plain A/AAAA/TXT/MX lookup, using the resolver. */
#include <smtpkit/dns.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static int print_route(const sk_route *rt)
{
    printf("route %s %s implicit=%d", rt->domain, sk_route_status_name(rt->status),
           rt->implicit_mx);
    if (rt->status != SK_ROUTE_OK) printf(" %s %s", rt->enhanced, rt->text);
    printf("\n");
    for (size_t i = 0; i < rt->nhosts; i++) {
        printf("mx %u %s", rt->hosts[i].preference, rt->hosts[i].name);
        for (size_t k = 0; k < rt->hosts[i].naddrs; k++) printf(" %s", rt->hosts[i].addrs[k].ip);
        printf("\n");
    }
    if (rt->status == SK_ROUTE_OK) return 0;
    return rt->permanent ? EX_UNAVAILABLE : EX_TEMPFAIL;
}

static void print_lookup(void *ctx, const sk_dns_result *res)
{
    int *code = ctx;
    printf("lookup %s %s count=%zu\n", res->name, sk_dns_status_name(res->status), res->count);
    for (size_t i = 0; i < res->count; i++) printf("value %s\n", res->values[i]);
    *code = res->status == SK_DNS_OK         ? 0
            : res->status == SK_DNS_TEMPFAIL ? EX_TEMPFAIL
                                             : EX_UNAVAILABLE;
}

static void usage(void)
{
    fprintf(stderr, "usage: mx_lookup [--dns-server IP:PORT] [--timeout-ms N] [--tries N]\n"
                    "                 [--count N] [--type A|AAAA|TXT|MX] DOMAIN\n");
    exit(EX_USAGE);
}

int main(int argc, char **argv)
{
    sk_resolver_opts o = {0};
    const char *name = NULL, *type = NULL;
    int count = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 < argc && strcmp(a, "--dns-server") == 0)
            o.server = argv[++i];
        else if (i + 1 < argc && strcmp(a, "--timeout-ms") == 0)
            o.timeout_ms = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(a, "--tries") == 0)
            o.tries = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(a, "--count") == 0)
            count = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(a, "--type") == 0)
            type = argv[++i];
        else if (a[0] != '-' && !name)
            name = a;
        else
            usage();
    }
    if (!name || count < 1) usage();
    sk_error err;
    int code = 0;
    if (type) {
        static const struct {
            const char *name;
            sk_dns_type type;
        } types[] = {
            {"A", SK_DNS_A}, {"AAAA", SK_DNS_AAAA}, {"TXT", SK_DNS_TXT}, {"MX", SK_DNS_MX}};
        size_t k = 0;
        while (k < sizeof types / sizeof types[0] && strcmp(types[k].name, type) != 0) k++;
        if (k == sizeof types / sizeof types[0]) usage();
        if (sk_dns_lookup_sync(&o, name, types[k].type, print_lookup, &code, &err) != SK_OK) {
            fprintf(stderr, "mx_lookup: %s\n", err.text);
            return err.err == SK_ERR_CONFIG ? EX_CONFIG : EX_SOFTWARE;
        }
        return code;
    }
    /* --count repeats the lookup: the order among equal preferences is
     * random each time (RFC 5321 5.1). */
    for (int i = 0; i < count; i++) {
        sk_route *rt;
        if (sk_dns_route_sync(&o, name, &rt, &err) != SK_OK) {
            fprintf(stderr, "mx_lookup: %s\n", err.text);
            return err.err == SK_ERR_CONFIG ? EX_CONFIG : EX_SOFTWARE;
        }
        code = print_route(rt);
        sk_route_free(rt);
    }
    return code;
}
