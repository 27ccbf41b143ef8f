/*
 * tests/test_mbox.c - the mailbox, an SPSC queue of variable-size records (core/mbox.h).
 *
 * Every record written by these tests carries {seq, len} and a payload derived from seq, so
 * the consumer can check order, size and content of each record it reads.
 */
#include <criterion/criterion.h>

#include "core/mbox.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#define HDR 4u /* the ring's own bytes at the start of each record */

typedef struct rec_head {
    uint64_t seq;
    uint32_t len; /* payload bytes after this header */
    uint32_t pad;
    uint64_t sum; /* XXH3 of the payload */
} rec_head;

static uint8_t payload_byte(uint64_t seq, size_t i)
{
    return (uint8_t)(seq * 31u + i * 7u + 1u);
}

/* Record size (ring header included) for a payload of len bytes. */
static size_t rec_size(uint32_t len)
{
    return HDR + sizeof(rec_head) + len;
}

static void rec_write(void *rec, uint64_t seq, uint32_t len)
{
    uint8_t *p = (uint8_t *)rec + HDR;
    uint8_t *pl = p + sizeof(rec_head);
    for (uint32_t i = 0; i < len; i++)
        pl[i] = payload_byte(seq, i);
    rec_head h = {.seq = seq, .len = len, .sum = XXH3_64bits(pl, len)};
    memcpy(p, &h, sizeof(h));
}

/* Returns 0 when rec (of ring size `size`) is record `seq` with `len` intact payload bytes,
 * else a small code saying what is wrong. */
static int rec_check(const void *rec, size_t size, uint64_t seq, uint32_t len)
{
    const uint8_t *p = (const uint8_t *)rec + HDR;
    rec_head h;
    memcpy(&h, p, sizeof(h));
    if (h.seq != seq) return 1;
    if (h.len != len) return 2;
    if (size < rec_size(len)) return 3;
    const uint8_t *pl = p + sizeof(rec_head);
    for (uint32_t i = 0; i < len; i++)
        if (pl[i] != payload_byte(seq, i)) return 4;
    if (XXH3_64bits(pl, len) != h.sum) return 5;
    return 0;
}

/* Deterministic payload lengths covering tiny, 32-byte-boundary and large records. */
static uint32_t varied_len(uint64_t seq, uint32_t max_payload)
{
    static const uint32_t fixed[] = {0, 1, 3, 4, 5, 12, 31, 32, 33, 63, 64, 65, 100, 255, 999};
    uint64_t x = seq * 0x9E3779B97F4A7C15ull;
    uint32_t len;
    if (seq % 3 == 0)
        len = fixed[(seq / 3) % (sizeof(fixed) / sizeof(fixed[0]))];
    else
        len = (uint32_t)((x >> 33) % (max_payload + 1));
    return len > max_payload ? max_payload : len;
}

Test(ring, init_rounds_capacity_up_to_a_power_of_two_of_at_least_4k)
{
    ch_mbox r;
    cr_assert_eq(ch_mbox_init(&r, 100), 0);
    cr_assert_eq(r.cap, 4096);
    cr_assert_eq(ch_mbox_max_record(&r), 1024);
    ch_mbox_destroy(&r);

    cr_assert_eq(ch_mbox_init(&r, 5000), 0);
    cr_assert_eq(r.cap, 8192);
    ch_mbox_destroy(&r);

    cr_assert_eq(ch_mbox_init(&r, 65536), 0);
    cr_assert_eq(r.cap, 65536);
    ch_mbox_destroy(&r);
}

Test(ring, empty_ring_has_nothing_to_peek)
{
    ch_mbox r;
    cr_assert_eq(ch_mbox_init(&r, 4096), 0);
    size_t size = 77;
    cr_assert_null(ch_mbox_peek(&r, &size));
    cr_assert(ch_mbox_empty(&r));
    cr_assert_eq(ch_mbox_unpublished(&r), 0);
    cr_assert_not(ch_mbox_publish(&r), "publishing nothing reports nothing new");
    ch_mbox_destroy(&r);
}

Test(ring, records_become_visible_only_when_published)
{
    ch_mbox r;
    cr_assert_eq(ch_mbox_init(&r, 4096), 0);
    void *rec = ch_mbox_reserve(&r, rec_size(10));
    cr_assert_not_null(rec);
    rec_write(rec, 1, 10);
    cr_assert_geq(ch_mbox_unpublished(&r), rec_size(10));

    size_t size;
    cr_assert_null(ch_mbox_peek(&r, &size), "an unpublished record is invisible");
    cr_assert(ch_mbox_empty(&r));

    cr_assert(ch_mbox_publish(&r));
    cr_assert_eq(ch_mbox_unpublished(&r), 0);
    cr_assert_not(ch_mbox_publish(&r), "second publish has nothing new");
    cr_assert_not(ch_mbox_empty(&r));

    void *got = ch_mbox_peek(&r, &size);
    cr_assert_eq(got, rec);
    cr_assert_eq(rec_check(got, size, 1, 10), 0);
    ch_mbox_next(&r);
    cr_assert(ch_mbox_empty(&r));
    cr_assert_null(ch_mbox_peek(&r, &size));
    ch_mbox_destroy(&r);
}

Test(ring, records_are_32_byte_aligned_even_across_wraparound)
{
    ch_mbox r;
    cr_assert_eq(ch_mbox_init(&r, 4096), 0);
    for (uint64_t seq = 0; seq < 2000; seq++) {
        uint32_t len = varied_len(seq, 300);
        void *rec = ch_mbox_reserve(&r, rec_size(len));
        cr_assert_not_null(rec, "record %lu", (unsigned long)seq);
        cr_assert_eq((uintptr_t)rec % CH_RING_ALIGN, 0, "record %lu at %p", (unsigned long)seq,
                     rec);
        rec_write(rec, seq, len);
        ch_mbox_publish(&r);
        size_t size;
        void *got = ch_mbox_peek(&r, &size);
        cr_assert_eq(got, rec);
        cr_assert_eq(rec_check(got, size, seq, len), 0);
        ch_mbox_next(&r);
        ch_mbox_release(&r);
    }
    ch_mbox_destroy(&r);
}

Test(ring, keeps_fifo_order_and_content_across_wraparound_with_varied_sizes)
{
    ch_mbox r;
    cr_assert_eq(ch_mbox_init(&r, 4096), 0);
    const uint32_t max_payload = (uint32_t)(ch_mbox_max_record(&r) - rec_size(0));
    const uint64_t total = 50000;
    uint64_t written = 0, read = 0;
    unsigned rounds = 0;
    while (read < total) {
        /* Produce a varying number of records (until full or the round's quota), then
         * consume a varying number, so the head and tail wrap at every offset. */
        unsigned quota = 1 + rounds % 13;
        for (unsigned k = 0; k < quota && written < total; k++) {
            uint32_t len = varied_len(written, max_payload);
            void *rec = ch_mbox_reserve(&r, rec_size(len));
            if (!rec) break;
            rec_write(rec, written, len);
            written++;
        }
        ch_mbox_publish(&r);
        unsigned take = 1 + (rounds * 7) % 11;
        size_t size;
        void *rec;
        for (unsigned k = 0; k < take && (rec = ch_mbox_peek(&r, &size)) != NULL; k++) {
            uint32_t len = varied_len(read, max_payload);
            int bad = rec_check(rec, size, read, len);
            cr_assert_eq(bad, 0, "record %lu is wrong (code %d)", (unsigned long)read, bad);
            ch_mbox_next(&r);
            read++;
        }
        ch_mbox_release(&r);
        cr_assert_leq(read, written);
        rounds++;
        cr_assert_lt(rounds, 10u * total, "no progress");
    }
    cr_assert_eq(read, total);
    size_t size;
    cr_assert_null(ch_mbox_peek(&r, &size), "nothing beyond what was written");
    ch_mbox_destroy(&r);
}

Test(ring, full_ring_refuses_records_and_loses_nothing)
{
    ch_mbox r;
    cr_assert_eq(ch_mbox_init(&r, 4096), 0);
    /* 64-byte records fill a 4 KiB ring exactly. */
    const uint32_t len = 64 - (uint32_t)rec_size(0);
    uint64_t n = 0;
    void *rec;
    while ((rec = ch_mbox_reserve(&r, rec_size(len))) != NULL) {
        rec_write(rec, n, len);
        n++;
        cr_assert_leq(n, 4096u, "the ring never says full");
    }
    cr_assert_eq(n, 4096u / 64u, "a full ring holds cap/64 records of 64 bytes");
    cr_assert_null(ch_mbox_reserve(&r, rec_size(0)), "still full");
    cr_assert_null(ch_mbox_reserve(&r, 8), "still full for the smallest record");
    ch_mbox_publish(&r);

    /* Consumed but not released: the producer must not reuse that space yet. */
    size_t size;
    rec = ch_mbox_peek(&r, &size);
    cr_assert_not_null(rec);
    cr_assert_eq(rec_check(rec, size, 0, len), 0);
    ch_mbox_next(&r);
    cr_assert_null(ch_mbox_reserve(&r, rec_size(len)), "space comes back only on release");

    ch_mbox_release(&r);
    rec = ch_mbox_reserve(&r, rec_size(len));
    cr_assert_not_null(rec, "released space is reusable");
    rec_write(rec, n, len);
    ch_mbox_publish(&r);

    /* Everything written before and after "full" arrives, in order. */
    for (uint64_t seq = 1; seq <= n; seq++) {
        rec = ch_mbox_peek(&r, &size);
        cr_assert_not_null(rec, "record %lu lost", (unsigned long)seq);
        cr_assert_eq(rec_check(rec, size, seq, len), 0, "record %lu", (unsigned long)seq);
        ch_mbox_next(&r);
    }
    cr_assert_null(ch_mbox_peek(&r, &size));
    ch_mbox_destroy(&r);
}

Test(ring, record_that_does_not_fit_before_the_end_wraps_to_the_start)
{
    ch_mbox r;
    cr_assert_eq(ch_mbox_init(&r, 4096), 0);
    /* Move head and tail to 4096 - 96: a 1 KiB record no longer fits before the end. */
    for (uint64_t seq = 0; seq < (4096 - 96) / 32; seq++) {
        void *rec = ch_mbox_reserve(&r, 32);
        cr_assert_not_null(rec);
        ch_mbox_publish(&r);
        size_t size;
        cr_assert_not_null(ch_mbox_peek(&r, &size));
        ch_mbox_next(&r);
        ch_mbox_release(&r);
    }
    const uint32_t len = (uint32_t)(ch_mbox_max_record(&r) - rec_size(0));
    void *rec = ch_mbox_reserve(&r, rec_size(len));
    cr_assert_not_null(rec);
    cr_assert_eq((uint8_t *)rec, r.buf, "the record starts at the beginning of the buffer");
    rec_write(rec, 42, len);
    void *small = ch_mbox_reserve(&r, rec_size(1));
    cr_assert_not_null(small);
    rec_write(small, 43, 1);
    ch_mbox_publish(&r);

    size_t size;
    void *got = ch_mbox_peek(&r, &size);
    cr_assert_eq(got, rec, "the padding is skipped");
    cr_assert_eq(rec_check(got, size, 42, len), 0);
    ch_mbox_next(&r);
    got = ch_mbox_peek(&r, &size);
    cr_assert_eq(rec_check(got, size, 43, 1), 0);
    ch_mbox_next(&r);
    cr_assert(ch_mbox_empty(&r));
    ch_mbox_destroy(&r);
}

Test(ring, refuses_a_record_larger_than_max_record)
{
    ch_mbox r;
    cr_assert_eq(ch_mbox_init(&r, 8192), 0);
    size_t max = ch_mbox_max_record(&r);
    cr_assert_null(ch_mbox_reserve(&r, max + 1));
    cr_assert_null(ch_mbox_reserve(&r, r.cap));
    cr_assert_null(ch_mbox_reserve(&r, SIZE_MAX / 2));
    cr_assert_eq(ch_mbox_unpublished(&r), 0, "a refused record reserves nothing");
    cr_assert_not(ch_mbox_publish(&r));

    void *rec = ch_mbox_reserve(&r, max);
    cr_assert_not_null(rec, "exactly max_record fits");
    ch_mbox_publish(&r);
    size_t size;
    cr_assert_eq(ch_mbox_peek(&r, &size), rec);
    cr_assert_eq(size, max);
    ch_mbox_destroy(&r);
}

/* --- two threads ------------------------------------------------------------------------ */

#define STRESS_RECORDS 1000000u

typedef struct stress {
    ch_mbox ring;
    uint32_t max_payload;
    uint64_t produced_sum; /* producer: sum of payload checksums */
    uint64_t consumed_sum; /* consumer */
    uint64_t consumed;     /* consumer: records read */
    int error;             /* consumer: first rec_check code */
    uint64_t error_seq;
    atomic_int stop; /* the consumer failed: the producer gives up */
} stress;

static void *stress_producer(void *arg)
{
    stress *s = arg;
    for (uint64_t seq = 0; seq < STRESS_RECORDS; seq++) {
        uint32_t len = varied_len(seq, s->max_payload);
        void *rec;
        while ((rec = ch_mbox_reserve(&s->ring, rec_size(len))) == NULL) {
            ch_mbox_publish(&s->ring);
            if (atomic_load_explicit(&s->stop, memory_order_relaxed)) return NULL;
            sched_yield();
        }
        rec_write(rec, seq, len);
        rec_head h;
        memcpy(&h, (uint8_t *)rec + HDR, sizeof(h));
        s->produced_sum += h.sum;
        if (seq % 16 == 15) ch_mbox_publish(&s->ring);
    }
    ch_mbox_publish(&s->ring);
    return NULL;
}

static void *stress_consumer(void *arg)
{
    stress *s = arg;
    unsigned spins = 0;
    while (s->consumed < STRESS_RECORDS) {
        size_t size;
        void *rec = ch_mbox_peek(&s->ring, &size);
        if (!rec) {
            ch_mbox_release(&s->ring);
            if (++spins % 64 == 0) sched_yield();
            continue;
        }
        uint64_t seq = s->consumed;
        int bad = rec_check(rec, size, seq, varied_len(seq, s->max_payload));
        if (bad) {
            s->error = bad;
            s->error_seq = seq;
            atomic_store(&s->stop, 1);
            return NULL;
        }
        rec_head h;
        memcpy(&h, (uint8_t *)rec + HDR, sizeof(h));
        s->consumed_sum += h.sum;
        ch_mbox_next(&s->ring);
        s->consumed++;
        if (s->consumed % 32 == 0) ch_mbox_release(&s->ring);
    }
    ch_mbox_release(&s->ring);
    return NULL;
}

Test(ring, two_threads_pass_a_million_records_in_order_and_intact, .timeout = 120)
{
    static stress s; /* large-ish: keep it off the test's stack */
    memset(&s, 0, sizeof(s));
    cr_assert_eq(ch_mbox_init(&s.ring, 64 * 1024), 0);
    s.max_payload = 600;
    pthread_t prod, cons;
    cr_assert_eq(pthread_create(&cons, NULL, stress_consumer, &s), 0);
    cr_assert_eq(pthread_create(&prod, NULL, stress_producer, &s), 0);
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    cr_assert_eq(s.error, 0, "record %lu is wrong (code %d)", (unsigned long)s.error_seq, s.error);
    cr_assert_eq(s.consumed, STRESS_RECORDS);
    cr_assert_eq(s.consumed_sum, s.produced_sum);
    size_t size;
    cr_assert_null(ch_mbox_peek(&s.ring, &size));
    ch_mbox_destroy(&s.ring);
}
