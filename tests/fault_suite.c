/*
 * tests/fault_suite.c - seeded random fault schedules against real `corehub node`
 * processes, then invariants (Jepsen's idea, at the scale of one machine).
 *
 * A schedule starts 3-5 nodes on their own loopback addresses, starts seq processes (the
 * witness of lost, doubled or reordered updates) and blobs, runs pumps on two nodes, and
 * then plays faults drawn from its seed: SIGSTOP shorter and longer than failure detection,
 * kill -9 (alone, with a restart, right after a join or a leave started), partitions of
 * loopback traffic (iptables), joins, graceful leaves and drains; or, one schedule in four,
 * 20+ join/leave cycles of one node on the same port. Then it heals everything, waits for
 * the hub to settle, stops the pumps and checks the invariants (fault_check.c).
 *
 * The seed fixes the schedule (which faults, victims, durations), not the timing of the
 * machine: `fault_suite --seed S --schedules 1` replays schedule S. Waits for the hub poll
 * a condition with a deadline; the pauses are the faults' own durations. See usage().
 */
#define _GNU_SOURCE
#include "fault.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NSEQ          "1000"
#define NBLOB         "100"
#define PUMP_ROUNDS   "1000000000" /* until pump-stop */
#define PUMP_ROUND_MS "100"
#define PUMPS         2
#define SETTLE_MS     20000
#define JOIN_MS       20000 /* a churn cycle's join */
#define EXIT_MS       20000 /* a leave: the node's own bound is FX_LEAVE_MS plus a hand-over */
#define CHURN_MIN     20
#define CHURN_MAX_MS  150000 /* a churn schedule stops cycling after this */

enum { MODE_ANY = -1, MODE_MIXED, MODE_CHURN };

typedef struct opts {
    const char *prog; /* argv[0], for the replay line */
    int schedules, nodes, budget_s, mode;
    int faults; /* per mixed schedule; -1: 4..7 drawn from the seed (0: a baseline) */
    uint64_t seed;
    bool keep;
    bool no_lanes; /* nodes hand over through the coordinators (--no-lanes) */
} opts;

typedef struct sched {
    fx_hub *x;
    uint64_t rng;
    bool fw; /* partitions possible */
    int action_failures;
} sched;

/* ---- the seeded choices --------------------------------------------------------------- */

static uint64_t rnd(sched *s) /* splitmix64 */
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int between(sched *s, int lo, int hi)
{
    return lo + (int)(rnd(s) % (uint64_t)(hi - lo + 1));
}

enum { ANY_UP, MORTAL_UP, MORTAL_UNDRAINED, FREE };

static bool slot_fits(const fx_hub *x, int k, int kind)
{
    bool mortal = k >= x->npumps;
    switch (kind) {
    case ANY_UP:
        return fx_up(x, k);
    case MORTAL_UP:
        return mortal && fx_up(x, k);
    case MORTAL_UNDRAINED:
        return mortal && fx_up(x, k) && !x->slot[k].drained;
    default:
        return mortal && !fx_up(x, k);
    }
}

/* A slot of that kind drawn from the seed, or -1 when there is none. */
static int pick_slot(sched *s, int kind)
{
    int c[FX_MAX_SLOTS], n = 0;
    for (int k = 0; k < s->x->nslots; k++)
        if (slot_fits(s->x, k, kind)) c[n++] = k;
    return n ? c[rnd(s) % (uint64_t)n] : -1;
}

/* ---- faults ------------------------------------------------------------------------------- */

static void action_failed(sched *s, const char *what, int k, int rc)
{
    fx_log(s->x, "  ACTION FAILED: %s slot %d: %d", what, k, rc);
    s->action_failures++;
}

static bool spawn(sched *s, int k, const char *why)
{
    int rc = fx_spawn(s->x, k);
    if (rc < 0) {
        action_failed(s, "spawn", k, rc);
        return false;
    }
    hnode *n = s->x->slot[k].n;
    fx_log(s->x, "%s: slot %d is node %016" PRIx64 " at %s (pid %d, log node-%d.log)", why, k,
           n->id, n->addr, n->pid, n->index);
    return true;
}

static bool stall(sched *s, bool past_detection)
{
    int k = pick_slot(s, ANY_UP);
    int ms = past_detection ? between(s, 2500, 4000) : between(s, 150, 600);
    if (k < 0) return false;
    fx_log(s->x, "SIGSTOP slot %d for %d ms (%s failure detection)", k, ms,
           past_detection ? "longer than" : "shorter than");
    if (past_detection) fx_expose_local(s->x, k);
    kill(s->x->slot[k].n->pid, SIGSTOP);
    th_sleep_ms(ms);
    kill(s->x->slot[k].n->pid, SIGCONT);
    return true;
}

static bool kill_restart(sched *s)
{
    int k = pick_slot(s, MORTAL_UP);
    if (k < 0) return false;
    bool restart = rnd(s) % 2;
    int ms = between(s, 300, 1500);
    fx_log(s->x, "kill -9 slot %d%s", k, restart ? ", then restart it" : "");
    fx_kill(s->x, k);
    if (!restart) return true;
    th_sleep_ms(ms);
    spawn(s, k, "restart");
    return true;
}

static bool kill_mid_join(sched *s)
{
    int k = pick_slot(s, FREE), ms = between(s, 0, 800);
    if (k < 0) return false;
    if (!spawn(s, k, "join (to be killed mid-migration)")) return true;
    th_sleep_ms(ms);
    fx_log(s->x, "kill -9 slot %d, %d ms after its join started", k, ms);
    fx_kill(s->x, k);
    return true;
}

static bool kill_mid_leave(sched *s)
{
    int k = pick_slot(s, MORTAL_UP), ms = between(s, 0, 600);
    if (k < 0) return false;
    fx_log(s->x, "leave slot %d, kill -9 it %d ms later", k, ms);
    fx_expose_local(s->x, k); /* what it had not handed over dies with it */
    fx_count_restarts(s->x, k);
    int st = fx_ctl(s->x, k, NULL, "leave", NULL);
    if (st != 0) fx_log(s->x, "  leave answered %d", st);
    th_sleep_ms(ms);
    fx_kill(s->x, k);
    return true;
}

static void log_groups(sched *s, const int *slots, int m, int a, int ms)
{
    char text[64];
    int at = 0;
    for (int i = 0; i < m; i++)
        at += snprintf(text + at, sizeof(text) - (size_t)at, "%s%d",
                       i == a ? " | "
                       : i    ? ","
                              : "",
                       slots[i]);
    fx_log(s->x, "partition slots %s for %d ms", text, ms);
}

static bool partition(sched *s)
{
    int slots[FX_MAX_SLOTS], m = 0;
    for (int k = 0; k < s->x->nslots; k++)
        if (fx_up(s->x, k)) slots[m++] = k;
    if (!s->fw || m < 2) return false;
    for (int i = m - 1; i > 0; i--) { /* a seeded shuffle: the first a slots are one side */
        int j = (int)(rnd(s) % (uint64_t)(i + 1)), t = slots[i];
        slots[i] = slots[j];
        slots[j] = t;
    }
    int a = between(s, 1, m / 2), ms = between(s, 2000, 4000);
    log_groups(s, slots, m, a, ms);
    s->x->exposed_all = true; /* each side restarts the other's processes */
    for (int i = 0; i < a; i++)
        for (int j = a; j < m; j++)
            if (fx_fw_block(slots[i], slots[j]) < 0) action_failed(s, "iptables", slots[i], -EIO);
    th_sleep_ms(ms);
    fx_fw_heal();
    fx_log(s->x, "partition healed");
    return true;
}

static bool join(sched *s)
{
    int k = pick_slot(s, FREE);
    if (k < 0) return false;
    spawn(s, k, "join");
    return true;
}

/* `ctl leave` of slot k and its exit, which must be 0 (everything handed over). */
static bool leave_slot(sched *s, int k)
{
    fx_hub *x = s->x;
    uint64_t t0 = th_now_ms();
    fx_count_restarts(x, k); /* the starts it sent for the dead's processes count */
    int st = fx_ctl(x, k, NULL, "leave", NULL);
    int rc = st == 0 ? node_wait_exit(x->slot[k].n, EXIT_MS) : st;
    x->leaves++;
    x->slot[k].st = SLOT_GONE;
    if (rc == 0) return true;
    x->leave_failures++;
    fx_log(x, "  leave of slot %d failed after %" PRIu64 " ms: %s %d", k, th_now_ms() - t0,
           st != 0            ? "ctl status"
           : rc == -ETIMEDOUT ? "still running"
                              : "exit",
           rc);
    if (x->slot[k].n->pid > 0) fx_kill(x, k); /* what it still holds dies with it */
    return false;
}

static bool leave(sched *s)
{
    int k = pick_slot(s, MORTAL_UP);
    if (k < 0) return false;
    fx_log(s->x, "leave slot %d", k);
    leave_slot(s, k);
    return true;
}

static bool drain(sched *s)
{
    int k = pick_slot(s, MORTAL_UNDRAINED);
    if (k < 0) return false;
    fx_log(s->x, "drain slot %d", k);
    char *text = NULL;
    int st = fx_ctl(s->x, k, &text, "drain", NULL);
    s->x->drains++;
    s->x->slot[k].drained = true;
    if (st != 0) s->x->drain_failures++;
    size_t len = text ? strcspn(text, "\n") : 0;
    fx_log(s->x, "  %s%.*s", st == 0 ? "" : "FAILED: ", (int)len, text ? text : "");
    free(text);
    return true;
}

static bool stall_short(sched *s)
{
    return stall(s, false);
}

static bool stall_long(sched *s)
{
    return stall(s, true);
}

static const struct {
    bool (*run)(sched *s); /* false: not possible now (no victim), nothing done */
    int weight;
} faults[] = {
    {stall_short, 2}, {stall_long, 2}, {kill_restart, 2}, {kill_mid_join, 1}, {kill_mid_leave, 1},
    {partition, 2},   {join, 1},       {leave, 1},        {drain, 1},
};

#define NFAULTS (sizeof(faults) / sizeof(faults[0]))

static void one_fault(sched *s)
{
    int total = 0;
    for (size_t i = 0; i < NFAULTS; i++)
        total += faults[i].weight;
    for (int tries = 0; tries < 20; tries++) {
        int w = between(s, 0, total - 1);
        size_t i = 0;
        while (w >= faults[i].weight)
            w -= faults[i++].weight;
        if (faults[i].run(s)) return;
    }
    stall_short(s);
}

static void run_mixed(sched *s, int nfaults)
{
    int steps = between(s, 4, 7);
    if (nfaults >= 0) steps = nfaults;
    fx_log(s->x, "mixed schedule: %d faults", steps);
    for (int i = 0; i < steps; i++) {
        one_fault(s);
        th_sleep_ms(between(s, 300, 1200)); /* calm between faults, part of the schedule */
    }
}

/* ---- churn ------------------------------------------------------------------------------ */

static void run_churn(sched *s)
{
    fx_hub *x = s->x;
    int k = x->nslots - 1, cycles = between(s, CHURN_MIN, CHURN_MIN + 4), c = 0;
    uint64_t t0 = th_now_ms();
    char why[160];
    fx_log(x, "churn schedule: %d join/leave cycles of slot %d", cycles, k);
    for (c = 1; c <= cycles && th_now_ms() - t0 < CHURN_MAX_MS; c++) {
        if (!spawn(s, k, "churn join")) break;
        if (!x->slot[k].port) x->slot[k].port = atoi(strrchr(x->slot[k].n->addr, ':') + 1);
        if (!fx_wait_settled(x, JOIN_MS, why, sizeof(why))) {
            fx_log(x, "  cycle %d: the join did not settle: %s", c, why);
            action_failed(s, "churn join", k, -ETIMEDOUT);
            break;
        }
        uint64_t t = th_now_ms();
        if (!leave_slot(s, k)) break;
        fx_log(x, "  cycle %d: left in %" PRIu64 " ms", c, th_now_ms() - t);
    }
    if (c <= cycles) fx_log(x, "churn stopped after cycle %d of %d", c, cycles);
}

/* ---- a schedule --------------------------------------------------------------------------- */

static bool setup(sched *s, int nodes)
{
    fx_hub *x = s->x;
    char why[160], sender[16];
    for (int k = 0; k < nodes; k++)
        if (!spawn(s, k, "start")) return false;
    if (!fx_wait_settled(x, SETTLE_MS, why, sizeof(why))) {
        fx_log(x, "the hub did not form: %s", why);
        return false;
    }
    if (fx_ctl(x, 0, NULL, "start-many", FX_SEQ_PREFIX, NSEQ, "seq", NULL) != 0 ||
        fx_ctl(x, 0, NULL, "start-blobs", FX_BLOB_PREFIX, NBLOB, FX_STR(FX_BLOB_SIZE), NULL) != 0) {
        fx_log(x, "could not start the processes");
        return false;
    }
    x->started = true;
    for (int p = 0; p < x->npumps; p++) {
        snprintf(sender, sizeof(sender), "%d", p + 1);
        if (fx_ctl(x, p, NULL, "pump", FX_SEQ_PREFIX, NSEQ, PUMP_ROUNDS, sender, PUMP_ROUND_MS,
                   NULL) != 0)
            return false;
    }
    fx_log(x, "hub of %d nodes: %s seq processes, %s blobs, %d pumps", nodes, NSEQ, NBLOB,
           x->npumps);
    return true;
}

/* SIGCONT and firewall heal happened with each fault; killed slots come back. */
static bool heal(sched *s, char *why, size_t cap)
{
    fx_fw_heal();
    for (int k = 0; k < s->x->nslots; k++)
        if (s->x->slot[k].st == SLOT_DEAD) spawn(s, k, "heal: restart");
    fx_log(s->x, "healed; waiting for the hub to settle");
    bool ok = fx_wait_settled(s->x, SETTLE_MS, why, cap);
    fx_log(s->x, ok ? "settled" : "NOT settled after %d ms: %s", SETTLE_MS, why);
    return ok;
}

/* Runs one schedule; true when every invariant held. */
static bool run_schedule(const opts *o, int number, uint64_t seed, bool fw)
{
    fx_hub *x = calloc(1, sizeof(*x));
    sched s = {.x = x, .rng = seed, .fw = fw};
    int mode = o->mode != MODE_ANY ? o->mode : seed % 4 == 3 ? MODE_CHURN : MODE_MIXED;
    if (!x || fx_hub_init(x, number, o->nodes, PUMPS, strtoull(NSEQ, NULL, 10),
                          strtoull(NBLOB, NULL, 10)) < 0) {
        printf("schedule %d: cannot set up: %s\n", number, strerror(errno));
        free(x);
        return false;
    }
    x->no_lanes = o->no_lanes;
    fx_cleanup_on_signal(x);
    fx_log(x, "schedule %d seed %" PRIu64 " (%s, %d nodes)", number, seed,
           mode == MODE_CHURN ? "churn" : "mixed", o->nodes);
    int failed = 1;
    char why[160] = "";
    if (setup(&s, o->nodes)) {
        if (mode == MODE_CHURN)
            run_churn(&s);
        else
            run_mixed(&s, o->faults);
        bool settled = heal(&s, why, sizeof(why));
        fx_pumps p;
        fx_pumps_stop(x, &p);
        failed = fx_check(x, &p, settled, why);
    }
    if (s.action_failures) fx_log(x, "%d fault actions failed", s.action_failures);
    bool ok = failed == 0 && s.action_failures == 0;
    fx_log(x, "schedule %d seed %" PRIu64 ": %s (%.1f s)%s", number, seed, ok ? "PASSED" : "FAILED",
           (double)(th_now_ms() - x->t0_ms) / 1000.0,
           ok || o->keep ? "" : " (--keep keeps its node logs)");
    if (!ok)
        printf("replay: %s --seed %" PRIu64 " --schedules 1 --nodes %d%s%s\n", o->prog, seed,
               o->nodes,
               o->mode == MODE_ANY  ? ""
               : mode == MODE_CHURN ? " --mode churn"
                                    : " --mode mixed",
               o->no_lanes ? " --no-lanes" : "");
    fx_hub_fini(x, !ok && o->keep);
    fx_cleanup_on_signal(NULL);
    free(x);
    return ok;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: fault_suite [--schedules N] [--seed S] [--time-budget SECONDS] [--nodes N]\n"
               "                   [--mode mixed|churn] [--faults N] [--keep] [--no-lanes]\n"
               "Runs N (default 3) seeded fault schedules against real corehub nodes and checks\n"
               "the hub's invariants after each. Schedule i uses seed S+i (S random by default);\n"
               "`--seed S --schedules 1` replays one. Seeds = 3 mod 4 are churn schedules unless\n"
               "--mode says. --time-budget: start no schedule after that many seconds. --nodes:\n"
               "3..5 (default 4). --faults: faults per mixed schedule (default 4..7 from the\n"
               "seed; 0 checks the invariants without faults). --keep: keep the node logs of\n"
               "failing schedules. --no-lanes: handover through the coordinators, not on lanes.\n"
               "Partitions need root and iptables; without them they are skipped (said once).\n"
               "Run it under `flock /tmp/ch-multinode.lock` on a shared machine.\n");
}

static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){
        .prog = argv[0], .schedules = 3, .nodes = 4, .budget_s = 0, .mode = MODE_ANY, .faults = -1};
    bool seeded = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--keep") == 0 || strcmp(a, "--no-lanes") == 0) {
            if (strcmp(a, "--keep") == 0)
                o->keep = true;
            else
                o->no_lanes = true;
            continue;
        }
        if (!v) return -1;
        i++;
        if (strcmp(a, "--schedules") == 0)
            o->schedules = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            o->seed = strtoull(v, NULL, 10), seeded = true;
        else if (strcmp(a, "--time-budget") == 0)
            o->budget_s = atoi(v);
        else if (strcmp(a, "--nodes") == 0)
            o->nodes = atoi(v);
        else if (strcmp(a, "--faults") == 0)
            o->faults = atoi(v);
        else if (strcmp(a, "--mode") == 0 && (!strcmp(v, "mixed") || !strcmp(v, "churn")))
            o->mode = strcmp(v, "churn") == 0 ? MODE_CHURN : MODE_MIXED;
        else
            return -1;
    }
    if (!seeded && getrandom(&o->seed, sizeof(o->seed), 0) != sizeof(o->seed))
        o->seed = (uint64_t)time(NULL);
    if (!seeded) o->seed %= 1000000000ull; /* short enough to type */
    return o->schedules >= 1 && o->nodes >= 3 && o->nodes <= 5 && o->budget_s >= 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    opts o;
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (parse_opts(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("fault suite: seed %" PRIu64 ", %d schedules, %d nodes, time budget %d s\n", o.seed,
           o.schedules, o.nodes, o.budget_s);
    fx_cleanup_on_signal(NULL);
    bool fw = fx_fw_init();
    uint64_t t0 = th_now_ms();
    int passed = 0, failed = 0;
    for (int i = 0; i < o.schedules; i++) {
        if (o.budget_s && th_now_ms() - t0 >= (uint64_t)o.budget_s * 1000) {
            printf("fault suite: time budget of %d s spent; %d schedules not started\n", o.budget_s,
                   o.schedules - i);
            break;
        }
        if (run_schedule(&o, i + 1, o.seed + (uint64_t)i, fw))
            passed++;
        else
            failed++;
    }
    fx_fw_fini();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
