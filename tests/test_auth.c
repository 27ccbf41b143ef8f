/*
 * tests/test_auth.c - cookie files, nonces and the HMAC (net/auth.h).
 *
 * Cookie files are created in a private temporary directory per test and removed at the
 * end; the permission checks look at the file's mode, so they hold for root too.
 */
#include <criterion/criterion.h>

#include "net/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static char path[128];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ch-auth-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/cookie", dir);
}

static void remove_dir(void)
{
    unlink(path);
    rmdir(dir);
}

TestSuite(auth, .init = make_dir, .fini = remove_dir);

/* Writes len bytes of data to the cookie file with the given mode. */
static void write_cookie(const void *data, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

Test(auth, cookie_is_read_without_trailing_white_space)
{
    const char text[] = "0123456789abcdef-secret \t\r\n\n";
    write_cookie(text, strlen(text), 0600);
    void *cookie = NULL;
    size_t len = 0;
    cr_assert_eq(ch_cookie_read(path, &cookie, &len), 0);
    cr_assert_eq(len, strlen("0123456789abcdef-secret"));
    cr_assert_arr_eq(cookie, "0123456789abcdef-secret", len);
    free(cookie);
}

Test(auth, cookie_may_hold_any_bytes)
{
    uint8_t bin[32];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(i * 37 + 1);
    bin[5] = 0;
    write_cookie(bin, sizeof(bin), 0400);
    void *cookie = NULL;
    size_t len = 0;
    cr_assert_eq(ch_cookie_read(path, &cookie, &len), 0);
    cr_assert_eq(len, sizeof(bin));
    cr_assert_arr_eq(cookie, bin, sizeof(bin));
    free(cookie);
}

Test(auth, cookie_readable_by_group_or_others_is_refused)
{
    const char text[] = "0123456789abcdef";
    const mode_t modes[] = {0640, 0604, 0620, 0602, 0601, 0610, 0644, 0666};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_cookie(text, strlen(text), modes[i]);
        void *cookie = (void *)1;
        size_t len = 7;
        cr_assert_eq(ch_cookie_read(path, &cookie, &len), -EPERM, "mode %o", modes[i]);
        cr_assert_eq(cookie, (void *)1, "nothing returned");
    }
}

Test(auth, short_cookie_is_refused)
{
    write_cookie("0123456789abcde\n\n\n\n", 19, 0600); /* 15 bytes and white space */
    void *cookie = NULL;
    size_t len = 0;
    cr_assert_eq(ch_cookie_read(path, &cookie, &len), -EINVAL);
    write_cookie("", 0, 0600);
    cr_assert_eq(ch_cookie_read(path, &cookie, &len), -EINVAL);
    cr_assert_null(cookie);
}

Test(auth, missing_cookie_file_is_enoent)
{
    void *cookie = NULL;
    size_t len = 0;
    cr_assert_eq(ch_cookie_read(path, &cookie, &len), -ENOENT);
}

Test(auth, cookie_that_is_not_a_regular_file_is_refused)
{
    void *cookie = NULL;
    size_t len = 0;
    cr_assert_eq(chmod(dir, 0700), 0);
    cr_assert_eq(ch_cookie_read(dir, &cookie, &len), -EINVAL);
}

Test(auth, huge_cookie_file_is_refused)
{
    size_t n = CH_COOKIE_MAX + 1;
    char *big = malloc(n);
    cr_assert_not_null(big);
    memset(big, 'k', n);
    write_cookie(big, n, 0600);
    free(big);
    void *cookie = NULL;
    size_t len = 0;
    cr_assert_eq(ch_cookie_read(path, &cookie, &len), -EFBIG);
}

static void *init_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)ch_auth_init();
}

Test(auth, init_is_safe_from_many_threads)
{
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, init_thread, NULL), 0);
    for (int i = 0; i < 8; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        cr_assert_eq((intptr_t)rc, 0);
    }
}

Test(auth, nonces_differ)
{
    uint8_t a[CH_NONCE_LEN], b[CH_NONCE_LEN];
    cr_assert_eq(ch_auth_nonce(a), 0);
    cr_assert_eq(ch_auth_nonce(b), 0);
    cr_assert_neq(memcmp(a, b, CH_NONCE_LEN), 0);
}

Test(auth, mac_is_hmac_sha256_keyed_with_the_cookie_hash)
{
    /* Python: hmac.new(sha256(b"0123456789abcdef").digest(), msg, sha256). Pins the
     * construction: nodes of different builds must agree on it. */
    static const uint8_t want[CH_MAC_LEN] = {0xf4, 0x4c, 0x43, 0x5e, 0x52, 0x00, 0x81, 0x04,
                                             0x6f, 0x55, 0x83, 0xda, 0xa5, 0x66, 0x26, 0xd1,
                                             0xf0, 0xb5, 0xa0, 0xf4, 0x03, 0xd1, 0xe0, 0x7c,
                                             0xa2, 0x40, 0xdb, 0x2e, 0x58, 0x2d, 0xf5, 0x57};
    ch_auth_key k;
    cr_assert_eq(ch_auth_key_derive(&k, "0123456789abcdef", 16), 0);
    const char *msg = "what do ya want for nothing?";
    ch_auth_part one = {msg, strlen(msg)};
    ch_auth_part three[3] = {{msg, 4}, {msg + 4, 0}, {msg + 4, strlen(msg) - 4}};
    uint8_t m1[CH_MAC_LEN], m3[CH_MAC_LEN];
    ch_auth_mac(&k, &one, 1, m1);
    ch_auth_mac(&k, three, 3, m3);
    cr_assert_arr_eq(m1, want, CH_MAC_LEN);
    cr_assert_arr_eq(m3, want, CH_MAC_LEN, "the parts are a concatenation");
    cr_assert(ch_auth_verify(&k, &one, 1, want));
}

Test(auth, verify_refuses_another_key_or_a_changed_mac)
{
    ch_auth_key k1, k2;
    cr_assert_eq(ch_auth_key_derive(&k1, "0123456789abcdef", 16), 0);
    cr_assert_eq(ch_auth_key_derive(&k2, "0123456789abcdeF", 16), 0);
    ch_auth_part p = {"transcript", 10};
    uint8_t mac[CH_MAC_LEN];
    ch_auth_mac(&k1, &p, 1, mac);
    cr_assert_not(ch_auth_verify(&k2, &p, 1, mac));
    for (size_t i = 0; i < CH_MAC_LEN; i++) {
        mac[i] ^= 1;
        cr_assert_not(ch_auth_verify(&k1, &p, 1, mac), "byte %zu", i);
        mac[i] ^= 1;
    }
    ch_auth_part q = {"transcripT", 10};
    cr_assert_not(ch_auth_verify(&k1, &q, 1, mac));
}

Test(auth, long_cookies_give_distinct_keys)
{
    char a[1000], b[1000];
    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    b[999] = 'y'; /* differs after the 64-byte HMAC block */
    ch_auth_key ka, kb;
    cr_assert_eq(ch_auth_key_derive(&ka, a, sizeof(a)), 0);
    cr_assert_eq(ch_auth_key_derive(&kb, b, sizeof(b)), 0);
    cr_assert_neq(memcmp(ka.k, kb.k, sizeof(ka.k)), 0);
    ch_auth_key_wipe(&ka);
    cr_assert_arr_eq(ka.k, (uint8_t[32]){0}, 32);
}
