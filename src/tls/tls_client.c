/* Client-side TLS with OpenSSL 3: contexts that verify the chain and the
 * host name (RFC 6125 via X509_VERIFY_PARAM), and the TLS facts a caller
 * needs to diagnose a server (version, cipher, verification, peer chain). */
#include "tls/tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

static const char *const mode_names[] = {
    [SK_TLS_DEFAULT] = "default",
    [SK_TLS_STARTTLS] = "starttls",
    [SK_TLS_STARTTLS_OPPORTUNISTIC] = "opportunistic",
    [SK_TLS_IMPLICIT] = "implicit",
    [SK_TLS_NONE] = "none",
};
_Static_assert(sizeof mode_names / sizeof mode_names[0] == SK_TLS__COUNT, "mode_names");

const char *sk_tls_mode_name(sk_tls_mode m)
{
    if ((unsigned)m >= SK_TLS__COUNT) return "unknown";
    return mode_names[m];
}

sk_err sk_tls_mode_parse(const char *name, sk_tls_mode *out)
{
    for (int m = 0; name && m < SK_TLS__COUNT; m++)
        if (!strcasecmp(name, mode_names[m])) {
            *out = (sk_tls_mode)m;
            return SK_OK;
        }
    return SK_ERR_INVAL;
}

void sk_tls_error_string(char *out, size_t n)
{
    unsigned long e;
    size_t used = 0;
    out[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        if (used < n) {
            int w = snprintf(out + used, n - used, "%s%s", used ? "; " : "", one);
            if (w > 0) used += (size_t)w;
        }
    }
}

/* ---- a socket BIO that does not raise SIGPIPE and records what the peer
 * sent first ---- */

static int sock_write(BIO *b, const char *p, int n)
{
    sk_tls_sock *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t w = send(s->fd, p, (size_t)n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)w;
}

static int sock_read(BIO *b, char *p, int n)
{
    sk_tls_sock *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = recv(s->fd, p, (size_t)n, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(b);
    if (r > 0 && s->nfirst < sizeof s->first) {
        size_t k = sizeof s->first - s->nfirst;
        if (k > (size_t)r) k = (size_t)r;
        memcpy(s->first + s->nfirst, p, k);
        s->nfirst += k;
    }
    return (int)r;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

void sk_tls_sock_release(sk_tls_sock *sock)
{
    if (sock->meth) BIO_meth_free(sock->meth);
    sock->meth = NULL;
}

SSL_CTX *sk_tls_client_ctx_new(const char *ca_file, sk_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_TLS, "cannot create a TLS context");
        return NULL;
    }
    /* RFC 8996 deprecates TLS 1.0 and 1.1; RFC 8314 4.1 asks for 1.2+. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        char why[256];
        sk_tls_error_string(why, sizeof why);
        sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS, "cannot load CA certificates from %s: %s",
                     ca_file ? ca_file : "the system store", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* The handshake completes whatever the verification result; the caller
     * reads SSL_get_verify_result and decides (and can show the chain). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

SSL *sk_tls_client_ssl_new(SSL_CTX *ctx, sk_tls_sock *sock, const char *name, sk_error *err)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) goto nomem;
    if (!sock->meth) {
        /* A fixed type index: BIO_get_new_index would use up one per call. */
        sock->meth = BIO_meth_new(200 | BIO_TYPE_SOURCE_SINK, "sk_socket");
        if (!sock->meth) goto nomem;
        BIO_meth_set_write(sock->meth, sock_write);
        BIO_meth_set_read(sock->meth, sock_read);
        BIO_meth_set_ctrl(sock->meth, sock_ctrl);
        BIO_meth_set_create(sock->meth, sock_create);
    }
    BIO *bio = BIO_new(sock->meth);
    if (!bio) goto nomem;
    BIO_set_data(bio, sock);
    SSL_set_bio(ssl, bio, bio);

    unsigned char addr[16];
    int is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    /* RFC 6066 3: SNI carries host names only, never literal addresses. */
    if (!is_ip && !SSL_set_tlsext_host_name(ssl, name)) goto bad_name;
    if (is_ip ? !X509_VERIFY_PARAM_set1_ip_asc(vp, name) : !SSL_set1_host(ssl, name)) goto bad_name;
    /* RFC 6125 6.4.3: a wildcard matches one whole left-most label. */
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return ssl;
bad_name:
    sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS, "cannot verify against the name '%s'", name);
    SSL_free(ssl);
    return NULL;
nomem:
    SSL_free(ssl);
    sk_error_set(err, SK_ERR_NOMEM, SK_STEP_TLS, "cannot create a TLS session");
    return NULL;
}

static void name_line(X509_NAME *n, char *out, size_t size)
{
    out[0] = '\0';
    BIO *m = BIO_new(BIO_s_mem());
    if (!m) return;
    X509_NAME_print_ex(m, n, 0, XN_FLAG_RFC2253);
    char *p;
    long len = BIO_get_mem_data(m, &p);
    if (len > 0) snprintf(out, size, "%.*s", (int)len, p);
    BIO_free(m);
}

static int64_t asn1_seconds(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm)) return 0;
    return (int64_t)timegm(&tm);
}

static void san_line(X509 *x, char *out, size_t size)
{
    out[0] = '\0';
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (!names) return;
    size_t used = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char one[300] = "";
        if (g->type == GEN_DNS) {
            snprintf(one, sizeof one, "DNS:%.*s", ASN1_STRING_length(g->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN] = "?";
            int len = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
            if (len == 4 || len == 16) inet_ntop(len == 4 ? AF_INET : AF_INET6, d, ip, sizeof ip);
            snprintf(one, sizeof one, "IP:%s", ip);
        } else {
            continue;
        }
        int w = snprintf(out + used, size - used, "%s%s", used ? ", " : "", one);
        if (w < 0 || (size_t)w >= size - used) break; /* keep whole entries only */
        used += (size_t)w;
    }
    GENERAL_NAMES_free(names);
}

void sk_tls_info_fill(SSL *ssl, const char *name, int insecure, sk_tls_info *info)
{
    memset(info, 0, sizeof *info);
    info->active = 1;
    info->insecure = insecure;
    snprintf(info->version, sizeof info->version, "%s", SSL_get_version(ssl));
    snprintf(info->cipher, sizeof info->cipher, "%s", SSL_get_cipher_name(ssl));
    snprintf(info->sni, sizeof info->sni, "%s", name);
    X509 *peer = SSL_get0_peer_certificate(ssl);
    info->verify_code = peer ? SSL_get_verify_result(ssl) : X509_V_ERR_UNSPECIFIED;
    info->verified = peer && info->verify_code == X509_V_OK;
    if (!peer)
        snprintf(info->verify_text, sizeof info->verify_text, "no certificate presented");
    else if (info->verify_code == X509_V_ERR_HOSTNAME_MISMATCH ||
             info->verify_code == X509_V_ERR_IP_ADDRESS_MISMATCH)
        snprintf(info->verify_text, sizeof info->verify_text, "certificate is not for %s", name);
    else
        snprintf(info->verify_text, sizeof info->verify_text, "%s",
                 X509_verify_cert_error_string(info->verify_code));

    /* On the client side the peer's chain includes its own certificate. */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    int n = chain ? sk_X509_num(chain) : 0;
    info->chain_sent = (size_t)n;
    for (int i = 0; i < n && info->chain_len < SK_TLS_CHAIN_MAX_CERTS; i++) {
        X509 *x = sk_X509_value(chain, i);
        sk_tls_cert *c = &info->chain[info->chain_len++];
        name_line(X509_get_subject_name(x), c->subject, sizeof c->subject);
        name_line(X509_get_issuer_name(x), c->issuer, sizeof c->issuer);
        c->not_before = asn1_seconds(X509_get0_notBefore(x));
        c->not_after = asn1_seconds(X509_get0_notAfter(x));
        san_line(x, c->san, sizeof c->san);
        c->self_signed = X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0;
    }
}
