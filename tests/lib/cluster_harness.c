/*
 * tests/lib/cluster_harness.c - spawning, driving and reaping `corehub node` processes (see
 * cluster_harness.h).
 *
 * Spawning forks and execs CH_COREHUB_BIN. Between fork and exec the child only makes
 * async-signal-safe calls (dup2, prctl, close_range, execve): the test process may have
 * threads, and anything else could deadlock on a lock another thread held at the fork.
 * Everything the child needs (argv, its environment, the log file, the pipe) is made
 * before the fork. The directory is flat: tests may add files to it, and fini removes
 * them all.
 */
#define _GNU_SOURCE
#include "cluster_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CH_COREHUB_BIN
#error "CH_COREHUB_BIN must name the corehub program (tests/CMakeLists.txt defines it)"
#endif

static bool env_set(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* ---- the harness ------------------------------------------------------------------------ */

static int write_cookie(ch_harness *h)
{
    uint8_t raw[32];
    char hex[sizeof(raw) * 2 + 1];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) return -EIO;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    snprintf(h->cookie_path, sizeof(h->cookie_path), "%s/cookie", h->dir);
    int fd = open(h->cookie_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, hex, strlen(hex));
    close(fd);
    if (n != (ssize_t)strlen(hex)) return -EIO;
    return ch_cookie_read(h->cookie_path, &h->cookie, &h->cookie_len);
}

int harness_init(ch_harness *h)
{
    memset(h, 0, sizeof(*h));
    const char *tmp = getenv("TMPDIR");
    int n =
        snprintf(h->dir, sizeof(h->dir), "%s/corehub-harness-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof(h->dir)) {
        h->dir[0] = '\0';
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(h->dir)) {
        h->dir[0] = '\0';
        return -errno;
    }
    return write_cookie(h);
}

static void remove_dir(ch_harness *h, bool keep)
{
    if (!h->dir[0]) return;
    if (keep || env_set("CH_HARNESS_KEEP")) {
        fprintf(stderr, "cluster harness: kept %s\n", h->dir);
        return;
    }
    /* Every file, not only ours: tests put their own there (another hub's cookie...). */
    DIR *dir = opendir(h->dir);
    for (struct dirent *e; dir && (e = readdir(dir)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(dir), e->d_name, 0);
    if (dir) closedir(dir);
    rmdir(h->dir);
    h->dir[0] = '\0';
}

/* Copies the end of a node's log to stderr: what a crash or a sanitizer said last. */
static void print_log_tail(const hnode *n)
{
    FILE *f = fopen(n->log, "r");
    if (!f) return;
    char buf[4096];
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)sizeof(buf))
        fseek(f, -(long)sizeof(buf), SEEK_END);
    else
        rewind(f);
    size_t got = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    fprintf(stderr, "---- %s (end) ----\n%.*s\n----\n", n->log, (int)got, buf);
}

/* A node that the test did not stop but that is gone already died on its own. */
static bool died_unexpectedly(hnode *n)
{
    if (n->pid <= 0 || node_alive(n)) return false;
    fprintf(stderr, "cluster harness: node %d died on its own (%s %d)\n", n->index,
            WIFEXITED(n->wstatus) ? "exit" : "signal",
            WIFEXITED(n->wstatus) ? WEXITSTATUS(n->wstatus) : WTERMSIG(n->wstatus));
    print_log_tail(n);
    return true;
}

int harness_check(ch_harness *h)
{
    for (int i = 0; i < h->nnodes; i++)
        if (died_unexpectedly(&h->nodes[i])) h->deaths++;
    return h->deaths;
}

void harness_fini(ch_harness *h)
{
    harness_check(h);
    for (int i = 0; i < h->nnodes; i++)
        node_kill9(&h->nodes[i]);
    remove_dir(h, h->deaths > 0 || h->keep); /* the logs are the evidence */
    free(h->cookie);
    h->cookie = NULL;
    h->nnodes = 0;
}

/* ---- spawning ---------------------------------------------------------------------------- */

static void child_exec(const char *const *argv, char *const *envp, int out_fd, int log_fd,
                       pid_t parent)
{
    if (dup2(out_fd, STDOUT_FILENO) < 0) _exit(127);
    if (log_fd >= 0 && dup2(log_fd, STDERR_FILENO) < 0) _exit(127);
    /* Its own process group: the test's group may be orphaned (its parent gone), and the
     * kernel sends SIGHUP to an orphaned group with a stopped member whenever one of the
     * group exits, so one node's exit would kill another the test has SIGSTOPped. */
    if (setpgid(0, 0) < 0) _exit(127);
    /* Dies with the test even if the test crashes before its fini. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) _exit(127);
    /* The test's own descriptors (Criterion's sockets, other nodes' pipes) stay behind. */
    syscall(SYS_close_range, 3u, ~0u, 0u);
    execve(argv[0], (char *const *)argv, envp);
    _exit(127);
}

/* Builds `corehub node --listen 127.0.0.1:0 --cores 1 --cookie-file F extra...`. */
static int build_argv(const ch_harness *h, const char *const *extra, int nextra, const char **argv)
{
    static const char *const base[] = {CH_COREHUB_BIN, "node", "--listen",     "127.0.0.1:0",
                                       "--cores",      "1",    "--cookie-file"};
    int n = 0, nbase = (int)(sizeof(base) / sizeof(base[0]));
    if (nextra < 0 || nbase + 1 + nextra + 1 > HARNESS_MAX_ARGS) return -E2BIG;
    for (int i = 0; i < nbase; i++)
        argv[n++] = base[i];
    argv[n++] = h->cookie_path;
    for (int i = 0; i < nextra; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return 0;
}

/* Reads the `listening HOST:PORT node ID` line within the deadline. */
static int read_listening(hnode *n, int fd, uint64_t deadline)
{
    char line[256];
    size_t len = 0;
    while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
        uint64_t now = th_now_ms();
        if (now >= deadline) return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) continue;
        ssize_t got = read(fd, line + len, sizeof(line) - 1 - len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -ECHILD; /* the node died before it listened */
        len += (size_t)got;
    }
    line[len] = '\0';
    char addr[CH_ADDR_MAX + 1];
    uint64_t id = 0;
    if (sscanf(line, "listening %63s node %" SCNx64, addr, &id) != 2) return -EPROTO;
    memcpy(n->addr, addr, sizeof(addr));
    n->id = id;
    const char *kv = strstr(line, " kv ");
    const char *colon = kv ? strrchr(kv, ':') : NULL;
    n->kv_port = colon ? atoi(colon + 1) : 0;
    return 0;
}

static int open_log(hnode *n)
{
    if (env_set("CH_HARNESS_LOGS")) return -1; /* inherit the test's stderr */
    return open(n->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

static int start_child(hnode *n, const char *const *argv, char *const *envp, int *out_rd)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) return -errno;
    int log_fd = open_log(n);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) child_exec(argv, envp, pipefd[1], log_fd, parent);
    int err = pid < 0 ? -errno : 0;
    close(pipefd[1]);
    if (log_fd >= 0) close(log_fd);
    if (err) {
        close(pipefd[0]);
        return err;
    }
    n->pid = pid;
    *out_rd = pipefd[0];
    return 0;
}

/* Whether environ's entry e names the same variable as one of env's. */
static bool overridden(const char *e, const char *const *env)
{
    const char *eq = strchr(e, '=');
    size_t name = eq ? (size_t)(eq - e) : strlen(e);
    for (; env && *env; env++)
        if (strncmp(*env, e, name) == 0 && (*env)[name] == '=') return true;
    return false;
}

/* The child's environment: env first, then the test's own minus what env replaces. Built
 * before the fork (the child may only make async-signal-safe calls); free() it. */
static char **build_envp(const char *const *env)
{
    size_t n = 0, k = 0, extra = 0;
    while (environ[n])
        n++;
    while (env && env[extra])
        extra++;
    if (extra > HARNESS_MAX_ENV) return NULL;
    char **envp = calloc(n + extra + 1, sizeof(*envp));
    if (!envp) return NULL;
    for (size_t i = 0; i < extra; i++)
        envp[k++] = (char *)env[i];
    for (size_t i = 0; i < n; i++)
        if (!overridden(environ[i], env)) envp[k++] = environ[i];
    return envp;
}

hnode *node_spawnv(ch_harness *h, const char *const *extra, int nextra)
{
    return node_spawn_env(h, NULL, extra, nextra);
}

hnode *node_spawn_env(ch_harness *h, const char *const *env, const char *const *extra, int nextra)
{
    const char *argv[HARNESS_MAX_ARGS];
    if (h->nnodes == HARNESS_MAX_NODES || build_argv(h, extra, nextra, argv) < 0) return NULL;
    hnode *n = &h->nodes[h->nnodes];
    *n = (hnode){.h = h, .index = h->nnodes};
    char log[HARNESS_PATH_MAX];
    snprintf(log, sizeof(log), "%s/node-%d.log", h->dir, n->index);
    memcpy(n->log, log, sizeof(log));
    int rd = -1;
    char **envp = build_envp(env);
    int started = envp ? start_child(n, argv, envp, &rd) : -ENOMEM;
    free(envp);
    if (started < 0) return NULL;
    h->nnodes++; /* from here on fini reaps it, whatever happens */
    int rc = read_listening(n, rd, th_now_ms() + HARNESS_SPAWN_MS);
    close(rd); /* the node prints nothing more; it ignores SIGPIPE */
    if (rc < 0) {
        fprintf(stderr, "cluster harness: node %d did not start (%s); log: %s\n", n->index,
                strerror(-rc), n->log);
        node_kill9(n);
        return NULL;
    }
    return n;
}

hnode *node_spawn_member(ch_harness *h, const hnode *seed, const char *const *env,
                         const char *const *extra)
{
    const char *args[HARNESS_MAX_ARGS] = {"--probe-ms", HARNESS_PROBE_MS};
    int n = 2;
    for (; extra && *extra; extra++) {
        if (n == HARNESS_MAX_ARGS - 2) return NULL;
        args[n++] = *extra;
    }
    if (seed) {
        args[n++] = "--seed";
        args[n++] = seed->addr;
    }
    return node_spawn_env(h, env, args, n);
}

int harness_spawn_hub(ch_harness *h, hnode **n, int count, const char *const *extra)
{
    for (int i = 0; i < count; i++)
        if (!(n[i] = node_spawn_member(h, i ? n[0] : NULL, NULL, extra))) return -ECHILD;
    return 0;
}

hnode *node_spawn(ch_harness *h, ...)
{
    const char *extra[HARNESS_MAX_ARGS];
    int n = 0;
    va_list ap;
    va_start(ap, h);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        if (n == HARNESS_MAX_ARGS) {
            va_end(ap);
            return NULL;
        }
        extra[n++] = a;
    }
    va_end(ap);
    return node_spawnv(h, extra, n);
}

/* ---- control ------------------------------------------------------------------------------ */

int node_ctl_open(hnode *n, ch_ctl **c)
{
    *c = NULL;
    return ch_ctl_open(n->addr, n->h->hub, n->h->cookie, n->h->cookie_len, HARNESS_CTL_MS, c);
}

int node_ctlv(hnode *n, int *status, char **text, int argc, const char *const *argv)
{
    ch_ctl *c = NULL;
    *text = NULL;
    int rc = node_ctl_open(n, &c);
    if (rc < 0) return rc;
    rc = ch_ctl_exec(c, argc, argv, status, text);
    ch_ctl_close(c);
    return rc;
}

int node_ctl_va(hnode *n, int *status, char **text, va_list ap)
{
    const char *argv[HARNESS_MAX_ARGS];
    int argc = 0;
    *text = NULL;
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        if (argc == HARNESS_MAX_ARGS) return -E2BIG;
        argv[argc++] = a;
    }
    return node_ctlv(n, status, text, argc, argv);
}

int node_ctl(hnode *n, int *status, char **text, ...)
{
    va_list ap;
    va_start(ap, text);
    int rc = node_ctl_va(n, status, text, ap);
    va_end(ap);
    return rc;
}

int node_ctl_status(hnode *n, ...)
{
    int status = 0;
    char *text = NULL;
    va_list ap;
    va_start(ap, n);
    int rc = node_ctl_va(n, &status, &text, ap);
    va_end(ap);
    free(text);
    return rc < 0 ? rc : status;
}

long node_ctl_lines(hnode *n, ...)
{
    int status = 0;
    char *text = NULL;
    va_list ap;
    va_start(ap, n);
    long lines = node_ctl_va(n, &status, &text, ap) == 0 && status == 0 ? 0 : -1;
    va_end(ap);
    for (const char *p = text; lines >= 0 && p && *p; p++)
        lines += *p == '\n';
    free(text);
    return lines;
}

int node_count_members(hnode *n, const char *state)
{
    int status = 0, count = 0;
    char *text = NULL;
    int rc = node_ctl(n, &status, &text, "members", NULL);
    if (rc == 0 && status != 0) rc = -EPROTO;
    for (char *line = text; rc == 0 && line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        char st[16] = "";
        /* ID ADDR STATE CORES [self] */
        if (sscanf(line, "%*s %*s %15s", st) == 1 && (!state || strcmp(st, state) == 0)) count++;
        line = end ? end + 1 : NULL;
    }
    free(text);
    return rc < 0 ? rc : count;
}

/* ---- stopping ------------------------------------------------------------------------------ */

static int exit_code(int wstatus)
{
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    return -EINTR;
}

int node_wait_exit(hnode *n, int timeout_ms)
{
    if (n->pid <= 0) return exit_code(n->wstatus);
    uint64_t deadline = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        pid_t r = waitpid(n->pid, &n->wstatus, WNOHANG);
        if (r == n->pid || (r < 0 && errno == ECHILD)) {
            n->pid = 0;
            if (n->wstatus != 0) print_log_tail(n); /* why it failed, for the test log */
            return exit_code(n->wstatus);
        }
        if (th_now_ms() >= deadline) break;
        th_pause_us(HARNESS_POLL_MS * 1000u);
    }
    return -ETIMEDOUT;
}

int node_kill9(hnode *n)
{
    if (n->pid <= 0) return 0;
    kill(n->pid, SIGKILL);
    while (waitpid(n->pid, &n->wstatus, 0) < 0 && errno == EINTR) {
    }
    n->pid = 0;
    return 0;
}

int node_term(hnode *n, int timeout_ms)
{
    if (n->pid <= 0) return exit_code(n->wstatus);
    kill(n->pid, SIGTERM);
    int rc = node_wait_exit(n, timeout_ms);
    if (rc == -ETIMEDOUT) node_kill9(n);
    return rc;
}

bool node_alive(hnode *n)
{
    if (n->pid <= 0) return false;
    if (waitpid(n->pid, &n->wstatus, WNOHANG) == 0) return true;
    n->pid = 0; /* exited and reaped (or not our child any more) */
    return false;
}

int node_port(const hnode *n)
{
    const char *colon = strrchr(n->addr, ':');
    return colon ? atoi(colon + 1) : -1;
}

bool node_log_has(const hnode *n, const char *s)
{
    FILE *f = fopen(n->log, "r");
    if (!f) return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, s) != NULL;
    fclose(f);
    return found;
}

long long node_stat(hnode *n, const char *key)
{
    int status = 0;
    char *text = NULL;
    long long v = -1;
    if (node_ctl(n, &status, &text, "stats", NULL) == 0 && status == 0)
        v = harness_stat_value(text, key);
    free(text);
    return v;
}

long long harness_stat_value(const char *stats, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = stats; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') return atoll(line + klen + 1);
        line = strchr(line, '\n');
        if (line) line++;
    }
    return -1;
}

bool harness_wait(bool (*cond)(void *ud), void *ud, int timeout_ms)
{
    return th_poll_until(cond, ud, timeout_ms, HARNESS_POLL_MS * 1000u);
}
