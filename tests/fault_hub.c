/*
 * tests/fault_hub.c - the fault suite's hub: node slots, exposure records, settling, the
 * loopback firewall and cleanup (see fault.h).
 *
 * Cleanup must happen whatever ends the suite. Normal paths call fx_hub_fini and
 * fx_fw_fini; SIGINT and SIGTERM run a handler that only makes async-signal-safe calls
 * (kill, fork, execve, waitpid, write, _exit) on data prepared in advance: the pids in the
 * harness and the iptables command lines built by fx_fw_init. Nodes also die with the
 * suite (the harness sets PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETTLE_POLL_MS 100 /* each look asks every node twice: not too often */

void fx_log(const fx_hub *x, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    double t = (double)(th_now_ms() - x->t0_ms) / 1000.0;
    printf("[s%d %5.1fs] %s\n", x->schedule, t, line);
    fflush(stdout);
}

bool fx_up(const fx_hub *x, int k)
{
    return x->slot[k].st == SLOT_UP && x->slot[k].n && x->slot[k].n->pid > 0;
}

int fx_hub_init(fx_hub *x, int schedule, int nodes, int npumps, uint64_t nseq, uint64_t nblob)
{
    memset(x, 0, sizeof(*x));
    x->schedule = schedule;
    x->nslots = nodes + 1 <= FX_MAX_SLOTS ? nodes + 1 : FX_MAX_SLOTS;
    x->npumps = npumps;
    x->nseq = nseq;
    x->nblob = nblob;
    x->t0_ms = th_now_ms();
    x->exposed_seq = calloc(nseq, 1);
    x->exposed_blob = calloc(nblob, 1);
    if (!x->exposed_seq || !x->exposed_blob) return -ENOMEM;
    return harness_init(&x->h);
}

void fx_hub_fini(fx_hub *x, bool keep)
{
    fx_fw_heal();
    for (int k = 0; k < x->nslots; k++)
        if (x->slot[k].n && x->slot[k].n->pid > 0) kill(x->slot[k].n->pid, SIGCONT);
    x->h.keep = keep;
    harness_fini(&x->h);
    free(x->exposed_seq);
    free(x->exposed_blob);
    x->exposed_seq = x->exposed_blob = NULL;
}

/* ---- control ------------------------------------------------------------------------------ */

int fx_ctl(fx_hub *x, int k, char **text, ...)
{
    char *out = NULL;
    int status = 0, rc = -ENOENT;
    va_list ap;
    va_start(ap, text);
    if (x->slot[k].n) rc = node_ctl_va(x->slot[k].n, &status, &out, ap);
    va_end(ap);
    if (text)
        *text = out;
    else
        free(out);
    return rc < 0 ? rc : status;
}

uint64_t fx_stat(const char *stats, const char *name)
{
    long long v = harness_stat_value(stats, name);
    return v < 0 ? 0 : (uint64_t)v;
}

/* ---- spawning and exposure ------------------------------------------------------------ */

static void slot_listen(const fx_hub *x, int k, char *buf, size_t cap)
{
    snprintf(buf, cap, "127.0.0.%d:%d", 11 + k, x->slot[k].port);
}

int fx_spawn(fx_hub *x, int k)
{
    char listen[32];
    const char *args[HARNESS_MAX_ARGS];
    int n = 0;
    slot_listen(x, k, listen, sizeof(listen));
    static const char *const fixed[] = {"--probe-ms", FX_PROBE_MS,         "--leave-wait",
                                        FX_LEAVE_MS,  "--strategy",        "hotswap",
                                        "--handover", "--confirm-handover"};
    args[n++] = "--listen";
    args[n++] = listen;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        args[n++] = fixed[i];
    if (x->no_lanes) args[n++] = "--no-lanes";
    for (int s = 0; s < x->npumps; s++) {
        if (s == k || !fx_up(x, s)) continue;
        args[n++] = "--seed";
        args[n++] = x->slot[s].n->addr;
    }
    hnode *node = node_spawnv(&x->h, args, n);
    if (!node) return -EIO;
    x->slot[k] = (fx_slot){.n = node, .st = SLOT_UP, .port = x->slot[k].port};
    return 0;
}

/* The index of id in PREFIX0..PREFIX<count-1>, if it is one. */
bool fx_id_index(const char *id, size_t len, const char *prefix, uint64_t count, uint64_t *i)
{
    size_t pl = strlen(prefix);
    if (len <= pl || strncmp(id, prefix, pl) != 0) return false;
    uint64_t v = 0;
    for (size_t at = pl; at < len; at++) {
        if (id[at] < '0' || id[at] > '9') return false;
        v = v * 10 + (uint64_t)(id[at] - '0');
    }
    *i = v;
    return v < count;
}

static int mark(uint8_t *flag)
{
    int fresh = !*flag;
    *flag = 1;
    return fresh;
}

/* Marks each id of a `procs` listing ("ID TYPE NODE CORE" lines) whose node is `node`, or
 * every listed id when node is 0. Returns how many it marked. */
static uint64_t expose_listing(fx_hub *x, const char *text, uint64_t node)
{
    uint64_t marked = 0, i;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t idlen = strcspn(line, " \n");
        uint64_t on = 0;
        bool match = sscanf(line + idlen, " %*s %" SCNx64, &on) == 1 && (!node || on == node);
        if (match && fx_id_index(line, idlen, FX_SEQ_PREFIX, x->nseq, &i))
            marked += mark(&x->exposed_seq[i]);
        else if (match && fx_id_index(line, idlen, FX_BLOB_PREFIX, x->nblob, &i))
            marked += mark(&x->exposed_blob[i]);
        line = end ? end + 1 : NULL;
    }
    return marked;
}

void fx_expose_local(fx_hub *x, int k)
{
    char *text = NULL;
    int st = fx_ctl(x, k, &text, "procs", "--local", NULL);
    uint64_t marked = st == 0 ? expose_listing(x, text, 0) : 0;
    free(text);
    if (st != 0) fx_log(x, "  slot %d did not list its processes (%d)", k, st);
    fx_log(x, "  exposed %" PRIu64 " more ids held by slot %d", marked, k);
}

/* Ids that a survivor's registry still places on a node that was just killed: moves that
 * completed between the listing taken before the kill and the kill itself. */
static void expose_registry(fx_hub *x, uint64_t dead_id)
{
    for (int s = 0; s < x->npumps; s++) {
        if (!fx_up(x, s)) continue;
        char *text = NULL;
        int st = fx_ctl(x, s, &text, "procs", NULL);
        uint64_t marked = st == 0 ? expose_listing(x, text, dead_id) : 0;
        free(text);
        if (st != 0) continue;
        if (marked) fx_log(x, "  exposed %" PRIu64 " more ids the registry placed there", marked);
        return;
    }
}

void fx_count_restarts(fx_hub *x, int k)
{
    fx_slot *s = &x->slot[k];
    char *stats = NULL;
    if (!s->counted && fx_ctl(x, k, &stats, "stats", NULL) == 0) {
        x->restarts_of_dead += fx_stat(stats, "crash_restarts");
        s->counted = true;
    }
    free(stats);
}

void fx_kill(fx_hub *x, int k)
{
    fx_slot *s = &x->slot[k];
    fx_count_restarts(x, k);
    fx_expose_local(x, k);
    uint64_t id = s->n->id;
    node_kill9(s->n);
    s->st = SLOT_DEAD;
    expose_registry(x, id);
}

/* ---- settling ----------------------------------------------------------------------------- */

/* Whether slot k's `members` lists exactly the up slots as alive. */
static bool members_agree(fx_hub *x, int k, char *why, size_t cap)
{
    char *text = NULL;
    int st = fx_ctl(x, k, &text, "members", NULL);
    int alive = 0, want = 0;
    bool ok = st == 0;
    for (const char *line = text; ok && line && *line;) {
        uint64_t id = 0;
        char state[16] = "";
        if (sscanf(line, "%" SCNx64 " %*s %15s", &id, state) == 2 && strcmp(state, "alive") == 0) {
            alive++;
            bool known = false;
            for (int j = 0; j < x->nslots; j++)
                known |= fx_up(x, j) && x->slot[j].n->id == id;
            if (!known) snprintf(why, cap, "slot %d sees %016" PRIx64 " alive (not ours)", k, id);
            ok = known;
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
    for (int j = 0; j < x->nslots; j++)
        want += fx_up(x, j);
    if (st != 0) snprintf(why, cap, "slot %d does not answer members (%d)", k, st);
    if (ok && alive != want) snprintf(why, cap, "slot %d sees %d alive, want %d", k, alive, want);
    free(text);
    return ok && alive == want;
}

/* Whether slot k's registry places every id of PREFIX0..count-1 on its ring owner. */
static bool placed(fx_hub *x, int k, const char *prefix, uint64_t count, char *why, size_t cap)
{
    char cnt[24], *text = NULL;
    snprintf(cnt, sizeof(cnt), "%" PRIu64, count);
    int st = fx_ctl(x, k, &text, "placement", prefix, cnt, NULL);
    if (st != 0) {
        size_t len = text ? strcspn(text, "\n") : 0;
        snprintf(why, cap, "slot %d: placement %s: %d %.*s", k, prefix, st, (int)len,
                 text ? text : "");
    }
    free(text);
    return st == 0;
}

/* Settled: every up slot answers, sees exactly the up slots alive at one epoch, moves
 * nothing, and its registry places every id on its ring owner (a registry still healing
 * is not settled: the invariants are checked on the hub it converged to). */
static bool settled(fx_hub *x, char *why, size_t cap)
{
    uint64_t epoch = 0;
    bool first = true;
    for (int k = 0; k < x->nslots; k++) {
        if (!fx_up(x, k)) continue;
        char *text = NULL;
        int st = fx_ctl(x, k, &text, "stats", NULL);
        uint64_t e = fx_stat(text, "epoch"), mig = fx_stat(text, "migrating");
        free(text);
        if (st != 0) return snprintf(why, cap, "slot %d does not answer stats (%d)", k, st), false;
        if (!first && e != epoch)
            return snprintf(why, cap, "epochs differ: %" PRIu64 " and slot %d's %" PRIu64, epoch, k,
                            e),
                   false;
        if (mig) return snprintf(why, cap, "slot %d migrates %" PRIu64, k, mig), false;
        if (!members_agree(x, k, why, cap)) return false;
        if (x->started && (!placed(x, k, FX_SEQ_PREFIX, x->nseq, why, cap) ||
                           !placed(x, k, FX_BLOB_PREFIX, x->nblob, why, cap)))
            return false;
        epoch = e;
        first = false;
    }
    return true;
}

typedef struct settle_look {
    fx_hub *x;
    char *why;
    size_t cap;
} settle_look;

static bool settled_now(void *ud)
{
    settle_look *l = ud;
    return settled(l->x, l->why, l->cap);
}

bool fx_wait_settled(fx_hub *x, int timeout_ms, char *why, size_t cap)
{
    settle_look l = {x, why, cap};
    return th_poll_until(settled_now, &l, timeout_ms, SETTLE_POLL_MS * 1000u);
}

/* ---- the firewall --------------------------------------------------------------------- */

#define FW_ARGS 16

static char fw_bin[64];
static char fw_chain[32];
static bool fw_ready;
/* Prepared for the signal handler, which may not format anything. */
static const char *fw_unhook[FW_ARGS], *fw_flush[FW_ARGS], *fw_delete[FW_ARGS];

/* Runs argv (an iptables command) with its output discarded; async-signal-safe. */
static int fw_run(const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execve(fw_bin, (char *const *)argv, environ);
        _exit(127);
    }
    if (pid < 0) return -1;
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

static void fw_prepare(void)
{
    const char *unhook[] = {fw_bin, "-w", "-D", "INPUT", "-j", fw_chain, NULL};
    const char *flush[] = {fw_bin, "-w", "-F", fw_chain, NULL};
    const char *del[] = {fw_bin, "-w", "-X", fw_chain, NULL};
    memcpy(fw_unhook, unhook, sizeof(unhook));
    memcpy(fw_flush, flush, sizeof(flush));
    memcpy(fw_delete, del, sizeof(del));
}

static bool fw_find_binary(void)
{
    static const char *const paths[] = {"/usr/sbin/iptables", "/sbin/iptables",
                                        "/usr/bin/iptables"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (access(paths[i], X_OK) != 0) continue;
        snprintf(fw_bin, sizeof(fw_bin), "%s", paths[i]);
        return true;
    }
    return false;
}

bool fx_fw_init(void)
{
    const char *why = NULL;
    snprintf(fw_chain, sizeof(fw_chain), "CHFAULT%d", (int)getpid());
    fw_prepare();
    const char *create[] = {fw_bin, "-w", "-N", fw_chain, NULL};
    const char *hook[] = {fw_bin, "-w", "-I", "INPUT", "-j", fw_chain, NULL};
    if (geteuid() != 0)
        why = "not root";
    else if (!fw_find_binary())
        why = "no iptables program (apt-get install iptables)";
    else if (fw_run(create) != 0)
        why = "`iptables -N` failed (no netfilter in this kernel or container?)";
    else if (fw_run(hook) != 0)
        why = "`iptables -I INPUT` failed", fw_run(fw_delete);
    if (why) {
        printf("fault suite: partitions skipped: %s\n", why);
        return false;
    }
    fw_ready = true;
    return true;
}

static void slot_ip(int k, char *buf, size_t cap)
{
    snprintf(buf, cap, "127.0.0.%d", 11 + k);
}

int fx_fw_block(int a, int b)
{
    char ia[24], ib[24];
    slot_ip(a, ia, sizeof(ia));
    slot_ip(b, ib, sizeof(ib));
    const char *ab[] = {fw_bin, "-w", "-A", fw_chain, "-s", ia, "-d", ib, "-j", "DROP", NULL};
    const char *ba[] = {fw_bin, "-w", "-A", fw_chain, "-s", ib, "-d", ia, "-j", "DROP", NULL};
    if (!fw_ready) return -ENOTSUP;
    return fw_run(ab) == 0 && fw_run(ba) == 0 ? 0 : -EIO;
}

void fx_fw_heal(void)
{
    if (fw_ready) fw_run(fw_flush);
}

void fx_fw_fini(void)
{
    if (!fw_ready) return;
    fw_run(fw_unhook);
    fw_run(fw_flush);
    fw_run(fw_delete);
    fw_ready = false;
}

/* ---- cleanup on a signal -------------------------------------------------------------- */

static fx_hub *volatile cleanup_hub;

static void on_signal(int sig)
{
    static const char msg[] = "\nfault suite: interrupted: nodes killed, firewall rules removed\n";
    fx_hub *x = cleanup_hub;
    for (int i = 0; x && i < x->h.nnodes; i++)
        if (x->h.nodes[i].pid > 0) kill(x->h.nodes[i].pid, SIGKILL);
    if (fw_ready) {
        fw_run(fw_unhook);
        fw_run(fw_flush);
        fw_run(fw_delete);
    }
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(128 + sig);
}

void fx_cleanup_on_signal(fx_hub *x)
{
    cleanup_hub = x;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a node killed mid-request must not kill the suite */
}
