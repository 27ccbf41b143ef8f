/*
 * tests/test_kv.c - the Redis-protocol service of `corehub node --kv-port`, driven by
 * Debian's redis-cli and redis-benchmark (package redis-tools) and by raw sockets.
 *
 * Nodes are real processes started through the cluster harness, each with --kv-port 0: the
 * harness reads the kernel's port from the node's listening line. redis-cli runs with
 * --no-raw, so that its output tells nil from an empty string and an integer from a string.
 * Without the Redis tools the tests that need them are skipped.
 */
#define _GNU_SOURCE
#include "harness_suite.h"
#include "hub_checks.h"
#include "sock.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOOL_MS    60000 /* one redis-cli or redis-benchmark run */
#define WAIT_MS    30000 /* the hub converging */
#define LEAVE_MS   60000 /* a graceful leave with its handover */
#define OUTPUT_MAX (1u << 20)
#define KEY_MAX    (CH_ID_MAX - 1) /* a key's process id is a prefix byte and the key */
#define SOCK_S     30              /* a raw connection's reads and writes */

HARNESS_SUITE_WITH(kv, harness_suite_no_sigpipe, harness_suite_nothing, .timeout = 600);

/* --- running the Redis tools ----------------------------------------------------------- */

static bool have(const char *tool)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

#define NEED_TOOLS()                                                                               \
    do {                                                                                           \
        if (!have("redis-cli") || !have("redis-benchmark"))                                        \
            cr_skip_test("redis-cli / redis-benchmark not installed (apt-get install "             \
                         "redis-tools)");                                                          \
    } while (0)

typedef struct run_result {
    int status; /* exit code, or -1 */
    char *out;  /* stdout and stderr, NUL-terminated */
} run_result;

/* Runs argv (a NULL-terminated list) with a deadline, collecting its output. */
static run_result run(const char *const *argv)
{
    run_result res = {.status = -1, .out = calloc(1, OUTPUT_MAX + 1)};
    cr_assert_not_null(res.out);
    int fds[2];
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO); /* redis-cli reads stdin otherwise */
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    uint64_t deadline = th_now_ms() + TOOL_MS;
    for (;;) {
        uint64_t now = th_now_ms();
        if (now >= deadline) {
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0) continue;
        char buf[4096];
        ssize_t n = read(fds[0], buf, sizeof(buf));
        if (n <= 0) break;
        size_t keep = len + (size_t)n <= OUTPUT_MAX ? (size_t)n : OUTPUT_MAX - len;
        memcpy(res.out + len, buf, keep);
        len += keep;
    }
    close(fds[0]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    res.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    return res;
}

/* redis-cli --no-raw -p PORT args...: its output, which must end as expected. */
static void cli_expect(int port, const char *expected, ...) __attribute__((sentinel));

static void cli_expect(int port, const char *expected, ...)
{
    const char *argv[64] = {"redis-cli", "--no-raw", "-p"};
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    int n = 3;
    argv[n++] = portbuf;
    va_list ap;
    va_start(ap, expected);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 62;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    run_result r = run(argv);
    char cmd[512] = "";
    for (int i = 4; i < n; i++)
        snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), "%s ", argv[i]);
    cr_assert_eq(r.status, 0, "redis-cli %s: exit %d: %s", cmd, r.status, r.out);
    cr_assert_str_eq(r.out, expected, "redis-cli %s", cmd);
    free(r.out);
}

/* --- raw connections ------------------------------------------------------------------- */

/* Reads exactly strlen(expected) bytes and compares. */
static void expect(int fd, const char *expected)
{
    size_t len = strlen(expected);
    char *buf = malloc(len + 1);
    cr_assert_not_null(buf);
    th_recv_all(fd, buf, len);
    buf[len] = '\0';
    cr_assert_str_eq(buf, expected);
    free(buf);
}

/* The server closed: EOF (or a reset) comes before the socket's timeout. */
static void expect_closed(int fd)
{
    cr_assert(th_closed_by_peer(fd), "the connection stayed open: %s", strerror(errno));
}

/* A command as RESP: an array of bulk strings. */
static size_t resp_cmd(char *out, size_t cap, int argc, const char *const *argv)
{
    size_t len = (size_t)snprintf(out, cap, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++)
        len += (size_t)snprintf(out + len, cap - len, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    return len;
}

static void send_cmd(int fd, int argc, const char *const *argv)
{
    char buf[4096];
    th_send_all(fd, buf, resp_cmd(buf, sizeof(buf), argc, argv));
}

static hnode *kv_node(const char *seed)
{
    hnode *n = seed ? node_spawn(&H, "--kv-port", "0", "--seed", seed, NULL)
                    : node_spawn(&H, "--kv-port", "0", NULL);
    cr_assert_not_null(n, "node did not start");
    cr_assert_gt(n->kv_port, 0, "no kv port in the listening line");
    return n;
}

static long long int_reply(int fd, int argc, const char *const *argv);
static char *read_reply(int fd);

/* --- every command ----------------------------------------------------------------------- */

Test(kv, every_command_answers_like_redis)
{
    NEED_TOOLS();
    int p = kv_node(NULL)->kv_port;
    cli_expect(p, "PONG\n", "PING", NULL);
    cli_expect(p, "\"hi there\"\n", "PING", "hi there", NULL);
    cli_expect(p, "\"echo me\"\n", "ECHO", "echo me", NULL);
    cli_expect(p, "(nil)\n", "GET", "missing", NULL);
    cli_expect(p, "OK\n", "SET", "greeting", "hello", NULL);
    cli_expect(p, "\"hello\"\n", "GET", "greeting", NULL);
    cli_expect(p, "OK\n", "SET", "greeting", "bonjour", NULL);
    cli_expect(p, "\"bonjour\"\n", "GET", "greeting", NULL);
    cli_expect(p, "OK\n", "SET", "empty", "", NULL);
    cli_expect(p, "\"\"\n", "GET", "empty", NULL);
    cli_expect(p, "(integer) 1\n", "INCR", "n", NULL);
    cli_expect(p, "(integer) 11\n", "INCRBY", "n", "10", NULL);
    cli_expect(p, "(integer) 10\n", "DECR", "n", NULL);
    cli_expect(p, "(integer) -5\n", "DECRBY", "n", "15", NULL);
    cli_expect(p, "(integer) -1\n", "DECR", "fresh", NULL); /* a new key counts from 0 */
    cli_expect(p, "(integer) 0\n", "INCR", "fresh", NULL);
    cli_expect(p, "\"-5\"\n", "GET", "n", NULL);
    cli_expect(p, "(error) ERR value is not an integer or out of range\n", "INCR", "greeting",
               NULL);
    cli_expect(p, "(error) ERR value is not an integer or out of range\n", "INCRBY", "n", "x",
               NULL);
    cli_expect(p, "OK\n", "SET", "big", "9223372036854775807", NULL);
    cli_expect(p, "(error) ERR increment or decrement would overflow\n", "INCR", "big", NULL);
    cli_expect(p, "(integer) 3\n", "APPEND", "log", "abc", NULL);
    cli_expect(p, "(integer) 6\n", "APPEND", "log", "def", NULL);
    cli_expect(p, "\"abcdef\"\n", "GET", "log", NULL);
    cli_expect(p, "(integer) 6\n", "STRLEN", "log", NULL);
    cli_expect(p, "(integer) 0\n", "STRLEN", "missing", NULL);
    cli_expect(p, "OK\n", "MSET", "a", "1", "b", "2", "c", "3", NULL);
    cli_expect(p, "1) \"1\"\n2) \"2\"\n3) (nil)\n4) \"3\"\n", "MGET", "a", "b", "nope", "c", NULL);
    cli_expect(p, "(integer) 3\n", "EXISTS", "a", "b", "nope", "a", NULL);
    cli_expect(p, "(integer) 2\n", "DEL", "a", "b", "nope", NULL);
    cli_expect(p, "(integer) 0\n", "EXISTS", "a", "b", NULL);
    cli_expect(p, "(nil)\n", "GET", "a", NULL);
    cli_expect(p, "OK\n", "SET", "a", "again", NULL); /* a deleted key can come back */
    cli_expect(p, "\"again\"\n", "GET", "a", NULL);
    cli_expect(p, "(integer) 19\n", "COMMAND", "COUNT", NULL);
    cli_expect(p,
               "1) \"get\"\n2) 1) \"summary\"\n   2) \"a key-value command (one process per "
               "key)\"\n   3) \"group\"\n   4) \"string\"\n",
               "COMMAND", "DOCS", "GET", NULL);
    cli_expect(p,
               "1) 1) \"incr\"\n   2) (integer) 2\n   3) 1) write\n      2) denyoom\n"
               "      3) fast\n   4) (integer) 1\n   5) (integer) 1\n   6) (integer) 1\n",
               "COMMAND", "INFO", "incr", NULL);
    cli_expect(p, "1) \"save\"\n2) \"\"\n", "CONFIG", "GET", "save", NULL);
    cli_expect(p, "OK\n", "SELECT", "0", NULL);
    cli_expect(p, "(error) ERR DB index is out of range\n", "SELECT", "1", NULL);
    cli_expect(p, "(error) ERR wrong number of arguments for 'get' command\n", "GET", NULL);
    cli_expect(p, "(error) ERR wrong number of arguments for 'mset' command\n", "MSET", "a", "1",
               "b", NULL);
    cli_expect(p, "(error) ERR syntax error (SET takes no options here)\n", "SET", "k", "v", "NX",
               NULL);
    cli_expect(p, "(error) ERR unknown command 'HSET', with args beginning with: 'h' 'f' 'v' \n",
               "HSET", "h", "f", "v", NULL);
    cli_expect(p, "OK\n", "QUIT", NULL);
    /* INFO: a server section, and the stats the benchmark test reads. */
    const char *argv[] = {"redis-cli", "-p", NULL, "INFO", NULL};
    char port[16];
    snprintf(port, sizeof(port), "%d", p);
    argv[2] = port;
    run_result r = run(argv);
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "# Server"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "redis_version:"));
    cr_assert_not_null(strstr(r.out, "total_error_replies:8"), "%s", r.out);
    free(r.out);
    cr_assert_eq(harness_check(&H), 0);
}

Test(kv, any_node_answers_for_any_key)
{
    NEED_TOOLS();
    hnode *a = kv_node(NULL);
    hnode *b = kv_node(a->addr);
    hnode *c = kv_node(a->addr);
    hnode *all[] = {a, b, c};
    for (int i = 0; i < 3; i++)
        harness_assert_alive(&all[i], 1, 3, WAIT_MS);
    /* Written through one node, read through every other: no redirects, the hub routes. */
    int fd[3];
    for (int i = 0; i < 3; i++)
        fd[i] = th_connect(all[i]->kv_port, SOCK_S);
    char key[32], val[32];
    for (int k = 0; k < 60; k++) {
        snprintf(key, sizeof(key), "key-%d", k);
        snprintf(val, sizeof(val), "value-%d", k);
        send_cmd(fd[k % 3], 3, (const char *[]){"SET", key, val});
        expect(fd[k % 3], "+OK\r\n");
    }
    for (int k = 0; k < 60; k++) {
        snprintf(key, sizeof(key), "key-%d", k);
        snprintf(val, sizeof(val), "value-%d", k);
        char want[64];
        snprintf(want, sizeof(want), "$%zu\r\n%s\r\n", strlen(val), val);
        for (int i = 0; i < 3; i++) {
            send_cmd(fd[i], 2, (const char *[]){"GET", key});
            expect(fd[i], want);
        }
        send_cmd(fd[(k + 1) % 3], 2, (const char *[]){"INCR", "shared"});
        char count[32];
        snprintf(count, sizeof(count), ":%d\r\n", k + 1);
        expect(fd[(k + 1) % 3], count);
    }
    send_cmd(fd[1], 3, (const char *[]){"DEL", "key-0", "key-1"});
    expect(fd[1], ":2\r\n");
    for (int i = 0; i < 3; i++) {
        send_cmd(fd[i], 3, (const char *[]){"MGET", "key-0", "key-2"});
        expect(fd[i], "*2\r\n$-1\r\n$7\r\nvalue-2\r\n");
        close(fd[i]);
    }
    cli_expect(c->kv_port, "\"60\"\n", "GET", "shared", NULL);
    cr_assert_eq(harness_check(&H), 0);
}

/* --- the protocol ------------------------------------------------------------------------ */

Test(kv, pipelined_commands_are_answered_in_order)
{
    hnode *a = kv_node(NULL);
    hnode *b = kv_node(a->addr);
    harness_assert_alive(&a, 1, 2,
                         WAIT_MS); /* these nodes run ColdSwap: no key may move during the test */
    harness_assert_alive(&b, 1, 2, WAIT_MS);
    int fd = th_connect(b->kv_port, SOCK_S);
    /* 3000 commands in one burst, over many keys (so the calls complete out of order, some
     * on the other node), answered in the order sent. */
    size_t cap = 1u << 20, len = 0, wcap = 1u << 20, wlen = 0;
    char *out = malloc(cap), *want = malloc(wcap);
    cr_assert(out && want);
    for (int i = 0; i < 1000; i++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "p%d", i % 37);
        snprintf(val, sizeof(val), "v%d", i);
        len += resp_cmd(out + len, cap - len, 2, (const char *[]){"INCR", "pipe-count"});
        len += resp_cmd(out + len, cap - len, 3, (const char *[]){"SET", key, val});
        len += resp_cmd(out + len, cap - len, 2, (const char *[]){"GET", key});
        wlen += (size_t)snprintf(want + wlen, wcap - wlen, ":%d\r\n+OK\r\n$%zu\r\n%s\r\n", i + 1,
                                 strlen(val), val);
    }
    len += (size_t)snprintf(out + len, cap - len, "PING\r\n"); /* an inline command last */
    wlen += (size_t)snprintf(want + wlen, wcap - wlen, "+PONG\r\n");
    th_send_all(fd, out, len);
    expect(fd, want);
    free(out);
    free(want);
    close(fd);
    cr_assert_eq(harness_check(&H), 0);
}

/* Redis accepts the empty key. It once reached the API as an id of length 0, which then
 * meant "NUL-terminated": the value landed under bytes read past the request. */
Test(kv, the_empty_key_is_a_key_like_any_other)
{
    hnode *n = kv_node(NULL);
    int fd = th_connect(n->kv_port, SOCK_S);
    send_cmd(fd, 3, (const char *[]){"SET", "", "x"});
    expect(fd, "+OK\r\n");
    send_cmd(fd, 2, (const char *[]){"GET", ""});
    expect(fd, "$1\r\nx\r\n");
    send_cmd(fd, 3, (const char *[]){"MGET", "", "x"});
    expect(fd, "*2\r\n$1\r\nx\r\n$-1\r\n");
    send_cmd(fd, 2, (const char *[]){"DEL", ""});
    expect(fd, ":1\r\n");
    send_cmd(fd, 2, (const char *[]){"GET", ""});
    expect(fd, "$-1\r\n");
    /* The longest key (the process id adds a prefix byte), and one byte more. */
    char key[KEY_MAX + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[KEY_MAX] = '\0';
    send_cmd(fd, 3, (const char *[]){"SET", key, "long"});
    expect(fd, "+OK\r\n");
    send_cmd(fd, 2, (const char *[]){"GET", key});
    expect(fd, "$4\r\nlong\r\n");
    key[KEY_MAX] = 'k';
    key[KEY_MAX + 1] = '\0';
    send_cmd(fd, 3, (const char *[]){"SET", key, "long"});
    expect(fd, "-ERR invalid key: a key is 0 to 254 bytes\r\n");
    close(fd);
    cr_assert_eq(harness_check(&H), 0);
}

typedef struct bad_case {
    const char *input;
    const char *answer; /* the error line before the close */
} bad_case;

Test(kv, malformed_requests_get_an_error_and_a_close)
{
    hnode *n = kv_node(NULL);
    static const bad_case cases[] = {
        {"*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
        {"*99999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
        {"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$' before a bulk string\r\n"},
        {"*1\r\n$-3\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
        {"*2\r\n$3\r\nSET\r\n$600000\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
        {"*1\r\n$4\r\nPINGxx", "-ERR Protocol error: bulk string not terminated by CRLF\r\n"},
        {"*1\r\n$123456789012345678901234567890123456789\r\n",
         "-ERR Protocol error: invalid bulk length\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = th_connect(n->kv_port, SOCK_S);
        th_send_all(fd, "PING\r\n", 6); /* answered first: the error comes in order */
        th_send_all(fd, cases[i].input, strlen(cases[i].input));
        expect(fd, "+PONG\r\n");
        expect(fd, cases[i].answer);
        expect_closed(fd);
        close(fd);
    }
    /* An inline line that never ends, and a command larger than any allowed. */
    static char junk[80 * 1024];
    memset(junk, 'x', sizeof(junk));
    int fd = th_connect(n->kv_port, SOCK_S);
    th_send_all(fd, junk, sizeof(junk));
    expect(fd, "-ERR Protocol error: too big inline request\r\n");
    expect_closed(fd);
    close(fd);
    fd = th_connect(n->kv_port, SOCK_S);
    char head[64];
    th_send_all(fd, "*20\r\n$4\r\nMSET\r\n", 15);
    for (int i = 0; i < 10; i++) { /* 10 bulks of 500 KiB: more than 4 MiB in all */
        snprintf(head, sizeof(head), "$%u\r\n", 500u * 1024);
        th_send_all(fd, head, strlen(head));
        for (int k = 0; k < 500 / 80 + 1; k++) {
            size_t part = k < 500 / 80 ? sizeof(junk) : 500 * 1024 - (500 / 80) * sizeof(junk);
            if (send(fd, junk, part, MSG_NOSIGNAL) <= 0) break; /* closed under us */
        }
        if (send(fd, "\r\n", 2, MSG_NOSIGNAL) <= 0) break;
    }
    expect(fd, "-ERR Protocol error: command too large\r\n");
    expect_closed(fd);
    close(fd);
    /* Garbage of every kind: answered or cut off, never a crash. */
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        char g[512];
        size_t glen = 1 + (unsigned)rand_r(&seed) % sizeof(g);
        for (size_t i = 0; i < glen; i++) {
            static const char alphabet[] = "*$\r\n0123456789-+:GETSETPING ";
            unsigned r = (unsigned)rand_r(&seed);
            g[i] = r % 4 ? alphabet[r / 4 % (sizeof(alphabet) - 1)] : (char)(r >> 8);
        }
        fd = th_connect(n->kv_port, SOCK_S);
        send(fd, g, glen, MSG_NOSIGNAL);
        shutdown(fd, SHUT_WR);
        expect_closed(fd);
        close(fd);
    }
    /* The node still serves. */
    fd = th_connect(n->kv_port, SOCK_S);
    th_send_all(fd, "PING\r\n", 6);
    expect(fd, "+PONG\r\n");
    close(fd);
    cr_assert(node_alive(n));
    cr_assert_eq(harness_check(&H), 0);
}

Test(kv, clients_that_leave_with_answers_pending_break_nothing)
{
    hnode *a = kv_node(NULL);
    hnode *b = kv_node(a->addr);
    harness_assert_alive(&a, 1, 2, WAIT_MS);
    harness_assert_alive(&b, 1, 2, WAIT_MS);
    static char burst[64 * 1024];
    size_t len = 0;
    for (int i = 0; i < 500; i++) {
        char key[16];
        snprintf(key, sizeof(key), "gone:%d", i % 50);
        len += resp_cmd(burst + len, sizeof(burst) - len, 2, (const char *[]){"INCR", key});
    }
    for (int round = 0; round < 20; round++) { /* the calls are in flight when they close */
        int fd = th_connect(b->kv_port, SOCK_S);
        th_send_all(fd, burst, len);
        close(fd);
    }
    int fd = th_connect(b->kv_port, SOCK_S);
    long long total = 0;
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "gone:%d", i);
        total += int_reply(fd, 3, (const char *[]){"INCRBY", key, "0"});
    }
    cr_assert_leq(total, 20 * 500, "never more increments than were sent");
    th_send_all(fd, "PING\r\n", 6);
    expect(fd, "+PONG\r\n");
    close(fd);
    cr_assert(node_alive(a) && node_alive(b));
    cr_assert_eq(harness_check(&H), 0);
}

Test(kv, values_have_a_size_limit)
{
    hnode *n = kv_node(NULL);
    int fd = th_connect(n->kv_port, SOCK_S);
    static char big[300 * 1024 + 1];
    memset(big, 'v', sizeof(big) - 1);
    char head[64];
    int hl =
        snprintf(head, sizeof(head), "*3\r\n$6\r\nAPPEND\r\n$1\r\nk\r\n$%zu\r\n", sizeof(big) - 1);
    th_send_all(fd, head, (size_t)hl);
    th_send_all(fd, big, sizeof(big) - 1);
    th_send_all(fd, "\r\n", 2);
    char want[32];
    snprintf(want, sizeof(want), ":%zu\r\n", sizeof(big) - 1);
    expect(fd, want);
    /* A second append would pass 512 KiB: refused, the value stays. */
    th_send_all(fd, head, (size_t)hl);
    th_send_all(fd, big, sizeof(big) - 1);
    th_send_all(fd, "\r\n", 2);
    expect(fd, "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n");
    send_cmd(fd, 2, (const char *[]){"STRLEN", "k"});
    expect(fd, want);
    close(fd);
    cr_assert_eq(harness_check(&H), 0);
}

/* --- a hub that changes ------------------------------------------------------------------ */

/* A node of a HotSwap hub with handover, serving the protocol; seed NULL: the first. */
static hnode *hot_node(hnode *seed)
{
    const char *args[] = {"--kv-port", "0",          "--probe-ms", "200", "--strategy",
                          "hotswap",   "--handover", "--seed",     NULL};
    int n = seed ? 9 : 7;
    if (seed) args[8] = seed->addr;
    hnode *node = node_spawnv(&H, args, n);
    cr_assert_not_null(node, "node did not start");
    cr_assert_gt(node->kv_port, 0);
    return node;
}

/* ---- answers bounded in bytes -------------------------------------------------------------- */

#define BIG      (512 * 1024) /* the largest value */
#define PEAK_MAX (256u << 20) /* a node's peak RSS: 64 MiB of held answers and room to spare */

/* A node's peak resident set (VmHWM), in bytes. */
static unsigned long long peak_rss(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    unsigned long long kb = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

/* Sets `key` to BIG bytes. */
static void set_big(int fd, const char *key)
{
    static char big[BIG];
    memset(big, 'v', sizeof(big));
    char head[96];
    int hl = snprintf(head, sizeof(head), "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%d\r\n", strlen(key),
                      key, BIG);
    th_send_all(fd, head, (size_t)hl);
    th_send_all(fd, big, sizeof(big));
    th_send_all(fd, "\r\n", 2);
    expect(fd, "+OK\r\n");
}

/* Reads len bytes, asserting that the first ones are `head`. */
static void expect_bytes(int fd, const char *head, size_t len)
{
    static char buf[1 << 16];
    size_t got = 0, hlen = strlen(head);
    while (got < len) {
        size_t want = len - got < sizeof(buf) ? len - got : sizeof(buf);
        ssize_t n = recv(fd, buf, want, 0);
        cr_assert_gt(n, 0, "recv after %zu of %zu bytes: %s", got, len,
                     n == 0 ? "EOF" : strerror(errno));
        if (got == 0) cr_assert_eq(memcmp(buf, head, (size_t)n < hlen ? (size_t)n : hlen), 0);
        got += (size_t)n;
    }
}

/* One 18 KB MGET naming a 512 KiB key 2000 times asked for 1 GiB of answer, which the node
 * built in full (2.9 GiB RSS). Past --kv-reply-limit the connection is cut instead. */
Test(kv, an_mget_asking_for_a_gibibyte_is_cut_and_the_node_stays_small)
{
    hnode *n = kv_node(NULL);
    int fd = th_connect(n->kv_port, SOCK_S);
    set_big(fd, "big");
    enum { REPEAT = 2000 };
    size_t cap = 32 + REPEAT * 16,
           len = (size_t)snprintf(NULL, 0, "*%d\r\n$4\r\nMGET\r\n", REPEAT + 1);
    char *req = malloc(cap);
    cr_assert_not_null(req);
    snprintf(req, cap, "*%d\r\n$4\r\nMGET\r\n", REPEAT + 1);
    for (int i = 0; i < REPEAT; i++)
        len += (size_t)snprintf(req + len, cap - len, "$3\r\nbig\r\n");
    th_send_all(fd, req, len);
    free(req);
    expect_closed(fd);
    close(fd);
    cr_expect_lt(peak_rss(n->pid), PEAK_MAX, "peak RSS %llu MiB", peak_rss(n->pid) >> 20);

    /* The node serves everyone else, and says what it did. */
    fd = th_connect(n->kv_port, SOCK_S);
    cr_assert_eq(int_reply(fd, 2, (const char *[]){"STRLEN", "big"}), BIG);
    send_cmd(fd, 2, (const char *[]){"INFO", "stats"});
    char *info = read_reply(fd);
    cr_expect(strstr(info, "client_output_buffer_limit_disconnections:1\r\n"), "%s", info);
    free(info);
    close(fd);
    cr_expect(node_log_has(n, "kv: closing"), "see %s", n->log);
    cr_assert_eq(harness_check(&H), 0);
}

/* A client that pipelines more answers than the hard limit, reading none until it sent
 * all, is throttled (the node stops reading its commands), not cut. */
Test(kv, a_pipelining_client_is_throttled_not_cut)
{
    hnode *n = kv_node(NULL);
    int fd = th_connect(n->kv_port, SOCK_S);
    set_big(fd, "big");
    enum { GETS = 300 }; /* 150 MiB of answers, over the 64 MiB limit */
    static char req[GETS * 32];
    size_t len = 0;
    for (int i = 0; i < GETS; i++)
        len += resp_cmd(req + len, sizeof(req) - len, 2, (const char *[]){"GET", "big"});
    th_send_all(fd, req, len);
    char head[32];
    int hl = snprintf(head, sizeof(head), "$%d\r\n", BIG);
    for (int i = 0; i < GETS; i++)
        expect_bytes(fd, head, (size_t)hl + BIG + 2);
    th_send_all(fd, "PING\r\n", 6);
    expect(fd, "+PONG\r\n");
    close(fd);
    cr_expect_lt(peak_rss(n->pid), PEAK_MAX, "peak RSS %llu MiB", peak_rss(n->pid) >> 20);
    cr_assert_eq(harness_check(&H), 0);
}

/* One RESP reply read whole from fd, as the bytes it came in (NUL-terminated, malloc'd). A
 * small reader for the answers these tests expect: simple lines, bulks, flat arrays. */
static char *read_reply(int fd)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    long want_items = 1; /* replies still to read whole */
    size_t need = 0;     /* bulk bytes (with CRLF) still to read */
    while (want_items > 0 || need > 0) {
        if (len + 1 == cap) cr_assert_not_null(buf = realloc(buf, cap *= 2));
        ssize_t n = recv(fd, buf + len, 1, 0); /* byte by byte: small replies only */
        cr_assert_eq(n, 1, "recv: %s", n == 0 ? "EOF" : strerror(errno));
        len++;
        if (need) {
            need--;
            continue;
        }
        if (buf[len - 1] != '\n') continue;
        char *line = buf + len - 1; /* find the start of this line */
        while (line > buf && line[-1] != '\n')
            line--;
        long v = atol(line + 1);
        want_items--;
        if (line[0] == '*') want_items += v > 0 ? v : 0;
        if (line[0] == '$' && v >= 0) need = (size_t)v + 2;
    }
    buf[len] = '\0';
    return buf;
}

/* Sends a command and returns its integer answer. */
static long long int_reply(int fd, int argc, const char *const *argv)
{
    send_cmd(fd, argc, argv);
    char *r = read_reply(fd);
    cr_assert_eq(r[0], ':', "%s: %s", argv[0], r);
    long long v = atoll(r + 1);
    free(r);
    return v;
}

#define NKEYS 300

static void value_of(char *out, size_t cap, int i)
{
    snprintf(out, cap, "value-%d-%0*d", i, i % 40, i); /* 8..48 bytes, every one distinct */
}

/* Every key of the test, read through fd, holds what was written. */
static void check_values(int fd)
{
    for (int i = 0; i < NKEYS; i++) {
        char key[32], val[64], want[96];
        snprintf(key, sizeof(key), "mk:%d", i);
        value_of(val, sizeof(val), i);
        snprintf(want, sizeof(want), "$%zu\r\n%s\r\n", strlen(val), val);
        send_cmd(fd, 2, (const char *[]){"GET", key});
        expect(fd, want);
    }
    for (int i = 0; i < NKEYS / 3; i++) {
        char key[32];
        snprintf(key, sizeof(key), "mc:%d", i);
        cr_assert_eq(int_reply(fd, 3, (const char *[]){"INCRBY", key, "0"}), 7LL * i, "counter %s",
                     key);
    }
}

Test(kv, values_survive_a_join_and_a_graceful_leave)
{
    hnode *a = hot_node(NULL);
    hnode *b = hot_node(a);
    harness_assert_alive(&a, 1, 2, WAIT_MS);
    harness_assert_alive(&b, 1, 2, WAIT_MS);
    int fd = th_connect(b->kv_port, SOCK_S);
    for (int i = 0; i < NKEYS; i++) {
        char key[32], val[64];
        snprintf(key, sizeof(key), "mk:%d", i);
        value_of(val, sizeof(val), i);
        send_cmd(fd, 3, (const char *[]){"SET", key, val});
        expect(fd, "+OK\r\n");
    }
    for (int i = 0; i < NKEYS / 3; i++) {
        char key[32], by[16];
        snprintf(key, sizeof(key), "mc:%d", i);
        snprintf(by, sizeof(by), "%d", i);
        for (int k = 0; k < 7; k++) /* a number built by many writes, not one */
            int_reply(fd, 3, (const char *[]){"INCRBY", key, by});
    }
    close(fd);
    /* A joins C: part of the keys move there, their values with them. */
    hnode *c = hot_node(a);
    harness_assert_alive(&a, 1, 3, WAIT_MS);
    harness_assert_alive(&c, 1, 3, WAIT_MS);
    fd = th_connect(a->kv_port, SOCK_S);
    check_values(fd);
    /* B leaves: its keys move to A and C. */
    cr_assert_eq(node_term(b, LEAVE_MS), 0, "b leaves gracefully");
    harness_assert_alive(&a, 1, 2, WAIT_MS);
    check_values(fd);
    close(fd);
    fd = th_connect(c->kv_port, SOCK_S);
    check_values(fd);
    close(fd);
    cr_assert_gt(node_stat(c, "migrated_in"), 0, "some keys moved to the joining node");
    cr_assert_gt(node_stat(a, "migrated_in"), 0, "and from the leaving node");
    cr_assert_eq(harness_check(&H), 0);
}

/* redis-benchmark runs, one after another, until told to stop. */
typedef struct bench_loop {
    int port;
    atomic_bool stop;
    atomic_int runs, failed;
    char failure[4096];
} bench_loop;

#define BENCH_N    "5000" /* requests per test per run */
#define BENCH_KEYS 50     /* -r: counter:000000000000..49 */

static void *bench_main(void *arg)
{
    bench_loop *b = arg;
    char port[16];
    snprintf(port, sizeof(port), "%d", b->port);
    do {
        const char *argv[] = {"redis-benchmark",
                              "-p",
                              port,
                              "-t",
                              "set,get,incr",
                              "-n",
                              BENCH_N,
                              "-r",
                              "50",
                              "-c",
                              "4",
                              "-q",
                              NULL};
        run_result r = run(argv);
        /* redis-benchmark 7 exits at the first error reply or dropped connection. */
        bool ok = r.status == 0 && strstr(r.out, "INCR: ") && !strstr(r.out, "rror");
        if (!ok && atomic_fetch_add(&b->failed, 1) == 0) { /* its end says why */
            size_t len = strlen(r.out);
            snprintf(b->failure, sizeof(b->failure), "exit %d: ...%s", r.status,
                     r.out + (len > 1000 ? len - 1000 : 0));
        }
        free(r.out);
        if (ok) atomic_fetch_add(&b->runs, 1);
    } while (!atomic_load(&b->stop) && !atomic_load(&b->failed));
    return NULL;
}

static bool bench_ran(void *ud)
{
    bench_loop *b = ud;
    return atomic_load(&b->runs) > 0 || atomic_load(&b->failed) > 0;
}

Test(kv, benchmark_through_a_join_and_a_leave)
{
    NEED_TOOLS();
    hnode *a = hot_node(NULL);
    hnode *b = hot_node(a);
    hnode *c = hot_node(a);
    harness_assert_alive(&a, 1, 3, WAIT_MS);
    harness_assert_alive(&b, 1, 3, WAIT_MS);
    harness_assert_alive(&c, 1, 3, WAIT_MS);
    /* The benchmark talks to A, which stays; B leaves and D joins while it runs, so its
     * keys move between nodes under load. */
    bench_loop loop = {.port = a->kv_port};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, bench_main, &loop), 0);
    cr_assert(harness_wait(bench_ran, &loop, TOOL_MS), "a first benchmark run");
    hnode *d = hot_node(a);
    harness_assert_alive(&a, 1, 4, WAIT_MS);
    harness_assert_alive(&d, 1, 4, WAIT_MS);
    int left = node_term(b, LEAVE_MS);
    harness_assert_alive(&a, 1, 3, WAIT_MS);
    int before = atomic_load(&loop.runs);
    atomic_store(&loop.stop, true); /* the run under way finishes: at least one after */
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&loop.failed), 0, "redis-benchmark failed: %s", loop.failure);
    cr_assert_eq(left, 0, "b left gracefully");
    int runs = atomic_load(&loop.runs);
    cr_assert_gt(runs, before, "a run overlapped the leave");
    /* Every INCR counted exactly once, read back through two nodes. */
    hnode *readers[] = {a, d};
    for (int r = 0; r < 2; r++) {
        int fd = th_connect(readers[r]->kv_port, SOCK_S);
        char keys[BENCH_KEYS][32];
        const char *argv[BENCH_KEYS + 1] = {"MGET"};
        for (int i = 0; i < BENCH_KEYS; i++) {
            snprintf(keys[i], sizeof(keys[i]), "counter:%012d", i);
            argv[i + 1] = keys[i];
        }
        char cmd[8192];
        th_send_all(fd, cmd, resp_cmd(cmd, sizeof(cmd), BENCH_KEYS + 1, argv));
        char *reply = read_reply(fd);
        long long total = 0;
        for (char *line = strchr(reply, '\n'); line && line[1];) {
            line++;
            if (line[0] == '$' && line[1] != '-') { /* $len, then the number */
                char *num = strchr(line, '\n') + 1;
                total += atoll(num);
                line = strchr(num, '\n');
            } else {
                line = strchr(line, '\n');
            }
        }
        free(reply);
        cr_assert_eq(total, (long long)runs * atoll(BENCH_N), "node %d: INCR total after %d runs",
                     readers[r]->index, runs);
        send_cmd(fd, 2, (const char *[]){"INFO", "stats"});
        char *info = read_reply(fd);
        if (r == 0)
            cr_assert_not_null(strstr(info, "total_error_replies:0\r\n"), "A answered errors: %s",
                               info);
        free(info);
        close(fd);
    }
    cr_assert_eq(harness_check(&H), 0);
}
