/*
 * net/auth.h - the hub's cookie and the MAC that proves a peer knows it.
 *
 * The MAC is HMAC-SHA256 keyed with SHA-256(cookie), so a cookie of any length gives a
 * full-strength key, computed over a transcript given as parts (no copy to join them).
 * ch_cookie_read, which loads a cookie file, is public: see corehub/cluster.h.
 */
#ifndef CH_NET_AUTH_H
#define CH_NET_AUTH_H

#include <corehub/cluster.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CH_COOKIE_MIN 16          /* bytes, after trailing white space is dropped */
#define CH_COOKIE_MAX (64u << 10) /* a larger cookie file is refused (-EFBIG) */
#define CH_NONCE_LEN  32
#define CH_MAC_LEN    32

typedef struct ch_auth_key {
    uint8_t k[32];
} ch_auth_key;

/* A piece of a transcript. */
typedef struct ch_auth_part {
    const void *p;
    size_t len;
} ch_auth_part;

/* Initialises libsodium once per process; thread-safe, cheap after the first call.
 * 0 or -EIO. */
int ch_auth_init(void);
/* Fills out with CH_NONCE_LEN random bytes. 0 or -EIO. */
int ch_auth_nonce(uint8_t out[CH_NONCE_LEN]);
/* key = SHA-256(cookie). 0 or -EIO. */
int ch_auth_key_derive(ch_auth_key *key, const void *cookie, size_t len);
/* Overwrites a key that is no longer needed. */
void ch_auth_key_wipe(ch_auth_key *key);
/* mac = HMAC-SHA256(key, parts[0] || ... || parts[n-1]). */
void ch_auth_mac(const ch_auth_key *key, const ch_auth_part *parts, size_t n,
                 uint8_t mac[CH_MAC_LEN]);
/* Whether mac is the MAC of the parts; constant time in the MAC's bytes. */
bool ch_auth_verify(const ch_auth_key *key, const ch_auth_part *parts, size_t n,
                    const uint8_t mac[CH_MAC_LEN]);

#endif
