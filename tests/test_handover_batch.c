/*
 * tests/test_handover_batch.c - handover batches (migration/hbatch.h): records of every kind
 * and size survive a round trip through as many batches as they need, every record and
 * state is 32-byte aligned, states written in place land in the batch, and malformed
 * batches (truncated, garbled, randomly mutated) are refused without reading outside them.
 */
#include <criterion/criterion.h>

#include "core/proc.h" /* struct ch_buf, for the in-place view */
#include "migration/hbatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP      (64u << 10)
#define WIRE_MAX 1024

static bool aligned32(const void *p)
{
    return ((uintptr_t)p & 31) == 0;
}

/* Byte i of the content of record k: differs from record to record. */
static uint8_t pattern(size_t k, size_t i)
{
    return (uint8_t)(k * 131 + i * 7 + (i >> 8));
}

static uint8_t *make_content(size_t k, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    cr_assert_not_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = pattern(k, i);
    return p;
}

/* --- a sender and a receiver, with the batches in between --------------------------- */

typedef struct wire {
    uint8_t *batches[WIRE_MAX]; /* 64-byte aligned copies of what was "sent" */
    size_t lens[WIRE_MAX];
    size_t n;
} wire;

static void wire_send(wire *w, ch_hbatch *b)
{
    cr_assert_lt(w->n, WIRE_MAX);
    size_t len = ch_hbatch_len(b);
    uint8_t *copy = aligned_alloc(64, len ? (len + 63) & ~(size_t)63 : 64);
    cr_assert_not_null(copy);
    memcpy(copy, ch_hbatch_data(b), len);
    w->batches[w->n] = copy;
    w->lens[w->n++] = len;
    ch_hbatch_reset(b);
}

static void wire_free(wire *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->batches[i]);
}

/* Record k of the test stream: PROC, MSG, MSG, END for each process, in that order. */
static char *rec_id(size_t k, char *buf)
{
    snprintf(buf, 32, "proc-%zu", k / 4);
    return buf;
}

static ch_hbatch_proc proc_of(const char *id, size_t k)
{
    static const char meta[] = "region=eu;owner=test";
    return (ch_hbatch_proc){.id = id,
                            .id_len = strlen(id),
                            .type = "counter",
                            .type_len = 7,
                            .tag = k % 8 ? "hot" : "",
                            .tag_len = k % 8 ? 3 : 0,
                            .arg = "init-arg",
                            .arg_len = k % 3,
                            .meta = meta,
                            .meta_len = k % 2 ? sizeof(meta) - 1 : 0,
                            .shutdown_ms = 5000 + (uint32_t)k,
                            .incarnation = (uint32_t)k,
                            .restart = (uint8_t)(k % 3)};
}

static ch_hbatch_msg msg_of(const char *id, size_t k)
{
    bool call = (k % 4) == 2;
    return (ch_hbatch_msg){.id = id,
                           .id_len = strlen(id),
                           .kind = call ? CH_MSG_CALL : CH_MSG_CAST,
                           .reply_node = call ? 0x1122334455667788ull + k : 0,
                           .reply_core = call ? (uint16_t)(k & 0xffff) : 0,
                           .reply_ref = call ? 0xfeedull * k : 0};
}

/* Adds record k; sends the batch first when it is full. */
static void add_record(ch_hbatch *b, wire *w, size_t k, const uint8_t *data, size_t len)
{
    char id[32];
    rec_id(k, id);
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc;
        if (k % 4 == 0) {
            ch_hbatch_proc p = proc_of(id, k);
            rc = ch_hbatch_put_proc(b, &p, data, len);
        } else if (k % 4 == 3) {
            rc = ch_hbatch_put_end(b, id, strlen(id));
        } else {
            ch_hbatch_msg m = msg_of(id, k);
            rc = ch_hbatch_put_msg(b, &m, data, len);
        }
        if (rc == 0) return;
        cr_assert_eq(rc, -ENOSPC, "record %zu: %d", k, rc);
        cr_assert_gt(b->count, 0, "an empty batch refused record %zu", k);
        wire_send(w, b);
    }
    cr_assert_fail("record %zu does not fit an empty batch", k);
}

static void check_proc(const ch_hbatch_rec *r, size_t k, const char *id)
{
    ch_hbatch_proc want = proc_of(id, k);
    cr_assert_eq(r->proc.type_len, want.type_len);
    cr_assert_arr_eq(r->proc.type, want.type, want.type_len);
    cr_assert_eq(r->proc.tag_len, want.tag_len);
    cr_assert_arr_eq(r->proc.tag, want.tag, want.tag_len);
    cr_assert_eq(r->proc.arg_len, want.arg_len);
    cr_assert_arr_eq(r->proc.arg, want.arg, want.arg_len);
    cr_assert_eq(r->proc.meta_len, want.meta_len);
    cr_assert_arr_eq(r->proc.meta, want.meta, want.meta_len);
    cr_assert_eq(r->proc.shutdown_ms, want.shutdown_ms);
    cr_assert_eq(r->proc.incarnation, want.incarnation);
    cr_assert_eq(r->proc.restart, want.restart);
}

static void check_msg(const ch_hbatch_rec *r, size_t k)
{
    ch_hbatch_msg want = msg_of("x", k);
    cr_assert_eq(r->msg.kind, want.kind);
    cr_assert_eq(r->msg.reply_node, want.reply_node);
    cr_assert_eq(r->msg.reply_core, want.reply_core);
    cr_assert_eq(r->msg.reply_ref, want.reply_ref);
}

/* Reads every batch on the wire back and checks record k against what was added. */
static size_t check_wire(const wire *w, const size_t *lens, size_t count)
{
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) {
        ch_hbatch_reader r;
        ch_hbatch_rec rec;
        int rc;
        ch_hbatch_reader_init(&r, w->batches[i], w->lens[i]);
        while ((rc = ch_hbatch_read(&r, &rec)) == 1) {
            cr_assert_lt(k, count);
            char id[32];
            rec_id(k, id);
            cr_assert(rec.kind == CH_HREC_END || aligned32(rec.data), "record %zu: unaligned", k);
            cr_assert_eq(rec.kind, k % 4 == 0   ? CH_HREC_PROC
                                   : k % 4 == 3 ? CH_HREC_END
                                                : CH_HREC_MSG);
            cr_assert_eq(rec.id_len, strlen(id));
            cr_assert_arr_eq(rec.id, id, rec.id_len);
            size_t want_len = rec.kind == CH_HREC_END ? 0 : lens[k];
            cr_assert_eq(rec.len, want_len, "record %zu: len %zu", k, rec.len);
            for (size_t j = 0; j < rec.len; j++)
                if (rec.data[j] != pattern(k, j)) cr_assert_fail("record %zu byte %zu", k, j);
            if (rec.kind == CH_HREC_PROC) check_proc(&rec, k, id);
            if (rec.kind == CH_HREC_MSG) check_msg(&rec, k);
            k++;
        }
        cr_assert_eq(rc, 0, "batch %zu: %d", i, rc);
        cr_assert_eq(ch_hbatch_validate(w->batches[i], w->lens[i], NULL), 0);
    }
    return k;
}

Test(handover_batch, records_of_every_size_round_trip_through_as_many_batches_as_needed)
{
    static const size_t sizes[] = {0, 1, 100, 4096, 65536, 300000, 100, 4096, 0, 1};
    enum { N = 400 };
    size_t lens[N];
    ch_hbatch b;
    wire w = {0};
    cr_assert_eq(ch_hbatch_init(&b, CAP, 0), 0);
    for (size_t k = 0; k < N; k++) {
        lens[k] = sizes[(k / 4 + k) % (sizeof(sizes) / sizeof(sizes[0]))];
        if (k % 4 == 3) lens[k] = 0;
        uint8_t *data = make_content(k, lens[k]);
        add_record(&b, &w, k, data, lens[k]);
        free(data);
        cr_assert_eq(ch_hbatch_len(&b) % 32, 0);
        if (ch_hbatch_full(&b)) wire_send(&w, &b);
    }
    if (b.count) wire_send(&w, &b);
    cr_assert_gt(w.n, 10, "only %zu batches", w.n);
    for (size_t i = 0; i < w.n; i++) { /* only a record of its own may exceed the capacity */
        uint32_t count = 0;
        cr_assert_eq(ch_hbatch_validate(w.batches[i], w.lens[i], &count), 0);
        cr_assert(w.lens[i] <= CAP || count == 1, "batch %zu: %zu bytes", i, w.lens[i]);
    }
    cr_assert_eq(check_wire(&w, lens, N), N);
    wire_free(&w);
    ch_hbatch_free(&b);
}

Test(handover_batch, a_record_larger_than_the_capacity_gets_a_batch_of_its_own)
{
    ch_hbatch b;
    cr_assert_eq(ch_hbatch_init(&b, CAP, 0), 0);
    ch_hbatch_proc p = proc_of("big", 0);
    uint8_t *big = make_content(7, 3 * CAP);
    cr_assert_eq(ch_hbatch_put_proc(&b, &p, big, 100), 0);
    cr_assert_eq(ch_hbatch_put_proc(&b, &p, big, 3 * CAP), -ENOSPC);
    ch_hbatch_reset(&b);
    cr_assert_eq(ch_hbatch_put_proc(&b, &p, big, 3 * CAP), 0);
    cr_assert(ch_hbatch_full(&b));
    cr_assert(aligned32(ch_hbatch_data(&b)));
    cr_assert_eq(ch_hbatch_put_end(&b, "big", 3), -ENOSPC, "a full batch takes nothing more");
    uint32_t count = 0;
    cr_assert_eq(ch_hbatch_validate(ch_hbatch_data(&b), ch_hbatch_len(&b), &count), 0);
    cr_assert_eq(count, 1);
    ch_hbatch_reset(&b);
    cr_assert_eq(b.cap, CAP, "reset gives the oversize buffer back");
    cr_assert(aligned32(ch_hbatch_data(&b)));
    free(big);
    ch_hbatch_free(&b);
}

Test(handover_batch, a_record_over_the_limit_is_refused)
{
    ch_hbatch b;
    cr_assert_eq(ch_hbatch_init(&b, CAP, 2 * CAP), 0);
    ch_hbatch_proc p = proc_of("huge", 0);
    uint8_t *big = make_content(1, 2 * CAP);
    cr_assert_eq(ch_hbatch_put_proc(&b, &p, big, 2 * CAP), -EMSGSIZE);
    ch_hbatch_msg m = msg_of("huge", 1);
    cr_assert_eq(ch_hbatch_put_msg(&b, &m, big, 2 * CAP - 32), -EMSGSIZE);
    cr_assert_eq(ch_hbatch_put_msg(&b, &m, big, 2 * CAP - 64), 0);
    free(big);
    ch_hbatch_free(&b);
}

Test(handover_batch, init_refuses_capacities_out_of_range)
{
    ch_hbatch b;
    cr_assert_eq(ch_hbatch_init(&b, CH_HBATCH_CAP_MIN - 1, 0), -EINVAL);
    cr_assert_eq(ch_hbatch_init(&b, CH_HBATCH_CAP_MAX + 1, 0), -EINVAL);
    cr_assert_eq(ch_hbatch_init(&b, CAP, CAP - 1), -EINVAL);
    cr_assert_eq(ch_hbatch_init(&b, CH_HBATCH_CAP_MAX, 0), 0);
    ch_hbatch_free(&b);
    cr_assert_eq(ch_hbatch_init(&b, CAP + 100, 0), 0);
    cr_assert_eq(b.capacity % 32, 0);
    ch_hbatch_free(&b);
}

Test(handover_batch, fields_out_of_range_are_refused)
{
    ch_hbatch b;
    char id[300];
    memset(id, 'a', sizeof(id));
    cr_assert_eq(ch_hbatch_init(&b, CAP, 0), 0);
    ch_hbatch_proc p = proc_of("ok", 1);
    ch_hbatch_proc bad = p;
    bad.id_len = 0;
    cr_assert_eq(ch_hbatch_put_proc(&b, &bad, NULL, 0), -EINVAL);
    bad = p, bad.id = id, bad.id_len = CH_ID_MAX + 1;
    cr_assert_eq(ch_hbatch_put_proc(&b, &bad, NULL, 0), -EINVAL);
    bad = p, bad.type_len = CH_TYPE_NAME_MAX + 1, bad.type = id;
    cr_assert_eq(ch_hbatch_put_proc(&b, &bad, NULL, 0), -EINVAL);
    bad = p, bad.tag_len = CH_TAG_MAX + 1, bad.tag = id;
    cr_assert_eq(ch_hbatch_put_proc(&b, &bad, NULL, 0), -EINVAL);
    bad = p, bad.meta_len = CH_META_MAX + 1;
    cr_assert_eq(ch_hbatch_put_proc(&b, &bad, NULL, 0), -EINVAL);
    bad = p, bad.restart = CH_TEMPORARY + 1;
    cr_assert_eq(ch_hbatch_put_proc(&b, &bad, NULL, 0), -EINVAL);
    cr_assert_eq(ch_hbatch_put_proc(&b, &p, NULL, 5), -EINVAL);
    ch_hbatch_msg m = msg_of("ok", 1);
    m.reply_ref = 9; /* a cast with a reply route */
    cr_assert_eq(ch_hbatch_put_msg(&b, &m, "x", 1), -EINVAL);
    m = msg_of("ok", 2), m.kind = CH_MSG_TIMER;
    cr_assert_eq(ch_hbatch_put_msg(&b, &m, "x", 1), -EINVAL);
    cr_assert_eq(ch_hbatch_put_end(&b, id, CH_ID_MAX + 1), -EINVAL);
    cr_assert_eq(ch_hbatch_put_end(&b, id, 0), -EINVAL);
    cr_assert_eq(ch_hbatch_len(&b), 0, "refusals leave the batch unchanged");
    cr_assert_eq(ch_hbatch_put_end(&b, id, CH_ID_MAX), 0);
    ch_hbatch_free(&b);
}

/* --- states written in place --------------------------------------------------------- */

Test(handover_batch, a_state_written_through_the_view_lands_in_place_aligned)
{
    ch_hbatch b;
    cr_assert_eq(ch_hbatch_init(&b, CAP, 0), 0);
    cr_assert_eq(ch_hbatch_put_end(&b, "first", 5), 0);
    ch_hbatch_proc p = proc_of("inplace", 4);
    ch_buf view;
    cr_assert_eq(ch_hbatch_proc_begin(&b, &p, 4096, &view), 0);
    uint8_t *slot = ch_buf_reserve(&view, 4096);
    cr_assert_not_null(slot);
    cr_assert(aligned32(slot));
    cr_assert(slot > ch_hbatch_data(&b) && slot < ch_hbatch_data(&b) + CAP, "not in the batch");
    for (size_t i = 0; i < 4096; i++)
        slot[i] = pattern(4, i);
    ch_buf_commit(&view, 4096);
    cr_assert_eq(ch_hbatch_proc_end(&b), 0);
    cr_assert_null(view.data, "the view gives its buffer back");

    ch_hbatch_reader r;
    ch_hbatch_rec rec;
    ch_hbatch_reader_init(&r, ch_hbatch_data(&b), ch_hbatch_len(&b));
    cr_assert_eq(ch_hbatch_read(&r, &rec), 1);
    cr_assert_eq(ch_hbatch_read(&r, &rec), 1);
    cr_assert_eq(rec.data, slot, "read back from where it was written");
    cr_assert_eq(rec.len, 4096);
    check_proc(&rec, 4, "inplace");
    cr_assert_eq(ch_hbatch_read(&r, &rec), 0);
    ch_hbatch_free(&b);
}

Test(handover_batch, a_state_outgrowing_the_buffer_moves_the_whole_batch)
{
    ch_hbatch b;
    cr_assert_eq(ch_hbatch_init(&b, CAP, 0), 0);
    for (size_t k = 0; k < 3; k++) {
        ch_hbatch_msg m = msg_of("before", 1);
        cr_assert_eq(ch_hbatch_put_msg(&b, &m, "payload", 7), 0);
    }
    ch_hbatch_proc p = proc_of("grows", 8);
    ch_buf view;
    cr_assert_eq(ch_hbatch_proc_begin(&b, &p, 0, &view), 0);
    uint8_t *state = make_content(8, 5 * CAP);
    cr_assert_eq(ch_buf_append(&view, state, 5 * CAP), 0);
    cr_assert_eq(ch_hbatch_proc_end(&b), 0);
    cr_assert(ch_hbatch_full(&b));
    ch_hbatch_reader r;
    ch_hbatch_rec rec;
    ch_hbatch_reader_init(&r, ch_hbatch_data(&b), ch_hbatch_len(&b));
    for (size_t k = 0; k < 3; k++) {
        cr_assert_eq(ch_hbatch_read(&r, &rec), 1);
        cr_assert(rec.kind == CH_HREC_MSG && rec.len == 7 && !memcmp(rec.data, "payload", 7));
    }
    cr_assert_eq(ch_hbatch_read(&r, &rec), 1);
    cr_assert(rec.kind == CH_HREC_PROC && rec.len == 5 * CAP);
    cr_assert_arr_eq(rec.data, state, 5 * CAP);
    cr_assert_eq(ch_hbatch_read(&r, &rec), 0);
    ch_hbatch_reset(&b);
    cr_assert(b.cap == CAP && aligned32(ch_hbatch_data(&b)));
    free(state);
    ch_hbatch_free(&b);
}

Test(handover_batch, a_hinted_state_that_does_not_fit_waits_for_the_next_batch)
{
    ch_hbatch b;
    ch_buf view;
    cr_assert_eq(ch_hbatch_init(&b, CAP, 0), 0);
    cr_assert_eq(ch_hbatch_put_end(&b, "a", 1), 0);
    ch_hbatch_proc p = proc_of("next", 0);
    cr_assert_eq(ch_hbatch_proc_begin(&b, &p, CAP, &view), -ENOSPC);
    ch_hbatch_reset(&b);
    cr_assert_eq(ch_hbatch_proc_begin(&b, &p, 2 * CAP, &view), 0, "an empty batch grows");
    cr_assert_geq(view.cap - view.len, 2 * CAP);
    ch_hbatch_proc_abort(&b);
    cr_assert_eq(ch_hbatch_len(&b), 0);
    ch_hbatch_free(&b);
}

Test(handover_batch, an_open_record_keeps_other_writers_out_until_it_ends)
{
    ch_hbatch b;
    ch_buf view;
    cr_assert_eq(ch_hbatch_init(&b, CAP, 0), 0);
    ch_hbatch_proc p = proc_of("open", 0);
    cr_assert_eq(ch_hbatch_proc_begin(&b, &p, 10, &view), 0);
    cr_assert_eq(ch_hbatch_put_end(&b, "x", 1), -EBUSY);
    cr_assert_eq(ch_hbatch_proc_begin(&b, &p, 10, &view), -EBUSY);
    ch_buf_append(&view, "abc", 3);
    ch_hbatch_proc_abort(&b);
    cr_assert_eq(ch_hbatch_len(&b), 0, "an aborted record leaves nothing");
    cr_assert_eq(ch_hbatch_proc_end(&b), -EINVAL, "nothing open");
    cr_assert_eq(ch_hbatch_put_end(&b, "x", 1), 0);
    cr_assert_eq(ch_hbatch_proc_begin(&b, &p, 10, &view), 0);
    ch_hbatch_reset(&b); /* closes and discards the open record */
    cr_assert_eq(ch_hbatch_len(&b), 0);
    cr_assert_eq(ch_hbatch_put_end(&b, "x", 1), 0);
    ch_hbatch_free(&b);
}

/* --- malformed input ------------------------------------------------------------------ */

/* A small batch with one record of each kind, then a second PROC with every field. */
static size_t sample_batch(ch_hbatch *b, size_t *bounds, size_t *nbounds)
{
    cr_assert_eq(ch_hbatch_init(b, CAP, 0), 0);
    uint8_t *state = make_content(3, 300);
    ch_hbatch_proc p = proc_of("sample", 1);
    ch_hbatch_msg call = msg_of("sample", 2);
    *nbounds = 0;
    bounds[(*nbounds)++] = 0;
    cr_assert_eq(ch_hbatch_put_proc(b, &p, state, 100), 0);
    bounds[(*nbounds)++] = ch_hbatch_len(b);
    cr_assert_eq(ch_hbatch_put_msg(b, &call, state, 33), 0);
    bounds[(*nbounds)++] = ch_hbatch_len(b);
    cr_assert_eq(ch_hbatch_put_end(b, "sample", 6), 0);
    bounds[(*nbounds)++] = ch_hbatch_len(b);
    cr_assert_eq(ch_hbatch_put_proc(b, &p, state, 300), 0);
    bounds[(*nbounds)++] = ch_hbatch_len(b);
    free(state);
    return ch_hbatch_len(b);
}

/* Validates a copy of exactly len bytes, so that the sanitizers see any read past it. */
static int validate_copy(const uint8_t *src, size_t len, uint32_t *count)
{
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, src, len);
    int rc = ch_hbatch_validate(copy, len, count);
    free(copy);
    return rc;
}

Test(handover_batch, truncated_batches_are_refused_except_at_record_boundaries)
{
    ch_hbatch b;
    size_t bounds[8], nb;
    size_t len = sample_batch(&b, bounds, &nb);
    for (size_t cut = 0; cut <= len; cut++) {
        uint32_t count = 99;
        int rc = validate_copy(ch_hbatch_data(&b), cut, &count);
        size_t k = 0;
        while (k < nb && bounds[k] != cut)
            k++;
        if (k < nb) {
            cr_assert_eq(rc, 0, "cut %zu", cut);
            cr_assert_eq(count, k);
        } else {
            cr_assert_eq(rc, -EBADMSG, "cut %zu: %d", cut, rc);
        }
    }
    ch_hbatch_free(&b);
}

/* The sample batch with one byte set, read back: the return code. */
static int garble(const ch_hbatch *b, size_t at, uint8_t v)
{
    uint8_t copy[2048];
    cr_assert_leq(ch_hbatch_len(b), sizeof(copy));
    memcpy(copy, ch_hbatch_data(b), ch_hbatch_len(b));
    copy[at] = v;
    return validate_copy(copy, ch_hbatch_len(b), NULL);
}

Test(handover_batch, garbled_headers_and_padding_are_refused)
{
    ch_hbatch b;
    size_t bounds[8], nb;
    sample_batch(&b, bounds, &nb);
    size_t msg = bounds[1], end = bounds[2];
    cr_assert_eq(garble(&b, 0, 0), -EBADMSG, "unknown kind 0");
    cr_assert_eq(garble(&b, 0, 4), -EBADMSG, "unknown kind 4");
    cr_assert_eq(garble(&b, 1, 0), -EBADMSG, "empty id");
    cr_assert_eq(garble(&b, 2, CH_TYPE_NAME_MAX + 1), -EBADMSG, "type too long");
    cr_assert_eq(garble(&b, 3, CH_TAG_MAX + 1), -EBADMSG, "tag too long");
    cr_assert_eq(garble(&b, 7, 0x80), -EBADMSG, "rec_len past the end");
    cr_assert_eq(garble(&b, 4, 0x60), -EBADMSG, "rec_len disagrees with the fields");
    cr_assert_eq(garble(&b, 8, CH_TEMPORARY + 1), -EBADMSG, "restart out of range");
    cr_assert_eq(garble(&b, 9, 2), -EBADMSG, "unknown PROC flag");
    cr_assert_eq(garble(&b, 25, 0x10), -EBADMSG, "metadata too long");
    cr_assert_eq(garble(&b, 28, 0xff), -EBADMSG, "state length disagrees");
    cr_assert_eq(garble(&b, msg - 1, 1), -EBADMSG, "trailing padding");
    cr_assert_eq(garble(&b, msg + 2, 2), -EBADMSG, "message kind");
    cr_assert_eq(garble(&b, msg + 3, 1), -EBADMSG, "message reserved byte");
    cr_assert_eq(garble(&b, end + 2, 1), -EBADMSG, "end reserved");
    cr_assert_eq(garble(&b, end + 1, 200), -EBADMSG, "end id length");
    cr_assert_eq(garble(&b, end + 31, 1), -EBADMSG, "end padding");
    ch_hbatch_free(&b);
}

Test(handover_batch, a_cast_with_a_reply_route_is_refused)
{
    ch_hbatch b;
    cr_assert_eq(ch_hbatch_init(&b, CAP, 0), 0);
    ch_hbatch_msg m = msg_of("c", 1); /* a cast */
    cr_assert_eq(ch_hbatch_put_msg(&b, &m, "x", 1), 0);
    uint8_t copy[64];
    memcpy(copy, ch_hbatch_data(&b), 64);
    copy[16] = 1; /* reply ref */
    cr_assert_eq(validate_copy(copy, 64, NULL), -EBADMSG);
    ch_hbatch_free(&b);
}

Test(handover_batch, the_reader_stays_failed_and_empty_batches_hold_nothing)
{
    ch_hbatch_reader r;
    ch_hbatch_rec rec;
    uint8_t junk[64] = {9};
    ch_hbatch_reader_init(&r, junk, sizeof(junk));
    cr_assert_eq(ch_hbatch_read(&r, &rec), -EBADMSG);
    cr_assert_eq(ch_hbatch_read(&r, &rec), -EBADMSG);
    ch_hbatch_reader_init(&r, junk, 0);
    cr_assert_eq(ch_hbatch_read(&r, &rec), 0);
    ch_hbatch_reader_init(&r, NULL, 100);
    cr_assert_eq(ch_hbatch_read(&r, &rec), 0);
    cr_assert_eq(validate_copy(junk, 7, NULL), -EBADMSG);
}

Test(handover_batch, random_mutations_never_read_outside_the_batch)
{
    ch_hbatch b;
    size_t bounds[8], nb;
    size_t len = sample_batch(&b, bounds, &nb);
    srand(12345);
    for (int it = 0; it < 5000; it++) {
        uint8_t *copy = malloc(len);
        cr_assert_not_null(copy);
        memcpy(copy, ch_hbatch_data(&b), len);
        int flips = 1 + rand() % 4;
        for (int f = 0; f < flips; f++)
            copy[(size_t)rand() % len] ^= (uint8_t)(1 + rand() % 255);
        size_t cut = it % 3 ? len : (size_t)rand() % (len + 1);
        ch_hbatch_reader r;
        ch_hbatch_rec rec;
        int rc;
        ch_hbatch_reader_init(&r, copy, cut);
        while ((rc = ch_hbatch_read(&r, &rec)) == 1) {
            cr_assert(rec.id >= (const char *)copy && rec.id + rec.id_len <= (char *)copy + cut);
            if (rec.kind == CH_HREC_END) continue;
            cr_assert(rec.data >= copy && rec.data + rec.len <= copy + cut);
            cr_assert_eq((size_t)(rec.data - copy) % 32, 0);
        }
        cr_assert(rc == 0 || rc == -EBADMSG);
        free(copy);
    }
    ch_hbatch_free(&b);
}
