/*
 * tools/demo_cluster.c - the demo's local cluster of node processes (see demo_cluster.h).
 *
 * Everything waits in one place, wait_any: a poll over the signalfd, the pidfds of the
 * nodes that must not exit, and the caller's own descriptors (a node's stdout pipe, an
 * eventfd that control workers bump, an awaited node's pidfd). Between fork and exec a
 * child makes async-signal-safe calls only; everything it needs is prepared before.
 */
#define _GNU_SOURCE
#include "demo_cluster.h"

#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define TICK_NS       200000000ull /* the progress hook's period */
#define DC_WOKE       -1003        /* wait_any: `until` came before the deadline */
#define LOG_TAIL      1536         /* bytes of a node's log shown after a failure */
#define LOG_TAIL_DIED 65536        /* the same for a node that died */
#define LINE_MAX_LEN  256

extern char **environ;

static void set_error(dc_cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(dc_cluster *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof(c->error), fmt, ap);
    va_end(ap);
}

/* ---- open, close --------------------------------------------------------------------- */

static int make_dir(dc_cluster *c)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(c->dir, sizeof(c->dir), "%s/corehub-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof(c->dir)) {
        c->dir[0] = '\0';
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(c->dir)) {
        int err = -errno;
        c->dir[0] = '\0';
        return err;
    }
    return 0;
}

/* 32 random bytes as hex, in a file that only its owner may read (ch_cookie_read's rule). */
static int write_cookie(dc_cluster *c)
{
    uint8_t raw[32];
    char hex[sizeof(raw) * 2 + 1];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) return -EIO;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    explicit_bzero(raw, sizeof(raw));
    snprintf(c->cookie_path, sizeof(c->cookie_path), "%s/cookie", c->dir);
    int fd = open(c->cookie_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, hex, strlen(hex));
    close(fd);
    explicit_bzero(hex, sizeof(hex));
    if (n != (ssize_t)(sizeof(hex) - 1)) return -EIO;
    return ch_cookie_read(c->cookie_path, &c->cookie, &c->cookie_len);
}

int dc_open(dc_cluster *c)
{
    memset(c, 0, sizeof(*c));
    c->sig_fd = -1;
    for (int i = 0; i < DC_MAX_NODES; i++)
        c->nodes[i].pidfd = -1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    /* Before any thread exists, so that every thread inherits the mask. */
    if (pthread_sigmask(SIG_BLOCK, &set, &c->old_mask) != 0) return -EINVAL;
    c->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (c->sig_fd < 0) return -errno;
    signal(SIGPIPE, SIG_IGN); /* a node that dies mid-call must not kill the demo */
    ssize_t n = readlink("/proc/self/exe", c->exe, sizeof(c->exe) - 1);
    if (n <= 0 || (size_t)n >= sizeof(c->exe) - 1) return n < 0 ? -errno : -ENAMETOOLONG;
    c->exe[n] = '\0';
    int rc = make_dir(c);
    return rc < 0 ? rc : write_cookie(c);
}

static void kill_all(dc_cluster *c)
{
    /* A child that is not reaped keeps its pid: the signal cannot reach a stranger. */
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].pid > 0) kill(c->nodes[i].pid, SIGKILL);
}

static void reap(dc_node *n, int options)
{
    if (n->pid <= 0) return;
    pid_t r;
    while ((r = waitpid(n->pid, &n->wstatus, options)) < 0 && errno == EINTR) {
    }
    if (r == 0) return; /* WNOHANG: still running */
    n->pid = 0;
    if (n->pidfd >= 0) close(n->pidfd);
    n->pidfd = -1;
}

/* The end of a node's log: what it said last before a failure. */
static void print_log_tail(const dc_node *n)
{
    long tail = n->died ? LOG_TAIL_DIED : LOG_TAIL;
    FILE *f = fopen(n->log, "r");
    char *buf = f ? malloc((size_t)tail + 1) : NULL;
    if (!buf) {
        if (f) fclose(f);
        return;
    }
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > tail)
        fseek(f, -tail, SEEK_END);
    else
        rewind(f);
    size_t got = fread(buf, 1, (size_t)tail, f);
    fclose(f);
    buf[got] = '\0';
    char *start = got == (size_t)tail ? strchr(buf, '\n') : NULL; /* from a whole line */
    fprintf(stderr, "---- node %d (%s)%s, end of its log ----\n%s%s", n->index,
            n->addr[0] ? n->addr : "not listening", n->died ? ", which died" : "",
            start ? start + 1 : buf, got && buf[got - 1] != '\n' ? "\n" : "");
    free(buf);
}

static void remove_dir(dc_cluster *c)
{
    DIR *dir = opendir(c->dir);
    for (struct dirent *e; dir && (e = readdir(dir)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(dir), e->d_name, 0);
    if (dir) closedir(dir);
    if (rmdir(c->dir) < 0)
        fprintf(stderr, "corehub demo: cannot remove %s: %s\n", c->dir, strerror(errno));
}

void dc_close(dc_cluster *c, bool keep, bool show_logs)
{
    kill_all(c);
    for (int i = 0; i < c->nnodes; i++)
        reap(&c->nodes[i], 0);
    if (show_logs)
        for (int i = 0; i < c->nnodes; i++)
            print_log_tail(&c->nodes[i]);
    c->nnodes = 0;
    if (c->dir[0] && keep) fprintf(stderr, "corehub demo: kept %s (cookie, node logs)\n", c->dir);
    if (c->dir[0] && !keep) remove_dir(c);
    c->dir[0] = '\0';
    if (c->cookie) explicit_bzero(c->cookie, c->cookie_len);
    free(c->cookie);
    c->cookie = NULL;
    if (c->sig_fd < 0) return;
    /* Pending signals were answered already (we stopped): drop them, then unblock. */
    struct signalfd_siginfo si;
    while (read(c->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
    }
    close(c->sig_fd);
    c->sig_fd = -1;
    pthread_sigmask(SIG_SETMASK, &c->old_mask, NULL);
}

/* ---- waiting ---------------------------------------------------------------------------- */

static void describe_exit(char *buf, size_t cap, int wstatus)
{
    if (WIFEXITED(wstatus))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(wstatus));
    else if (WIFSIGNALED(wstatus))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
    else
        snprintf(buf, cap, "ended (wait status %d)", wstatus);
}

static int on_death(dc_cluster *c, dc_node *n)
{
    reap(n, 0);
    n->died = true;
    char how[96];
    describe_exit(how, sizeof(how), n->wstatus);
    set_error(c, "node %d (%s) %s unexpectedly; see its log below", n->index,
              n->addr[0] ? n->addr : "starting", how);
    return DC_EDIED;
}

static int on_signal(dc_cluster *c)
{
    struct signalfd_siginfo si;
    if (read(c->sig_fd, &si, sizeof(si)) != (ssize_t)sizeof(si)) return 0; /* spurious */
    c->signo = (int)si.ssi_signo;
    set_error(c, "interrupted (%s): stopping every node", strsignal(c->signo));
    return DC_EINTR;
}

static void maybe_tick(dc_cluster *c, uint64_t *next_tick)
{
    uint64_t now = cli_now_ns();
    if (now < *next_tick) return;
    *next_tick = now + TICK_NS;
    if (c->tick) c->tick(c->tick_ud);
}

/*
 * Waits until one of fds is readable (returns its index), a signal comes (DC_EINTR), a
 * node dies that must not (DC_EDIED), `until` passes (DC_WOKE) or the deadline passes
 * (-ETIMEDOUT; the deadline wins when both passed).
 */
static int wait_any(dc_cluster *c, const int *fds, int nfds, uint64_t until, uint64_t deadline)
{
    struct pollfd p[1 + DC_MAX_NODES + 4];
    int who[DC_MAX_NODES];
    uint64_t next_tick = cli_now_ns() + TICK_NS;
    if (nfds > 4) return -EINVAL;
    for (;;) { /* one poll at least, so that a wait of 0 still sees what is pending */
        int k = 0, nwatch = 0;
        p[k++] = (struct pollfd){.fd = c->sig_fd, .events = POLLIN};
        for (int i = 0; i < nfds; i++)
            p[k++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        for (int i = 0; i < c->nnodes; i++)
            if (c->nodes[i].pid > 0 && !c->nodes[i].expect_exit && c->nodes[i].pidfd >= 0) {
                who[nwatch++] = i;
                p[k++] = (struct pollfd){.fd = c->nodes[i].pidfd, .events = POLLIN};
            }
        uint64_t now = cli_now_ns(), end = until < deadline ? until : deadline;
        uint64_t wait_ns = now >= end ? 0 : end - now < TICK_NS ? end - now : TICK_NS;
        int r = poll(p, (nfds_t)k, (int)((wait_ns + 999999) / 1000000));
        if (r < 0 && errno != EINTR) return -errno;
        maybe_tick(c, &next_tick);
        if (r > 0 && p[0].revents) {
            int rc = on_signal(c);
            if (rc < 0) return rc;
        }
        for (int i = 0; r > 0 && i < nwatch; i++)
            if (p[1 + nfds + i].revents) return on_death(c, &c->nodes[who[i]]);
        for (int i = 0; r > 0 && i < nfds; i++)
            if (p[1 + i].revents) return i;
        if (cli_now_ns() >= end) return deadline <= until ? -ETIMEDOUT : DC_WOKE;
    }
}

static int wait_failed(dc_cluster *c, int rc, const char *what)
{
    if (rc == -ETIMEDOUT) set_error(c, "%s: no end before the deadline (--timeout)", what);
    return rc;
}

int dc_sleep(dc_cluster *c, unsigned ms, uint64_t deadline_ns)
{
    int rc = wait_any(c, NULL, 0, cli_now_ns() + (uint64_t)ms * 1000000u, deadline_ns);
    return rc == DC_WOKE ? 0 : wait_failed(c, rc, "waiting");
}

/* ---- spawning --------------------------------------------------------------------------- */

/* In the child: async-signal-safe calls only. */
static void child_exec(const dc_cluster *c, char *const *argv, int out_fd, int log_fd, int null_fd,
                       pid_t parent)
{
    if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
        dup2(log_fd, STDERR_FILENO) < 0)
        _exit(127);
    /* A group of its own: a terminal's Ctrl-C goes to the demo, which stops the nodes. */
    setpgid(0, 0);
    /* Dies with the demo, even if the demo is killed before it could clean up. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) _exit(127);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(SIGPIPE, &dfl, NULL);
    sigprocmask(SIG_SETMASK, &c->old_mask, NULL);
    syscall(SYS_close_range, 3u, ~0u, 0u);
    execve(c->exe, argv, environ);
    _exit(127);
}

static int build_argv(const dc_cluster *c, const char *seed, const char **argv)
{
    int n = 0;
    const char *base[] = {c->exe,        "node",          "--listen",
                          "127.0.0.1:0", "--cookie-file", c->cookie_path};
    for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
        argv[n++] = base[i];
    if (seed) {
        argv[n++] = "--seed";
        argv[n++] = seed;
    }
    if (n + c->nnode_args + 1 > DC_MAX_ARGS) return -E2BIG;
    for (int i = 0; i < c->nnode_args; i++)
        argv[n++] = c->node_args[i];
    argv[n] = NULL;
    return 0;
}

/* Forks node nnodes; *out_rd gets the read end of its stdout. */
static int start_child(dc_cluster *c, const char *seed, int *out_rd)
{
    const char *argv[DC_MAX_ARGS];
    if (c->nnodes == DC_MAX_NODES || build_argv(c, seed, argv) < 0) return -E2BIG;
    dc_node *n = &c->nodes[c->nnodes];
    *n = (dc_node){.index = c->nnodes, .pidfd = -1};
    char log[DC_PATH_MAX];
    snprintf(log, sizeof(log), "%s/node-%d.log", c->dir, n->index);
    memcpy(n->log, log, sizeof(log));
    int pipefd[2] = {-1, -1};
    int log_fd = open(n->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int rc = log_fd < 0 || null_fd < 0 || pipe2(pipefd, O_CLOEXEC) < 0 ? -errno : 0;
    pid_t pid = -1;
    if (rc == 0) {
        pid_t parent = getpid();
        pid = fork();
        if (pid == 0) child_exec(c, (char *const *)argv, pipefd[1], log_fd, null_fd, parent);
        if (pid < 0) rc = -errno;
    }
    int fds[] = {pipefd[1], log_fd, null_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0) close(fds[i]);
    if (rc < 0) {
        if (pipefd[0] >= 0) close(pipefd[0]);
        return rc;
    }
    setpgid(pid, pid); /* the child does it too: whichever runs first */
    n->pid = pid;
    c->nnodes++; /* from here on dc_close reaps it */
    n->pidfd = pidfd_open(pid, 0);
    if (n->pidfd < 0) {
        close(pipefd[0]);
        return -errno;
    }
    *out_rd = pipefd[0];
    return 0;
}

/* Reads node i's `listening HOST:PORT node ID` line from rd within the deadline. */
static int read_listening(dc_cluster *c, int i, int rd, uint64_t deadline)
{
    dc_node *n = &c->nodes[i];
    char line[LINE_MAX_LEN];
    size_t len = 0;
    while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
        int rc = wait_any(c, &rd, 1, UINT64_MAX, deadline);
        if (rc < 0) return wait_failed(c, rc, "a node's start");
        ssize_t got = read(rd, line + len, sizeof(line) - 1 - len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) { /* closed before the line: the node is ending, its pidfd tells */
            rc = wait_any(c, NULL, 0, UINT64_MAX, deadline);
            if (rc == -ETIMEDOUT) set_error(c, "node %d closed its output without listening", i);
            return rc;
        }
        len += (size_t)got;
    }
    line[len] = '\0';
    if (sscanf(line, "listening %63s node %" SCNx64, n->addr, &n->id) != 2) {
        set_error(c, "node %d said '%.*s' instead of its listening line", i,
                  (int)strcspn(line, "\n"), line);
        return -EPROTO;
    }
    return 0;
}

int dc_spawn(dc_cluster *c, const char *seed, uint64_t deadline_ns)
{
    int rd = -1;
    int rc = start_child(c, seed, &rd);
    if (rc < 0) {
        set_error(c, "cannot start a node: %s", strerror(-rc));
        return rc;
    }
    int i = c->nnodes - 1;
    rc = read_listening(c, i, rd, deadline_ns);
    close(rd); /* the node writes nothing more there; it ignores SIGPIPE */
    return rc < 0 ? rc : i;
}

int dc_spawn_many(dc_cluster *c, int count, const char *seed, uint64_t deadline_ns)
{
    int rd[DC_MAX_NODES], first = c->nnodes, rc = 0, started = 0;
    if (count < 0 || count > DC_MAX_NODES) return -EINVAL;
    for (; started < count; started++) {
        rc = start_child(c, seed, &rd[started]);
        if (rc < 0) {
            set_error(c, "cannot start a node: %s", strerror(-rc));
            break;
        }
    }
    /* They start side by side; their lines are read in turn. */
    for (int k = 0; k < started; k++) {
        if (rc == 0) rc = read_listening(c, first + k, rd[k], deadline_ns);
        close(rd[k]);
    }
    return rc;
}

bool dc_running(const dc_cluster *c, int i)
{
    return i >= 0 && i < c->nnodes && c->nodes[i].pid > 0;
}

void dc_expect_exit(dc_cluster *c, int i)
{
    c->nodes[i].expect_exit = true;
}

static int exit_code(int wstatus)
{
    return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
}

int dc_wait_exit(dc_cluster *c, int i, unsigned ms, uint64_t deadline_ns, int *code)
{
    dc_node *n = &c->nodes[i];
    if (n->pid > 0) {
        int rc = wait_any(c, &n->pidfd, 1, cli_now_ns() + (uint64_t)ms * 1000000u, deadline_ns);
        if (rc == DC_WOKE) return 0;
        if (rc < 0) return wait_failed(c, rc, "a node's exit");
        reap(n, 0);
    }
    *code = exit_code(n->wstatus);
    return 1;
}

/* ---- control calls ------------------------------------------------------------------------ */

typedef struct worker {
    dc_cluster *c;
    dc_call *call;
    const char *addr;
    uint32_t timeout_ms;
    int done_fd; /* eventfd: one more call returned */
    pthread_t thread;
    bool started;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    dc_call *call = w->call;
    ch_ctl *ctl = NULL;
    int argc = 0;
    while (call->argv[argc])
        argc++;
    call->rc = ch_ctl_open(w->addr, NULL, w->c->cookie, w->c->cookie_len, w->timeout_ms, &ctl);
    if (call->rc == 0) call->rc = ch_ctl_exec(ctl, argc, call->argv, &call->status, &call->text);
    ch_ctl_close(ctl);
    uint64_t one = 1;
    /* An eventfd write of 1 fails only on counter overflow: never with a few workers. */
    if (write(w->done_fd, &one, sizeof(one)) != (ssize_t)sizeof(one)) abort();
    return NULL;
}

static uint32_t call_timeout(const dc_call *call, uint64_t deadline)
{
    uint64_t now = cli_now_ns(), left_ms = deadline > now ? (deadline - now) / 1000000u : 1;
    if (call->timeout_ms && call->timeout_ms < left_ms) return call->timeout_ms;
    if (left_ms < 1) return 1;
    return left_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)left_ms;
}

/* Starts the workers; returns how many results are to come. */
static int start_workers(dc_cluster *c, worker *w, dc_call *calls, int n, int efd, uint64_t dl)
{
    int pending = 0;
    for (int i = 0; i < n; i++) {
        dc_call *call = &calls[i];
        call->rc = -ECONNREFUSED; /* a node that is not running: nobody listens */
        call->status = -1;
        call->text = NULL;
        w[i] = (worker){.c = c, .call = call, .done_fd = efd};
        if (!dc_running(c, call->node)) continue;
        w[i].addr = c->nodes[call->node].addr;
        w[i].timeout_ms = call_timeout(call, dl);
        int err = pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
        if (err) {
            call->rc = -err;
            continue;
        }
        w[i].started = true;
        pending++;
    }
    return pending;
}

int dc_call_run(dc_cluster *c, dc_call *calls, int n, uint64_t deadline_ns)
{
    worker w[DC_MAX_CALLS];
    if (n <= 0 || n > (int)(sizeof(w) / sizeof(w[0]))) return -EINVAL;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) return -errno;
    int pending = start_workers(c, w, calls, n, efd, deadline_ns), rc = 0;
    while (pending > 0) {
        rc = wait_any(c, &efd, 1, UINT64_MAX, deadline_ns);
        if (rc < 0) break;
        uint64_t done = 0;
        if (read(efd, &done, sizeof(done)) == (ssize_t)sizeof(done)) pending -= (int)done;
        rc = 0;
    }
    if (rc < 0) {
        kill_all(c); /* their sockets close: the calls out there return at once */
        wait_failed(c, rc, "a control command");
    }
    for (int i = 0; i < n; i++)
        if (w[i].started) pthread_join(w[i].thread, NULL);
    close(efd);
    return rc;
}

void dc_call_free(dc_call *calls, int n)
{
    for (int i = 0; i < n; i++) {
        free(calls[i].text);
        calls[i].text = NULL;
    }
}

int dc_ctl(dc_cluster *c, int node, uint64_t deadline_ns, char **text, ...)
{
    dc_call call = {.node = node};
    va_list ap;
    va_start(ap, text);
    int argc = 0;
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < DC_MAX_ARGS - 1;)
        call.argv[argc++] = a;
    va_end(ap);
    if (text) *text = NULL;
    int rc = dc_call_run(c, &call, 1, deadline_ns);
    if (rc < 0) return rc;
    if (call.rc < 0 || call.status != 0) {
        const char *t = call.text ? call.text : "";
        if (call.rc < 0)
            set_error(c, "node %d: %s: %s", node, call.argv[0], ch_strerror(call.rc));
        else
            set_error(c, "node %d: %s: status %d: %.*s", node, call.argv[0], call.status,
                      (int)strcspn(t, "\n"), t);
        free(call.text);
        return -EPROTO;
    }
    if (text)
        *text = call.text;
    else
        free(call.text);
    return 0;
}

bool dc_text_u64(const char *text, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            char *end = NULL;
            unsigned long long v = strtoull(line + klen + 1, &end, 10);
            if (end == line + klen + 1) return false;
            *out = v;
            return true;
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
    return false;
}
