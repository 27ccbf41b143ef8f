/*
 * tests/lib/sock.h - a test's own TCP client of a server on 127.0.0.1 (a node's kv or
 * cluster port, the server skeleton, the transport), for tests that speak to it byte by
 * byte. The functions assert (Criterion), so they run on the test thread only.
 */
#ifndef CH_TESTS_SOCK_H
#define CH_TESTS_SOCK_H

#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

/* A connection to 127.0.0.1:port; with timeout_s > 0, reads and writes that block longer
 * fail (a test fails instead of hanging). */
static inline int th_connect(int port, int timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    if (timeout_s > 0) {
        struct timeval tv = {.tv_sec = timeout_s};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect to %d: %s", port,
                 strerror(errno));
    return fd;
}

static inline void th_send_all(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        b += n;
        len -= (size_t)n;
    }
}

static inline void th_recv_all(int fd, void *p, size_t len)
{
    uint8_t *b = p;
    for (size_t got = 0; got < len;) {
        ssize_t n = recv(fd, b + got, len - got, 0);
        cr_assert_gt(n, 0, "recv after %zu of %zu bytes: %s", got, len,
                     n == 0 ? "EOF" : strerror(errno));
        got += (size_t)n;
    }
}

/* Whether the server closed the connection (whatever it sent before): EOF or a reset,
 * rather than another error such as the receive timeout. */
static inline bool th_closed_by_peer(int fd)
{
    char b[4096];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof(b), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0) return false;
    }
}

#endif
