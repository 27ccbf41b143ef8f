/*
 * core/reactor.c - the per-core event loop, the mailboxes between threads, and message
 * dispatch to processes (see reactor.h).
 *
 * Sending: a reactor writes records in place into its outbound SPSC ring toward the target
 * core (out[core] is its own local queue) and publishes them at the end of its turn, or
 * earlier once enough bytes are pending, then wakes the consumer only if it sleeps. A ring
 * that is full spills, in order, into an overflow list that the flush drains later. Any
 * other thread allocates an envelope and pushes it on the target's inbox.
 *
 * Receiving: records are handled where they lie in the ring (no copy); a message's
 * callback runs directly from there. Records posted to the local queue during a turn run
 * on the next turn, so a process messaging itself cannot starve the loop.
 */
#define _GNU_SOURCE
#include "reactor.h"

#include "log.h"
#include "node.h"
#include "supervisor.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FLUSH_BYTES (16u * 1024) /* publish early once this much is pending in a ring */
#define INBOX_HDR   32u          /* envelope header before the record, keeps it aligned */

static _Thread_local ch_reactor *tls_self;

ch_reactor *ch_reactor_self(void)
{
    return tls_self;
}

uint64_t ch_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* ---- sending ------------------------------------------------------------------------ */

/* Copies of a few bytes, as most ids and messages are, without a call to memcpy: two
 * overlapping word moves cover any length from 8 to 16. Hot path. */
static inline void copy_small(void *dst, const void *src, size_t n)
{
    if (n < 8 || n > 16) {
        if (n && src) memcpy(dst, src, n); /* records without id or payload pass NULL */
        return;
    }
    uint64_t a, b;
    memcpy(&a, src, 8);
    memcpy(&b, (const char *)src + n - 8, 8);
    memcpy(dst, &a, 8);
    memcpy((char *)dst + n - 8, &b, 8);
}

static void fill(void *slot, const ch_rec *h, const void *id, const void *payload, bool indirect)
{
    ch_rec *rec = slot;
    uint32_t ring_size = rec->ring_size;
    *rec = *h;
    rec->ring_size = ring_size;
    if (h->id_len) copy_small(rec + 1, id, h->id_len);
    char *dst = (char *)slot + ch_rec_payload_off(h->id_len, h->len);
    if (indirect) {
        rec->flags |= CH_REC_INDIRECT;
        memcpy(dst, &payload, sizeof(payload));
    } else if (h->len) {
        copy_small(dst, payload, h->len);
    }
}

void ch_reactor_wake(ch_reactor *r)
{
    /* Pairs with the fence in sleep_until_work: either we see `sleeping`, or the consumer
     * sees what we published before it sleeps. */
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&r->sleeping, memory_order_relaxed)) return;
    if (!atomic_exchange(&r->sleeping, 0)) return;
    uint64_t one = 1;
    ssize_t w = write(r->efd, &one, sizeof(one));
    (void)w; /* an eventfd write only fails on counter overflow, which still wakes */
}

static bool publish(ch_reactor *r, unsigned dst)
{
    r->dirty[dst] = false;
    if (!ch_mbox_publish(r->out[dst])) return false;
    if (dst != r->core) ch_reactor_wake(&r->node->reactors[dst]);
    return true;
}

/* Moves spilled records into the ring, oldest first, while there is room. */
static void drain_overflow(ch_reactor *r, unsigned dst)
{
    ch_outq *q = &r->ovf[dst];
    while (q->head) {
        ch_ovf *o = q->head;
        uint8_t *slot = ch_mbox_reserve(r->out[dst], o->size);
        if (!slot) return;
        memcpy(slot + 4, o->rec + 4, o->size - 4);
        r->dirty[dst] = true;
        q->head = o->next;
        if (!q->head) q->tail = NULL;
        q->bytes -= o->size;
        free(o);
    }
}

unsigned ch_reactor_flush(ch_reactor *r)
{
    unsigned cores = r->node->nreactors, n = 0;
    for (unsigned d = 0; d < cores; d++) {
        if (r->ovf[d].head) drain_overflow(r, d);
        if (r->dirty[d]) n += publish(r, d);
    }
    return n;
}

static void *spill(ch_reactor *r, unsigned dst, size_t size)
{
    ch_ovf *o = aligned_alloc(32, (sizeof(ch_ovf) + size + 31) & ~(size_t)31);
    if (!o) return NULL;
    o->next = NULL;
    o->size = size;
    ch_outq *q = &r->ovf[dst];
    if (q->tail)
        q->tail->next = o;
    else
        q->head = o;
    q->tail = o;
    q->bytes += size;
    return o->rec;
}

/* Hot path: one record into this reactor's ring toward dst. */
static int post_ring(ch_reactor *r, unsigned dst, const ch_rec *h, const void *id,
                     const void *payload, bool user)
{
    ch_mbox *ring = r->out[dst];
    size_t off = ch_rec_payload_off(h->id_len, h->len);
    size_t size = off + h->len;
    void *heap = NULL;
    if (size > ch_mbox_max_record(ring)) {
        /* Too big for a ring record: the payload travels by pointer. */
        heap = malloc(h->len ? h->len : 1);
        if (!heap) return -ENOMEM;
        memcpy(heap, payload, h->len);
        size = off + sizeof(void *);
    }
    ch_outq *q = &r->ovf[dst];
    if (q->head) drain_overflow(r, dst); /* room may be back: keep spills the exception */
    void *slot = q->head ? NULL : ch_mbox_reserve(ring, size);
    if (!slot) {
        if (r->dirty[dst]) publish(r, dst); /* let the consumer make room */
        if (user && q->bytes >= ring->pcap) {
            free(heap);
            return -EAGAIN;
        }
        slot = spill(r, dst, size);
        if (!slot) {
            free(heap);
            return -ENOMEM;
        }
        ((ch_rec *)slot)->ring_size = 0;
    }
    fill(slot, h, id, heap ? heap : payload, heap != NULL);

    r->dirty[dst] = true;
    if (ch_mbox_unpublished(ring) >= FLUSH_BYTES) publish(r, dst);
    return 0;
}

static int post_inbox(ch_node *n, unsigned dst, const ch_rec *h, const void *id,
                      const void *payload, bool user)
{
    ch_reactor *r = &n->reactors[dst];
    size_t size = ch_rec_payload_off(h->id_len, h->len) + h->len;
    if (!ch_inbox_charge(&r->inbox, size, user ? n->cfg.inbox_bytes : SIZE_MAX)) return -EAGAIN;
    uint8_t *env = aligned_alloc(32, (INBOX_HDR + size + 31) & ~(size_t)31);
    if (!env) {
        ch_inbox_discharge(&r->inbox, size);
        return -ENOMEM;
    }
    ch_rec *rec = (ch_rec *)(env + INBOX_HDR);
    rec->ring_size = (uint32_t)size;
    fill(rec, h, id, payload, false);
    ch_inbox_push(&r->inbox, (ch_inbox_node *)env);
    ch_reactor_wake(r);
    return 0;
}

int ch_reactor_post_inbox(ch_node *n, unsigned dst, const ch_rec *h, const void *payload)
{
    return post_inbox(n, dst, h, NULL, payload, false);
}

int ch_reactor_post_inbox_id(ch_node *n, unsigned dst, const ch_rec *h, const void *id,
                             const void *payload)
{
    return post_inbox(n, dst, h, id, payload, false);
}

int ch_reactor_post(ch_node *n, unsigned dst, const ch_rec *h, const void *id, const void *payload,
                    bool user)
{
    ch_reactor *self = tls_self;
    if (self && self->node == n) return post_ring(self, dst, h, id, payload, user);
    return post_inbox(n, dst, h, id, payload, user);
}

void ch_reactor_reply(ch_reactor *r, unsigned core, uint64_t ref, int status, const void *data,
                      size_t len)
{
    if (len > r->node->cfg.max_message) {
        status = CH_EMSGSIZE;
        len = 0;
    }
    ch_rec h = {.op = CH_OP_REPLY, .len = (uint32_t)len, .ref = ref, .aux = (uint64_t)status};
    int rc = ch_reactor_post(r->node, core, &h, NULL, data, false);
    if (rc < 0) CH_ERROR("reply to core %u lost: %s", core, ch_strerror(rc));
}

/* ---- dispatch ----------------------------------------------------------------------- */

static ch_proc *find_target(ch_reactor *r, ch_rec *rec)
{
    if (r->shut) return NULL;
    return ch_ptable_find(&r->procs, rec->aux, ch_rec_id(rec), rec->id_len);
}

/* Not here: on a clustered node it may live elsewhere (or be on its way here); unless the
 * registry already routed it here (final), the coordinator tries the registry row. */
static bool try_elsewhere(ch_reactor *r, ch_rec *rec, unsigned core, uint64_t ref)
{
    if (!r->node->coord || r->shut || (rec->flags & CH_REC_ROW)) return false;
    r->node->up->miss(r, rec, core, ref);
    return true;
}

static void on_cast(ch_reactor *r, ch_rec *rec)
{
    ch_proc *p = find_target(r, rec);
    if (r->ho && r->node->up->ho_intercept(r, rec, p, 0, 0)) return;
    if (!p && try_elsewhere(r, rec, 0, 0)) return;
    if (!p) {
        uint64_t v = atomic_load_explicit(&r->stats.dead_letters, memory_order_relaxed);
        atomic_store_explicit(&r->stats.dead_letters, v + 1, memory_order_relaxed);
        CH_DEBUG("dead letter for %.*s", rec->id_len, ch_rec_id(rec));
        return;
    }
    ch_msg m = {.kind = CH_MSG_CAST, .data = ch_rec_payload(rec), .len = rec->len};
    ch_sup_deliver(r, p, &m, 0, 0);
}

static void call_target(ch_reactor *r, ch_rec *rec, unsigned core, uint64_t ref)
{
    ch_proc *p = find_target(r, rec);
    if (r->ho && r->node->up->ho_intercept(r, rec, p, core, ref)) return;
    if (!p && try_elsewhere(r, rec, core, ref)) return;
    if (!p) {
        ch_reactor_reply(r, core, ref, r->shut ? CH_ESTOPPED : CH_ENOPROC, NULL, 0);
        return;
    }
    ch_msg m = {.kind = CH_MSG_CALL, .data = ch_rec_payload(rec), .len = rec->len};
    ch_sup_deliver(r, p, &m, core, ref);
}

static void on_fcall(ch_reactor *r, ch_rec *rec)
{
    ch_fcall *c = (ch_fcall *)(uintptr_t)rec->ref;
    if (r->shut) {
        ch_fcall_complete(c, CH_ESTOPPED, NULL, 0);
        return;
    }
    uint64_t ref = ch_sup_pending_foreign(r, c);
    if (!ref) {
        ch_fcall_complete(c, -ENOMEM, NULL, 0);
        return;
    }
    call_target(r, rec, r->core, ref);
}

static void on_reply(ch_reactor *r, ch_rec *rec)
{
    ch_timer *e = ch_timers_get(&r->timers, rec->ref);
    if (!e) return; /* the call timed out or its caller is gone */
    ch_sup_complete_call(r, e, (int)(int64_t)rec->aux, ch_rec_payload(rec), rec->len);
}

static void on_query(ch_reactor *r, ch_rec *rec)
{
    ch_query *q = (ch_query *)(uintptr_t)rec->ref;
    if (r->core == r->node->cores) { /* a coordinator that already shut down */
        q->status = CH_ESTOPPED;
        ch_query_core_done(q);
        return;
    }
    if (!q->list) {
        ch_proc *p =
            r->shut ? NULL
                    : ch_ptable_find(&r->procs, q->key->hash, ch_spec_id(q->key), q->key->id_len);
        if (!p && r->node->coord && !r->shut) { /* not here: ask the hub's registry */
            ch_rec h = *rec;
            ch_reactor_post(r->node, r->node->cores, &h, NULL, NULL, false);
            return;
        }
        q->status = p ? 0 : CH_ENOPROC;
        if (p && !(q->info = ch_info_new(p))) q->status = -ENOMEM;
    } else {
        ch_sup_list(r, q->tag, &q->per_core[r->core]);
    }
    ch_query_core_done(q);
}

static void on_post(ch_reactor *r, ch_rec *rec)
{
    ch_post post;
    memcpy(&post, ch_rec_payload(rec), sizeof(post));
    post.fn(r->node, post.ud);
}

static void dispatch(ch_reactor *r, ch_rec *rec)
{
    if (r->core == r->node->cores && rec->op == CH_OP_REG && r->shut) return;
    if (r->core == r->node->cores && !r->shut && r->node->up->coord_dispatch(r, rec)) {
        if (rec->flags & CH_REC_INDIRECT) free(ch_rec_payload(rec));
        return;
    }
    switch (rec->op) {
    case CH_OP_CAST:
        on_cast(r, rec);
        break;
    case CH_OP_CALL:
        call_target(r, rec, rec->src_core, rec->ref);
        break;
    case CH_OP_FCALL:
        on_fcall(r, rec);
        break;
    case CH_OP_REPLY:
        on_reply(r, rec);
        break;
    case CH_OP_START:
        ch_sup_start_batch(r, (ch_batch *)(uintptr_t)rec->ref, ch_rec_payload(rec), rec->len / 4);
        break;
    case CH_OP_STOP:
        ch_sup_stop_batch(r, (ch_batch *)(uintptr_t)rec->ref, ch_rec_payload(rec), rec->len / 4);
        break;
    case CH_OP_POST:
        on_post(r, rec);
        break;
    case CH_OP_QUERY:
        on_query(r, rec);
        break;
    case CH_OP_MIG: /* only on a clustered node */
        r->node->up->ho_on_rec(r, rec);
        break;
    case CH_OP_SHUTDOWN:
        if (r->core == r->node->cores) r->node->up->coord_shutdown(r);
        ch_sup_shutdown(r);
        break;
    default:
        CH_ERROR("unknown record op %u dropped", rec->op);
    }
    if (rec->flags & CH_REC_INDIRECT) free(ch_rec_payload(rec));
}

/* ---- the loop ----------------------------------------------------------------------- */

static unsigned drain_mbox(ch_reactor *r, ch_mbox *mb, unsigned limit)
{
    unsigned n = 0;
    size_t size;
    ch_rec *rec;
    while (n < limit && (rec = ch_mbox_peek(mb, &size))) {
        dispatch(r, rec);
        ch_mbox_next(mb);
        n++;
    }
    if (n) ch_mbox_release(mb);
    return n;
}

static unsigned drain_inbox(ch_reactor *r, unsigned limit)
{
    unsigned n = 0;
    ch_inbox_node *env;
    while (n < limit && (env = ch_inbox_pop(&r->inbox))) {
        ch_rec *rec = (ch_rec *)((uint8_t *)env + INBOX_HDR);
        size_t size = rec->ring_size;
        dispatch(r, rec);
        ch_inbox_discharge(&r->inbox, size);
        free(env);
        n++;
    }
    return n;
}

static void arm_wakeup(ch_reactor *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    if (!sqe) return; /* retried on the next turn */
    io_uring_prep_read(sqe, r->efd, &r->efd_buf, sizeof(r->efd_buf), 0);
    io_uring_sqe_set_data64(sqe, 1);
    r->efd_armed = true;
}

struct io_uring_sqe *ch_reactor_sqe(ch_reactor *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    if (!sqe) {
        io_uring_submit(&r->uring);
        sqe = io_uring_get_sqe(&r->uring);
    }
    return sqe;
}

/* Completions: the wake-up read (user data 1), or a ch_io whose callback runs now. Each
 * CQE is consumed before its callback, which may queue new operations. */
static unsigned reap(ch_reactor *r)
{
    struct io_uring_cqe *cqe;
    unsigned n = 0;
    while (n < r->node->cfg.batch && io_uring_peek_cqe(&r->uring, &cqe) == 0) {
        uint64_t data = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        uint32_t flags = cqe->flags;
        io_uring_cqe_seen(&r->uring, cqe);
        n++;
        if (data == 1) {
            r->efd_armed = false;
        } else if (data) {
            ch_io *io = (ch_io *)(uintptr_t)data;
            io->cb(r, io, res, flags);
        }
    }
    if (!r->efd_armed) arm_wakeup(r);
    return n;
}

static unsigned turn(ch_reactor *r)
{
    unsigned batch = r->node->cfg.batch, work = reap(r);
    work += drain_inbox(r, batch);
    for (unsigned s = 0; s < r->node->nreactors; s++)
        work += drain_mbox(r, r->in[s], batch);
    work += ch_sup_fire_timers(r, ch_now_ns());
    if (r->ho) work += r->node->up->ho_turn(r);
    return work;
}

static bool has_work(ch_reactor *r)
{
    if (!ch_inbox_empty(&r->inbox) || io_uring_cq_ready(&r->uring)) return true;
    for (unsigned s = 0; s < r->node->nreactors; s++)
        if (!ch_mbox_empty(r->in[s]) || r->ovf[s].head) return true;
    if (r->ho && r->node->up->ho_busy(r)) return true;
    return ch_timers_next(&r->timers) <= ch_now_ns();
}

static void sleep_until_work(ch_reactor *r)
{
    atomic_store(&r->sleeping, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (!has_work(r) && !atomic_load(&r->quit)) {
        uint64_t next = ch_timers_next(&r->timers);
        struct __kernel_timespec ts, *tsp = NULL;
        if (next != UINT64_MAX) {
            uint64_t now = ch_now_ns(), d = next > now ? next - now : 0;
            ts.tv_sec = (long long)(d / 1000000000ull);
            ts.tv_nsec = (long long)(d % 1000000000ull);
            tsp = &ts;
        }
        struct io_uring_cqe *cqe;
        io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, tsp, NULL);
    }
    atomic_store(&r->sleeping, 0);
}

/* The spin adapts to what it buys: a sleep that ended sooner than the longest spin means
 * that spinning would have caught the work without a wake-up, so spin longer; a long
 * sleep means the work comes from far (another process, the network), and a spin would
 * only hold a CPU that someone else may be waiting for, so spin less. */
static uint64_t adapt_spin(uint64_t spin, uint64_t max, uint64_t slept)
{
    if (slept < max) return spin * 2 + 1000 < max ? spin * 2 + 1000 : max;
    return spin / 2;
}

static void pin(ch_reactor *r)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    /* The coordinator floats: pinned, it would share a CPU with reactor 0 for good. */
    if (!r->node->cfg.pin || cpus <= 0 || r->core >= r->node->cores) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(r->core % (unsigned)cpus, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc) CH_WARN("cannot pin reactor %u: %s", r->core, strerror(rc));
}

/* Runs turns until nothing is left anywhere in this reactor: used at shutdown. */
static unsigned run_until_idle(ch_reactor *r)
{
    unsigned total = 0, w;
    do {
        w = turn(r);
        w += ch_reactor_flush(r);
        total += w;
    } while (w);
    return total;
}

static void *reactor_main(void *arg)
{
    ch_reactor *r = arg;
    char name[16];
    if (r->core == r->node->cores)
        snprintf(name, sizeof(name), "coord");
    else
        snprintf(name, sizeof(name), "r%u", r->core);
    ch_log_thread_name(name);
    char tname[16]; /* for top -H and perf: "ch-r0", "ch-coord" */
    snprintf(tname, sizeof(tname), "ch-%.12s", name);
    (void)pthread_setname_np(pthread_self(), tname);
    tls_self = r;
    pin(r);
    if (r->uring_disabled) {
        /* this thread is its issuer from now; by the system call, as Debian 12's liburing
         * 2.3 does not export io_uring_enable_rings */
        if (syscall(__NR_io_uring_register, r->uring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL,
                    0) < 0)
            CH_ERROR("core %u: io_uring not enabled: %s", r->core, strerror(errno));
        r->uring_disabled = false;
    }
    arm_wakeup(r);
    uint64_t spin_ns = (uint64_t)r->node->cfg.spin_us * 1000, idle_since = 0;
    /* Spinning pays only when each reactor has a CPU to itself: with more reactors than
     * CPUs, a spinning thread holds the CPU that the thread it just woke is waiting for,
     * and every hand-off waits out the spin (measured: 3-10x slower remote calls). */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus > 0 && r->node->nreactors > (unsigned)cpus) spin_ns = 0;
    uint64_t spin = spin_ns;
    while (!atomic_load_explicit(&r->quit, memory_order_acquire)) {
        unsigned work = turn(r);
        ch_reactor_flush(r);
        io_uring_submit(&r->uring);
        if (work) {
            idle_since = 0;
            continue;
        }
        uint64_t now = ch_now_ns();
        if (!idle_since) idle_since = now;
        if (now - idle_since < spin) {
            cpu_relax();
            continue;
        }
        sleep_until_work(r);
        spin = adapt_spin(spin, spin_ns, ch_now_ns() - now);
        idle_since = 0;
    }
    tls_self = NULL;
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static void *lines_alloc(size_t bytes)
{
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* The reactor's ring, with the cheapest flags the kernel takes. Only the reactor's own
 * thread submits (SINGLE_ISSUER), and task work (a socket's completion) runs when that
 * thread asks for events rather than interrupting it (DEFER_TASKRUN), and the ring's flag
 * says when some waits (TASKRUN_FLAG: a reactor that never sleeps still reaps it, as
 * io_uring_peek_cqe enters the kernel then); the ring starts disabled so that the thread
 * that enables it, the reactor's, becomes its one issuer. */
static int uring_init(ch_reactor *r)
{
    static const unsigned ladder[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED,
        IORING_SETUP_SUBMIT_ALL, /* before 6.1 */
        0,                       /* before 5.18 */
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(ladder) / sizeof(*ladder) && rc == -EINVAL; i++) {
        struct io_uring_params p = {.flags = ladder[i]};
        if (getenv("CH_URING_PLAIN") && (ladder[i] & IORING_SETUP_DEFER_TASKRUN)) continue;
        rc = io_uring_queue_init_params(256, &r->uring, &p);
        r->uring_disabled = rc == 0 && (ladder[i] & IORING_SETUP_R_DISABLED);
    }
    return rc;
}

int ch_reactor_init(ch_reactor *r, ch_node *n, unsigned core)
{
    memset(r, 0, sizeof(*r));
    r->node = n;
    r->core = core;
    r->efd = -1;
    ch_inbox_init(&r->inbox);
    ch_timers_init(&r->timers);
    unsigned c = n->nreactors;
    /* On lines of their own: a reactor writes these on every send, and a small heap block
     * may otherwise share a line with another reactor's (measured: 3x slower sends). */
    r->in = lines_alloc(c * sizeof(*r->in));
    r->out = lines_alloc(c * sizeof(*r->out));
    r->ovf = lines_alloc(c * sizeof(*r->ovf));
    r->dirty = lines_alloc(c * sizeof(*r->dirty));
    r->restarts = calloc(n->cfg.restart_intensity + 1, sizeof(*r->restarts));
    if (!r->in || !r->out || !r->ovf || !r->dirty || !r->restarts) return -ENOMEM;
    for (unsigned i = 0; i < c; i++) {
        r->in[i] = &n->mboxes[i * c + core];
        r->out[i] = &n->mboxes[core * c + i];
    }
    int rc = ch_ptable_init(&r->procs);
    if (rc < 0) return rc;
    r->efd = eventfd(0, EFD_CLOEXEC);
    if (r->efd < 0) return -errno;
    rc = uring_init(r);
    if (rc < 0) {
        CH_ERROR("io_uring_queue_init failed on core %u: %s", core, strerror(-rc));
        return rc;
    }
    r->uring_ready = true;
    if (n->up && core < n->cores) return n->up->ho_create(r);
    return 0;
}

int ch_reactor_spawn(ch_reactor *r)
{
    int rc = pthread_create(&r->thread, NULL, reactor_main, r);
    if (rc) return -rc;
    r->running = true;
    return 0;
}

void ch_reactor_stop(ch_reactor *r)
{
    if (!r->running) return;
    atomic_store_explicit(&r->quit, true, memory_order_release);
    atomic_store(&r->sleeping, 1); /* force the wake-up write */
    ch_reactor_wake(r);
    pthread_join(r->thread, NULL);
    r->running = false;
}

unsigned ch_reactor_drain(ch_reactor *r)
{
    tls_self = r;
    unsigned n = run_until_idle(r);
    tls_self = NULL;
    return n;
}

static void free_overflow(ch_outq *q)
{
    while (q->head) {
        ch_ovf *o = q->head;
        q->head = o->next;
        free(o);
    }
}

void ch_reactor_destroy(ch_reactor *r)
{
    if (r->uring_ready) io_uring_queue_exit(&r->uring);
    if (r->efd >= 0) close(r->efd);
    for (unsigned i = 0; r->ovf && i < r->node->nreactors; i++)
        free_overflow(&r->ovf[i]);
    if (r->ho) r->node->up->ho_destroy(r);
    ch_ptable_destroy(&r->procs);
    ch_timers_destroy(&r->timers);
    free(r->in);
    free(r->out);
    free(r->ovf);
    free(r->dirty);
    free(r->restarts);
}
