/* API keys of the HTTP API: made and revoked by `smtpkit apikey`, checked
 * by the listener. DATA-DIR/apikeys holds one line per key: "ID SCOPE
 * CREATED REVOKED SHA256 NAME" (times in Unix seconds, 0 = not revoked);
 * the key itself is never stored. */
#include <smtpkit/http.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define APIKEY_FILE   "apikeys"
#define APIKEY_PREFIX "skk_"
/* The file holds at most this many keys (revoked ones count): a bound on
 * what a server reads. */
#define APIKEY_FILE_MAX_OCTETS (4u * 1024 * 1024)

static const char *const scope_names[SK_APIKEY_SCOPE__COUNT] = {"send", "read", "admin"};

const char *sk_apikey_scope_name(sk_apikey_scope s)
{
    return (unsigned)s < SK_APIKEY_SCOPE__COUNT ? scope_names[s] : "?";
}

int sk_apikey_scope_parse(const char *name)
{
    for (int i = 0; i < SK_APIKEY_SCOPE__COUNT; i++)
        if (name && !strcmp(name, scope_names[i])) return i;
    return -1;
}

bool sk_apikey_scope_allows(sk_apikey_scope have, sk_apikey_scope need)
{
    return have == SK_APIKEY_ADMIN || have == need;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[32];
    unsigned len = 0;
    if (!EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) || len != sizeof md)
        memset(md, 0, sizeof md);
    sk_hex_encode(out, md, sizeof md, false);
    out[64] = '\0';
}

static bool name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > SK_APIKEY_NAME_MAX_OCTETS) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) return false;
    }
    /* Leading or trailing blanks would not survive the file's split. */
    return name[0] != ' ' && name[n - 1] != ' ';
}

void sk_apikey_list_free(sk_apikey *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) sk_free(list[i].name);
    sk_free(list);
}

/* Parse the file's text into keys; lines that are not keys are errors. */
static sk_err parse_keys(const char *text, size_t len, sk_apikey **out, size_t *n, sk_error *err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    const char *p = text, *end = text + len;
    unsigned lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        size_t ll = (size_t)(le - p);
        if (ll && p[0] != '#') {
            char line[512];
            if (ll >= sizeof line) goto bad;
            memcpy(line, p, ll);
            line[ll] = '\0';
            char id[32], scope[16], hash[80];
            long long created, revoked;
            int used = 0;
            if (sscanf(line, "%31s %15s %lld %lld %79s %n", id, scope, &created, &revoked, hash,
                       &used) != 5 ||
                !used || strlen(id) != SK_APIKEY_ID_LEN || strlen(hash) != 64 ||
                sk_apikey_scope_parse(scope) < 0 || !name_valid(line + used))
                goto bad;
            if (*n == cap &&
                sk_array_grow(out, &cap, *n + 1, sizeof **out, APIKEY_FILE_MAX_OCTETS / 64))
                goto nomem;
            sk_apikey *k = &(*out)[*n];
            memset(k, 0, sizeof *k);
            memcpy(k->id, id, SK_APIKEY_ID_SIZE);
            memcpy(k->hash, hash, 65);
            k->scope = (sk_apikey_scope)sk_apikey_scope_parse(scope);
            k->created_s = created;
            k->revoked_s = revoked;
            if (!(k->name = sk_strdup(line + used))) goto nomem;
            (*n)++;
        }
        p = nl ? nl + 1 : end;
    }
    return SK_OK;
bad:
    sk_apikey_list_free(*out, *n);
    *out = NULL;
    *n = 0;
    return sk_error_set(err, SK_ERR_SYNTAX, SK_STEP_NONE, "%s line %u: not a key entry",
                        APIKEY_FILE, lineno);
nomem:
    sk_apikey_list_free(*out, *n);
    *out = NULL;
    *n = 0;
    return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
}

static sk_err read_keys(const char *path, sk_apikey **out, size_t *n, struct stat *st,
                        sk_error *err)
{
    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            if (st) memset(st, 0, sizeof *st);
            return SK_OK;
        }
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "%s: %s", path, strerror(errno));
    }
    if (st && fstat(fd, st) != 0) memset(st, 0, sizeof *st);
    sk_buf b = SK_BUF_INIT(APIKEY_FILE_MAX_OCTETS);
    sk_err e = sk_buf_read_fd(&b, fd, SK_BUF_READ_ALL);
    close(fd);
    if (e) {
        sk_buf_free(&b);
        return sk_error_set(err, e, SK_STEP_NONE, "%s: cannot read (%s)", path, sk_strerror(e));
    }
    e = parse_keys(b.data ? b.data : "", b.len, out, n, err);
    sk_buf_free(&b);
    return e;
}

sk_err sk_apikey_list(const char *data_dir, sk_apikey **out, size_t *n, sk_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, APIKEY_FILE);
    return read_keys(path, out, n, NULL, err);
}

/* The file replaced by keys: a temporary file written, synced and renamed
 * over it, then the directory synced, so that a crash leaves the old or
 * the new list, never half of one. */
static sk_err write_keys(const char *data_dir, const sk_apikey *keys, size_t n, sk_error *err)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", data_dir, APIKEY_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    sk_buf b = SK_BUF_INIT(APIKEY_FILE_MAX_OCTETS);
    sk_err e = sk_buf_puts(&b, "# smtpkit API keys: id scope created revoked sha256 name\n");
    for (size_t i = 0; !e && i < n; i++)
        e = sk_buf_printf(&b, "%s %s %lld %lld %s %s\n", keys[i].id,
                          sk_apikey_scope_name(keys[i].scope), (long long)keys[i].created_s,
                          (long long)keys[i].revoked_s, keys[i].hash, keys[i].name);
    if (e) {
        sk_buf_free(&b);
        return sk_error_set(err, e, SK_STEP_NONE, "too many keys");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        sk_buf_free(&b);
        return sk_error_set(err, sk_err_from_errno(errno, SK_FILE_WRITE), SK_STEP_NONE, "%s: %s",
                            tmp, strerror(errno));
    }
    size_t off = 0;
    int werr = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            werr = errno;
            break;
        }
        off += (size_t)w;
    }
    if (!werr && fsync(fd) != 0) werr = errno;
    if (close(fd) != 0 && !werr) werr = errno;
    sk_buf_free(&b);
    if (!werr && rename(tmp, path) != 0) werr = errno;
    if (werr) {
        unlink(tmp);
        return sk_error_set(err, sk_err_from_errno(werr, SK_FILE_WRITE), SK_STEP_NONE, "%s: %s",
                            path, strerror(werr));
    }
    int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return SK_OK;
}

/* Changes are made under an exclusive lock on DATA-DIR/apikeys.lock, so
 * that two `smtpkit apikey` runs do not lose one another's key. */
static int lock_keys(const char *data_dir, sk_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.lock", data_dir, APIKEY_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        sk_error_set(err, sk_err_from_errno(errno, SK_FILE_WRITE), SK_STEP_NONE, "%s: %s", path,
                     strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

sk_err sk_apikey_create(const char *data_dir, const char *name, sk_apikey_scope scope,
                        char key[SK_APIKEY_KEY_SIZE], char id[SK_APIKEY_ID_SIZE], sk_error *err)
{
    if (!name || !name_valid(name))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "a name is 1 to %d printable characters, without control characters "
                            "or blanks at either end",
                            SK_APIKEY_NAME_MAX_OCTETS);
    if ((unsigned)scope >= SK_APIKEY_SCOPE__COUNT)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "unknown scope");
    int lfd = lock_keys(data_dir, err);
    if (lfd < 0) return err ? err->err : SK_ERR_IO;
    sk_apikey *keys = NULL;
    size_t n = 0;
    sk_err e = sk_apikey_list(data_dir, &keys, &n, err);
    unsigned char raw[SK_APIKEY_ID_LEN / 2 + SK_APIKEY_SECRET_OCTETS];
    if (!e && sk_random(raw, sizeof raw))
        e = sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "no random numbers");
    sk_apikey *grown = NULL;
    if (!e && !(grown = sk_realloc(keys, (n + 1) * sizeof *keys)))
        e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    if (!e) {
        keys = grown;
        char secret[2 * SK_APIKEY_SECRET_OCTETS + 1];
        sk_hex_encode(id, raw, SK_APIKEY_ID_LEN / 2, false);
        id[SK_APIKEY_ID_LEN] = '\0';
        sk_hex_encode(secret, raw + SK_APIKEY_ID_LEN / 2, SK_APIKEY_SECRET_OCTETS, false);
        secret[2 * SK_APIKEY_SECRET_OCTETS] = '\0';
        snprintf(key, SK_APIKEY_KEY_SIZE, APIKEY_PREFIX "%s_%s", id, secret);
        OPENSSL_cleanse(secret, sizeof secret);
        sk_apikey *k = &keys[n];
        memset(k, 0, sizeof *k);
        memcpy(k->id, id, SK_APIKEY_ID_SIZE);
        k->scope = scope;
        k->created_s = (int64_t)time(NULL);
        sha256_hex(key, k->hash);
        if (!(k->name = sk_strdup(name)))
            e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        n++;
    }
    OPENSSL_cleanse(raw, sizeof raw);
    if (!e) e = write_keys(data_dir, keys, n, err);
    if (e) OPENSSL_cleanse(key, SK_APIKEY_KEY_SIZE);
    sk_apikey_list_free(keys, n);
    close(lfd);
    return e;
}

sk_err sk_apikey_revoke(const char *data_dir, const char *id_or_name, sk_error *err)
{
    int lfd = lock_keys(data_dir, err);
    if (lfd < 0) return err ? err->err : SK_ERR_IO;
    sk_apikey *keys = NULL;
    size_t n = 0;
    sk_err e = sk_apikey_list(data_dir, &keys, &n, err);
    size_t hits = 0;
    bool by_id = false, dirty = false;
    for (size_t i = 0; !e && i < n && !by_id; i++)
        if (!strcmp(keys[i].id, id_or_name)) by_id = true;
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; !e && i < n; i++) {
        if (strcmp(by_id ? keys[i].id : keys[i].name, id_or_name) != 0) continue;
        hits++;
        if (!keys[i].revoked_s) {
            keys[i].revoked_s = now;
            dirty = true;
        }
    }
    if (!e && !hits)
        e = sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no key with id or name '%s'",
                         id_or_name);
    if (!e && dirty) e = write_keys(data_dir, keys, n, err);
    sk_apikey_list_free(keys, n);
    close(lfd);
    return e;
}

struct sk_apikey_store {
    char *path;
    sk_apikey *keys;
    size_t n;
    struct stat st; /* of the file read; zero when there was none */
};

sk_apikey_store *sk_apikey_store_new(const char *data_dir)
{
    sk_apikey_store *s = sk_calloc(1, sizeof *s);
    sk_buf p = SK_BUF_INIT(8192);
    if (!s || sk_buf_printf(&p, "%s/%s", data_dir, APIKEY_FILE) ||
        !(s->path = sk_buf_detach(&p, NULL))) {
        sk_buf_free(&p);
        sk_free(s);
        return NULL;
    }
    return s;
}

void sk_apikey_store_free(sk_apikey_store *s)
{
    if (!s) return;
    sk_apikey_list_free(s->keys, s->n);
    sk_free(s->path);
    sk_free(s);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

sk_err sk_apikey_store_check(sk_apikey_store *s, const char *key, const sk_apikey **out)
{
    *out = NULL;
    /* The file is replaced by rename: a new inode or time means new keys.
     * One stat(2) per request keeps revocation immediate. */
    struct stat st;
    if (stat(s->path, &st) != 0) {
        if (errno != ENOENT) return SK_ERR_IO;
        memset(&st, 0, sizeof st);
    }
    if (!same_file(&st, &s->st) || (!s->keys && st.st_ino)) {
        sk_apikey *keys = NULL;
        size_t n = 0;
        struct stat rst;
        sk_err e = read_keys(s->path, &keys, &n, &rst, NULL);
        if (e) return e == SK_ERR_NOMEM ? e : SK_ERR_IO;
        sk_apikey_list_free(s->keys, s->n);
        s->keys = keys;
        s->n = n;
        s->st = rst;
    }
    size_t plen = strlen(APIKEY_PREFIX);
    if (strncmp(key, APIKEY_PREFIX, plen) != 0 || strlen(key) != SK_APIKEY_KEY_SIZE - 1)
        return SK_ERR_AUTH;
    char hash[65];
    sha256_hex(key, hash);
    for (size_t i = 0; i < s->n; i++) {
        const sk_apikey *k = &s->keys[i];
        if (memcmp(k->id, key + plen, SK_APIKEY_ID_LEN) != 0) continue;
        if (k->revoked_s || CRYPTO_memcmp(k->hash, hash, 64) != 0) return SK_ERR_AUTH;
        *out = k;
        return SK_OK;
    }
    return SK_ERR_AUTH;
}
