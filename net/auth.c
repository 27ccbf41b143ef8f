/*
 * net/auth.c - cookie files, libsodium start-up, nonces and HMAC-SHA256.
 *
 * A hub is authenticated by a shared secret, the cookie, kept in a file only its owner can
 * read (like Erlang's ~/.erlang.cookie). Peers never send it: the handshake
 * (net/handshake.c) has each side MAC a transcript that holds both sides' fresh nonces,
 * which proves knowledge of the cookie and cannot be replayed on another connection. This
 * file holds the primitives only; the protocol lives in the handshake.
 *
 * libsodium supplies the cryptography: randombytes for nonces, SHA-256 to turn a cookie of
 * any length into a 32-byte key, HMAC-SHA256 for the MAC, and sodium_memcmp so that a
 * verification takes the same time wherever the MACs differ.
 */
#include "net/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(CH_MAC_LEN == crypto_auth_hmacsha256_BYTES, "MAC size");
_Static_assert(sizeof(((ch_auth_key *)0)->k) == crypto_hash_sha256_BYTES, "key size");

/* --- cookie files ---------------------------------------------------------------------- */

static bool ch_cookie_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Reads up to cap bytes of fd into buf; the count or -errno. */
static ssize_t ch_cookie_read_fd(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Checks the open file's type, permissions and size; 0 or a negative error. */
static int ch_cookie_check(int fd, size_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -EINVAL;
    if (st.st_mode & 077) return -EPERM;
    if (st.st_size > (off_t)CH_COOKIE_MAX) return -EFBIG;
    *size = (size_t)st.st_size;
    return 0;
}

int ch_cookie_read(const char *path, void **out, size_t *len)
{
    if (!path || !out || !len) return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return -errno;
    size_t size = 0;
    uint8_t *buf = NULL;
    int rc = ch_cookie_check(fd, &size);
    if (rc < 0) goto out;
    rc = -ENOMEM;
    buf = malloc(size + 1);
    if (!buf) goto out;
    ssize_t n = ch_cookie_read_fd(fd, buf, size);
    rc = (int)n;
    if (n < 0) goto out;
    while (n > 0 && ch_cookie_space(buf[n - 1]))
        n--;
    rc = -EINVAL;
    if (n < CH_COOKIE_MIN) goto out;
    buf[n] = '\0'; /* for callers that print a test cookie; not counted */
    *out = buf;
    *len = (size_t)n;
    buf = NULL;
    rc = 0;
out:
    if (buf) {
        sodium_memzero(buf, size + 1);
        free(buf);
    }
    close(fd);
    return rc;
}

/* --- primitives ------------------------------------------------------------------------ */

static pthread_once_t ch_auth_once = PTHREAD_ONCE_INIT;
static int ch_auth_status;

static void ch_auth_init_once(void)
{
    ch_auth_status = sodium_init() < 0 ? -EIO : 0;
}

int ch_auth_init(void)
{
    pthread_once(&ch_auth_once, ch_auth_init_once);
    return ch_auth_status;
}

int ch_auth_nonce(uint8_t out[CH_NONCE_LEN])
{
    int rc = ch_auth_init();
    if (rc < 0) return rc;
    randombytes_buf(out, CH_NONCE_LEN);
    return 0;
}

int ch_auth_key_derive(ch_auth_key *key, const void *cookie, size_t len)
{
    int rc = ch_auth_init();
    if (rc < 0) return rc;
    static const uint8_t empty[1];
    crypto_hash_sha256(key->k, len ? cookie : empty, len);
    return 0;
}

void ch_auth_key_wipe(ch_auth_key *key)
{
    sodium_memzero(key->k, sizeof(key->k));
}

void ch_auth_mac(const ch_auth_key *key, const ch_auth_part *parts, size_t n,
                 uint8_t mac[CH_MAC_LEN])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key->k, sizeof(key->k));
    for (size_t i = 0; i < n; i++)
        if (parts[i].len) crypto_auth_hmacsha256_update(&st, parts[i].p, parts[i].len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
}

bool ch_auth_verify(const ch_auth_key *key, const ch_auth_part *parts, size_t n,
                    const uint8_t mac[CH_MAC_LEN])
{
    uint8_t want[CH_MAC_LEN];
    ch_auth_mac(key, parts, n, want);
    bool ok = sodium_memcmp(want, mac, CH_MAC_LEN) == 0;
    sodium_memzero(want, sizeof(want));
    return ok;
}
