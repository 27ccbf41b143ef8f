/*
 * tests/test_handshake.c - the HELLO/AUTH state machine (net/handshake.h).
 *
 * Two state machines talk through memory: what one writes to its output buffer is decoded
 * frame by frame and fed to the other. Attacks are played by editing those bytes between
 * the two, or by replaying frames recorded from an earlier connection.
 */
#include <criterion/criterion.h>

#include "net/handshake.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define COOKIE "0123456789abcdef-hub-cookie"

/* One side of a connection: its state machine and what it has written so far. */
typedef struct side {
    ch_hs hs;
    ch_wbuf out;
    int rc; /* the last ch_hs_on_frame result */
} side;

static ch_hello hello(uint64_t node, const char *hub, uint8_t role)
{
    ch_hello h = {
        .node_id = node,
        .incarnation = node * 10,
        .cores = (uint16_t)(node + 1),
        .role = role,
        .lane_core = role == CH_ROLE_LANE ? 7 : 0,
    };
    snprintf(h.hub_id, sizeof(h.hub_id), "%s", hub);
    snprintf(h.addr, sizeof(h.addr), "127.0.0.1:%u", (unsigned)(4000 + node));
    return h;
}

static void side_init(side *s, bool initiator, const ch_hello *h, const char *cookie)
{
    ch_wbuf_init(&s->out);
    s->rc = 0;
    cr_assert_eq(ch_hs_init(&s->hs, initiator, h, cookie, strlen(cookie)), 0);
}

static void side_free(side *s)
{
    ch_hs_clear(&s->hs);
    ch_wbuf_free(&s->out);
}

/* Feeds every frame in `bytes` to `to`, stopping at the first refusal. */
static int feed(side *to, const uint8_t *bytes, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ch_frame f;
        int n = ch_frame_decode(bytes + off, len - off, CH_HS_FRAME_MAX, &f);
        cr_assert_gt(n, 0, "the handshake writes whole, valid frames (%d)", n);
        off += (size_t)n;
        to->rc = ch_hs_on_frame(&to->hs, &f, &to->out);
        if (to->rc < 0) break;
    }
    return to->rc;
}

/* Moves what `from` wrote to `to`. */
static void deliver(side *from, side *to)
{
    ch_wbuf bytes = from->out;
    ch_wbuf_init(&from->out);
    feed(to, bytes.data, bytes.len);
    ch_wbuf_free(&bytes);
}

/* Runs both sides until neither has anything to say. */
static void run(side *a, side *b)
{
    cr_assert_eq(ch_hs_start(&a->hs, &a->out), 0);
    cr_assert_eq(ch_hs_start(&b->hs, &b->out), 0);
    while (a->out.len || b->out.len) {
        deliver(a, b);
        deliver(b, a);
    }
}

/* A single frame, to feed by hand. */
static int feed_frame(side *to, enum ch_frame_type type, const void *payload, size_t len)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    cr_assert_eq(ch_frame_write(&w, type, 0, payload, len), 0);
    int rc = feed(to, w.data, w.len);
    ch_wbuf_free(&w);
    return rc;
}

Test(handshake, two_sides_authenticate_each_other)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    cr_assert_null(ch_hs_peer(&i.hs), "nothing is trusted before the end");
    run(&i, &a);
    cr_assert_eq(i.rc, CH_HS_DONE, "%s", ch_hs_error(&i.hs));
    cr_assert_eq(a.rc, CH_HS_DONE, "%s", ch_hs_error(&a.hs));
    cr_assert(ch_hs_done(&i.hs) && ch_hs_done(&a.hs));
    cr_assert_str_eq(ch_hs_error(&i.hs), "");

    const ch_hello *pi = ch_hs_peer(&i.hs), *pa = ch_hs_peer(&a.hs);
    cr_assert_eq(pi->node_id, 2);
    cr_assert_eq(pi->incarnation, 20);
    cr_assert_eq(pi->cores, 3);
    cr_assert_str_eq(pi->addr, "127.0.0.1:4002");
    cr_assert_str_eq(pi->hub_id, "corehub");
    cr_assert_eq(pi->role, CH_ROLE_PEER);
    cr_assert_eq(pi->version, CH_PROTO_VERSION);
    cr_assert_eq(pa->node_id, 1);
    cr_assert_str_eq(pa->addr, "127.0.0.1:4001");
    cr_assert_arr_eq(pa->nonce, i.hs.mine.nonce, CH_NONCE_LEN);
    cr_assert_arr_eq(pi->nonce, a.hs.mine.nonce, CH_NONCE_LEN);

    cr_assert_eq(feed_frame(&a, CH_F_CAST, "x", 1), -EINVAL, "frames after the end are not ours");
    cr_assert(ch_hs_done(&a.hs));

    uint8_t ki[32], ka[32];
    cr_assert_eq(ch_hs_session_key(&i.hs, ki), 0);
    cr_assert_eq(ch_hs_session_key(&a.hs, ka), 0);
    cr_assert_arr_eq(ki, ka, 32, "both sides derive the same session key");
    side_free(&i);
    side_free(&a);
}

Test(handshake, lane_and_ctl_roles_carry_through)
{
    ch_hello hi = hello(1, "hub", CH_ROLE_LANE), ha = hello(2, "hub", CH_ROLE_CTL);
    ha.addr[0] = '\0'; /* a control client listens nowhere */
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    run(&i, &a);
    cr_assert_eq(a.rc, CH_HS_DONE, "%s", ch_hs_error(&a.hs));
    cr_assert_eq(ch_hs_peer(&a.hs)->role, CH_ROLE_LANE);
    cr_assert_eq(ch_hs_peer(&a.hs)->lane_core, 7);
    cr_assert_eq(ch_hs_peer(&i.hs)->role, CH_ROLE_CTL);
    cr_assert_str_eq(ch_hs_peer(&i.hs)->addr, "");
    side_free(&i);
    side_free(&a);
}

Test(handshake, acceptor_may_receive_before_it_starts)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(ch_hs_start(&i.hs, &i.out), 0);
    deliver(&i, &a); /* a writes HELLO then AUTH */
    cr_assert_eq(a.rc, CH_HS_CONTINUE);
    deliver(&a, &i);
    cr_assert_eq(i.rc, CH_HS_DONE, "%s", ch_hs_error(&i.hs));
    deliver(&i, &a);
    cr_assert_eq(a.rc, CH_HS_DONE, "%s", ch_hs_error(&a.hs));
    side_free(&i);
    side_free(&a);
}

Test(handshake, wrong_cookie_is_refused_by_both_sides)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, "0123456789abcdef-other-cookie");
    run(&i, &a);
    cr_assert_eq(i.rc, -EACCES);
    cr_assert_eq(a.rc, -EACCES);
    cr_assert_not(ch_hs_done(&i.hs));
    cr_assert_null(ch_hs_peer(&a.hs));
    cr_assert_not_null(strstr(ch_hs_error(&a.hs), "wrong cookie"), "%s", ch_hs_error(&a.hs));
    side_free(&i);
    side_free(&a);
}

Test(handshake, other_hub_is_refused)
{
    ch_hello hi = hello(1, "hub-one", CH_ROLE_PEER), ha = hello(2, "hub-two", CH_ROLE_PEER);
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    run(&i, &a);
    cr_assert_eq(i.rc, -EPERM);
    cr_assert_eq(a.rc, -EPERM);
    cr_assert_not_null(strstr(ch_hs_error(&a.hs), "hub-one"), "%s", ch_hs_error(&a.hs));
    side_free(&i);
    side_free(&a);
}

Test(handshake, other_protocol_version_is_refused)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    hi.version = CH_PROTO_VERSION + 1;
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    run(&i, &a);
    cr_assert_eq(a.rc, -EPROTO);
    cr_assert_not_null(strstr(ch_hs_error(&a.hs), "version"), "%s", ch_hs_error(&a.hs));
    cr_assert_not(ch_hs_done(&i.hs));
    side_free(&i);
    side_free(&a);
}

Test(handshake, other_frame_before_the_end_is_refused)
{
    ch_hello ha = hello(2, "corehub", CH_ROLE_PEER), hi = hello(1, "corehub", CH_ROLE_PEER);
    for (int t = CH_F_PING; t < CH_F__COUNT; t++) {
        side a;
        side_init(&a, false, &ha, COOKIE);
        cr_assert_eq(feed_frame(&a, (enum ch_frame_type)t, "x", 1), -EPROTO, "type %d", t);
        side_free(&a);
    }
    /* After the peer's HELLO, still nothing but AUTH. */
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(ch_hs_start(&i.hs, &i.out), 0);
    deliver(&i, &a);
    cr_assert_eq(a.rc, CH_HS_CONTINUE);
    cr_assert_eq(feed_frame(&a, CH_F_CAST, "x", 1), -EPROTO);
    cr_assert_not_null(strstr(ch_hs_error(&a.hs), "CAST"), "%s", ch_hs_error(&a.hs));
    side_free(&i);
    side_free(&a);
}

Test(handshake, auth_before_hello_or_a_second_hello_is_refused)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    uint8_t mac[CH_MAC_LEN] = {0};
    side a;
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(feed_frame(&a, CH_F_AUTH, mac, sizeof(mac)), -EPROTO);
    side_free(&a);

    side i;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(ch_hs_start(&i.hs, &i.out), 0);
    ch_wbuf twice;
    ch_wbuf_init(&twice);
    ch_wbuf_put_bytes(&twice, i.out.data, i.out.len);
    ch_wbuf_put_bytes(&twice, i.out.data, i.out.len);
    cr_assert_eq(feed(&a, twice.data, twice.len), -EPROTO);
    ch_wbuf_free(&twice);
    side_free(&i);
    side_free(&a);
}

Test(handshake, tampered_auth_is_refused)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(ch_hs_start(&i.hs, &i.out), 0);
    deliver(&i, &a);
    cr_assert_eq(a.rc, CH_HS_CONTINUE);
    deliver(&a, &i); /* i now holds a's HELLO and has written its AUTH */
    cr_assert_eq(i.rc, CH_HS_DONE);

    ch_frame auth;
    cr_assert_gt(ch_frame_decode(i.out.data, i.out.len, 0, &auth), 0);
    cr_assert_eq(auth.type, CH_F_AUTH);
    uint8_t mac[CH_MAC_LEN];
    memcpy(mac, auth.payload, sizeof(mac));
    mac[17] ^= 0x20;
    cr_assert_eq(feed_frame(&a, CH_F_AUTH, mac, sizeof(mac)), -EACCES);
    side_free(&i);
    side_free(&a);
}

Test(handshake, auth_of_the_wrong_size_is_malformed)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    const size_t sizes[] = {0, CH_MAC_LEN - 1, CH_MAC_LEN + 1};
    for (size_t k = 0; k < 3; k++) {
        side i, a;
        side_init(&i, true, &hi, COOKIE);
        side_init(&a, false, &ha, COOKIE);
        cr_assert_eq(ch_hs_start(&i.hs, &i.out), 0);
        deliver(&i, &a);
        uint8_t mac[CH_MAC_LEN + 1] = {0};
        cr_assert_eq(feed_frame(&a, CH_F_AUTH, mac, sizes[k]), -EBADMSG, "%zu", sizes[k]);
        side_free(&i);
        side_free(&a);
    }
}

Test(handshake, recorded_auth_is_useless_on_a_new_connection)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    /* Record everything the initiator sends on a good connection. */
    ch_wbuf tape;
    ch_wbuf_init(&tape);
    cr_assert_eq(ch_hs_start(&i.hs, &i.out), 0);
    ch_wbuf_put_bytes(&tape, i.out.data, i.out.len);
    deliver(&i, &a);
    deliver(&a, &i);
    ch_wbuf_put_bytes(&tape, i.out.data, i.out.len);
    deliver(&i, &a);
    cr_assert_eq(a.rc, CH_HS_DONE);

    /* Replay it to a fresh acceptor: its new nonce changes the transcript. */
    side a2;
    side_init(&a2, false, &ha, COOKIE);
    cr_assert_eq(feed(&a2, tape.data, tape.len), -EACCES);
    ch_wbuf_free(&tape);
    side_free(&a2);
    side_free(&i);
    side_free(&a);
}

Test(handshake, reflected_hello_is_refused)
{
    ch_hello ha = hello(2, "corehub", CH_ROLE_PEER);
    side a;
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(ch_hs_start(&a.hs, &a.out), 0);
    ch_wbuf own = a.out;
    ch_wbuf_init(&a.out);
    cr_assert_eq(feed(&a, own.data, own.len), -EACCES);
    ch_wbuf_free(&own);
    side_free(&a);
}

Test(handshake, truncated_hello_is_malformed_never_a_crash)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_LANE), ha = hello(2, "corehub", CH_ROLE_PEER);
    side i;
    side_init(&i, true, &hi, COOKIE);
    size_t full = i.hs.mine_len;
    for (size_t n = 0; n < full; n++) {
        side a;
        side_init(&a, false, &ha, COOKIE);
        cr_assert_eq(feed_frame(&a, CH_F_HELLO, i.hs.mine_raw, n), -EBADMSG, "%zu bytes", n);
        cr_assert_not_null(strstr(ch_hs_error(&a.hs), "malformed HELLO"));
        side_free(&a);
    }
    uint8_t longer[CH_HELLO_MAX + 8] = {0};
    memcpy(longer, i.hs.mine_raw, full);
    side a;
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(feed_frame(&a, CH_F_HELLO, longer, full + 1), -EBADMSG, "trailing byte");
    side_free(&a);
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(feed_frame(&a, CH_F_HELLO, longer, sizeof(longer)), -EBADMSG, "oversize");
    side_free(&a);
    side_free(&i);
}

Test(handshake, refusal_is_sticky)
{
    ch_hello hi = hello(1, "corehub", CH_ROLE_PEER), ha = hello(2, "corehub", CH_ROLE_PEER);
    side i, a;
    side_init(&i, true, &hi, COOKIE);
    side_init(&a, false, &ha, COOKIE);
    cr_assert_eq(feed_frame(&a, CH_F_PING, NULL, 0), -EPROTO);
    char reason[sizeof(a.hs.reason)];
    snprintf(reason, sizeof(reason), "%s", ch_hs_error(&a.hs));
    cr_assert_eq(ch_hs_start(&i.hs, &i.out), 0);
    deliver(&i, &a); /* a valid HELLO now changes nothing */
    cr_assert_eq(a.rc, -EPROTO);
    cr_assert_str_eq(ch_hs_error(&a.hs), reason);
    cr_assert_eq(ch_hs_start(&a.hs, &a.out), -EPROTO);
    side_free(&i);
    side_free(&a);
}

Test(handshake, init_refuses_a_bad_cookie_or_hello)
{
    ch_hs hs;
    ch_hello h = hello(1, "corehub", CH_ROLE_PEER);
    cr_assert_eq(ch_hs_init(&hs, true, &h, "short", 5), -EINVAL);
    ch_wbuf w;
    ch_wbuf_init(&w);
    cr_assert_eq(ch_hs_start(&hs, &w), -EINVAL, "a failed init leaves nothing to start");
    cr_assert_eq(w.len, 0);
    ch_wbuf_free(&w);
    cr_assert_eq(ch_hs_init(&hs, true, &h, NULL, 32), -EINVAL);
    h.role = 0;
    cr_assert_eq(ch_hs_init(&hs, true, &h, COOKIE, strlen(COOKIE)), -EINVAL);
    h = hello(1, "core\nhub", CH_ROLE_PEER);
    cr_assert_eq(ch_hs_init(&hs, true, &h, COOKIE, strlen(COOKIE)), -EINVAL);
    h = hello(1, "corehub", CH_ROLE_PEER);
    memset(h.addr, 'a', sizeof(h.addr)); /* not NUL-terminated */
    cr_assert_eq(ch_hs_init(&hs, true, &h, COOKIE, strlen(COOKIE)), -EINVAL);
}

Test(handshake, hello_payload_round_trips)
{
    ch_hello h = hello(0x1122334455667788ull, "corehub", CH_ROLE_LANE), back;
    h.version = CH_PROTO_VERSION;
    memset(h.nonce, 0xa5, sizeof(h.nonce));
    ch_wbuf w;
    ch_wbuf_init(&w);
    cr_assert_eq(ch_hello_encode(&w, &h), 0);
    cr_assert_leq(w.len, CH_HELLO_MAX);
    cr_assert_eq(ch_hello_decode(w.data, w.len, &back), 0);
    cr_assert_eq(back.version, h.version);
    cr_assert_str_eq(back.hub_id, h.hub_id);
    cr_assert_eq(back.node_id, h.node_id);
    cr_assert_eq(back.incarnation, h.incarnation);
    cr_assert_eq(back.cores, h.cores);
    cr_assert_str_eq(back.addr, h.addr);
    cr_assert_eq(back.role, h.role);
    cr_assert_eq(back.lane_core, h.lane_core);
    cr_assert_arr_eq(back.nonce, h.nonce, CH_NONCE_LEN);
    w.data[w.len - CH_NONCE_LEN - 3] = 9; /* the role byte: no such role */
    cr_assert_eq(ch_hello_decode(w.data, w.len, &back), -EBADMSG);
    ch_wbuf_free(&w);
}

Test(handshake, session_key_needs_a_finished_handshake)
{
    ch_hello h = hello(1, "corehub", CH_ROLE_PEER);
    side s;
    side_init(&s, true, &h, COOKIE);
    uint8_t k[32];
    cr_assert_eq(ch_hs_session_key(&s.hs, k), -EINVAL);
    side_free(&s);
}
