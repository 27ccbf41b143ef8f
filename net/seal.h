/*
 * net/seal.h - authenticated encryption of every frame after the handshake.
 *
 * A sealed frame is an ordinary frame (net/frame.h) whose payload is the ciphertext
 * followed by a CH_SEAL_TAG-byte tag; the header's length counts both and its checksum is
 * 0 (ch_frame_decode_sealed reads such frames). The whole header (version, type, flags,
 * length, the zero checksum) is the associated data: it cannot be altered either.
 *
 * Records. A connection seals what one send carries, not each frame: the frames queued
 * since the last send travel as the plaintext of one CH_F_SEALED frame, a record, of about
 * CH_SEAL_RECORD_TARGET bytes at most (or one larger frame). Inside, each frame has a
 * sealed header (checksum 0: the record's tag covers it) and no record nests. One AEAD
 * call per send instead of one per frame: a 100-byte frame sealed alone costs about 0.2 us
 * of fixed AEAD overhead, which cut remote ch_send throughput by 45% (bench_cluster); in a
 * record it costs its bytes. The frames' types and sizes are hidden as well.
 *
 * Keys: two per connection, one per direction (initiator to acceptor, acceptor to
 * initiator), derived with BLAKE2b (crypto_kdf) from the handshake's session key, itself
 * unique to the connection. Nonce: the direction's frame counter, never sent, so a frame
 * replayed, dropped, reordered or reflected back at its sender fails its tag.
 *
 * Cipher: AES-256-GCM when both HELLOs advertise CH_CAP_AES256GCM (AES-NI and PCLMUL
 * here and there), else ChaCha20-Poly1305-IETF. Both are authenticated by the handshake,
 * so both sides pick the same one and a man in the middle cannot choose for them.
 *
 * Everything happens in place, in the caller's buffer, with no allocation: hot path.
 */
#ifndef CH_NET_SEAL_H
#define CH_NET_SEAL_H

#include "net/frame.h"
#include "net/handshake.h"

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CH_SEAL_TAG       16                           /* bytes a sealed payload grows by */
#define CH_SEAL_PLAIN_MAX (CH_FRAME_MAX - CH_SEAL_TAG) /* largest payload that can be sealed */
/* Largest frame payload a record can carry (its header is in the record's plaintext). */
#define CH_SEAL_FRAME_MAX     (CH_SEAL_PLAIN_MAX - CH_FRAME_HDR)
#define CH_SEAL_RECORD_TARGET (64u << 10) /* a writer starts a new record past this */

enum ch_seal_cipher {
    CH_SEAL_CHACHA20POLY1305 = 1, /* ChaCha20-Poly1305-IETF, 96-bit nonce */
    CH_SEAL_AES256GCM = 2,
};

/* One direction: its key and the counter that is the next frame's nonce. */
typedef struct ch_seal_dir {
    union {
        crypto_aead_aes256gcm_state aes; /* expanded key (AES-256-GCM) */
        uint8_t key[32];                 /* ChaCha20-Poly1305 */
    } k;
    uint64_t n; /* frames sealed (tx) or opened (rx) so far */
} ch_seal_dir;

typedef struct ch_seal {
    uint8_t cipher; /* enum ch_seal_cipher; 0 before ch_seal_init */
    ch_seal_dir tx, rx;
} ch_seal;

/* What this machine can do, for its HELLO's caps (CH_CAP_*). */
uint8_t ch_seal_caps(void);
/* The cipher two sides with these caps use: the same whichever side asks. */
enum ch_seal_cipher ch_seal_choose(uint8_t caps_a, uint8_t caps_b);
/* "AES-256-GCM", "ChaCha20-Poly1305", for log lines. */
const char *ch_seal_cipher_name(int cipher);

/*
 * Derives both directions' keys from a 32-byte session key. `initiator` says which side
 * this is: its tx key is the other side's rx key. 0, -EINVAL (unknown cipher), -ENOTSUP
 * (AES-256-GCM without the hardware), -EIO.
 */
int ch_seal_init(ch_seal *s, enum ch_seal_cipher cipher, const uint8_t session_key[32],
                 bool initiator);
/* The same from a finished handshake: its session key, its side, both HELLOs' caps. */
int ch_seal_init_hs(ch_seal *s, const ch_hs *hs);
/* Overwrites the keys; s must be initialised again before any use. */
void ch_seal_wipe(ch_seal *s);

/*
 * Seals the frame at `frame` in place. On entry: CH_FRAME_HDR bytes of room for the
 * header, the `len`-byte plaintext payload, then CH_SEAL_TAG bytes of room for the tag.
 * Writes the header (length len + CH_SEAL_TAG, checksum 0), encrypts, appends the tag.
 * 0, -EMSGSIZE (len > CH_SEAL_PLAIN_MAX), -EOVERFLOW (2^64 frames sealed:
 * the connection must close), -EINVAL (not initialised). Hot path.
 */
int ch_seal_frame(ch_seal *s, uint8_t *frame, enum ch_frame_type type, uint16_t flags, size_t len);

/*
 * Opens in place the frame that ch_frame_decode_sealed found at `frame` (f is its result:
 * the payload is frame + CH_FRAME_HDR). On success the payload holds the plaintext and f->len
 * shrinks by CH_SEAL_TAG. -EBADMSG when the tag does not verify: the frame was altered,
 * replayed, reordered, sealed with another key or is shorter than a tag; the counter does
 * not move, the payload's bytes are lost (libsodium wipes its output) and the connection
 * must close. -EOVERFLOW, -EINVAL as above. Hot path.
 */
int ch_seal_open(ch_seal *s, uint8_t *frame, ch_frame *f);

/* --- records ------------------------------------------------------------------------- */

/* Starts a record at the end of w; returns its offset for ch_seal_record_end. */
size_t ch_seal_record_begin(ch_wbuf *w);
/* Appends one frame, payload a || b, to the record being written at the end of w. 0,
 * -EMSGSIZE past CH_SEAL_FRAME_MAX (nothing appended), or w's error. Hot path. */
int ch_seal_record_put(ch_wbuf *w, enum ch_frame_type type, uint16_t flags, const void *a,
                       size_t alen, const void *b, size_t blen);
/* Seals in place the record that starts at `at` in w (every byte after it is its frames).
 * 0, w's error or ch_seal_frame's (-EMSGSIZE past CH_SEAL_PLAIN_MAX bytes of frames); on
 * error the record is cut from w: nothing unsealed stays. Hot path. */
int ch_seal_record_end(ch_seal *s, ch_wbuf *w, size_t at);
/* Opens in place the record that ch_frame_decode_sealed found at `frame`: -EPROTO when it
 * is no CH_F_SEALED frame, else ch_seal_open's result. Hot path. */
int ch_seal_record_open(ch_seal *s, uint8_t *frame, ch_frame *rec);
/* Iterates an opened record: *pos starts at 0. 1 with *inner set, 0 at the end, or
 * -EBADMSG (a truncated or malformed frame, a nested record), -EMSGSIZE (a frame over
 * max_len), -EPROTO, -ENOMSG. The record is authentic, so an error is the peer's bug:
 * still a reason to close. Hot path. */
int ch_seal_record_next(const ch_frame *rec, size_t *pos, uint32_t max_len, ch_frame *inner);

#endif
