/*
 * tests/fuzz/fuzz_common.h - what the fuzz target and its corpus generator share: the
 * cookie, the hellos, and the "chunk" reading of an input (u8 type | u16 length | bytes,
 * repeated), which the fuzzer turns into frames with valid checksums so that mutations
 * reach the handshake's payload decoding without first having to guess an XXH3 sum.
 */
#ifndef CH_TESTS_FUZZ_COMMON_H
#define CH_TESTS_FUZZ_COMMON_H

#include "net/handshake.h"

#include <stdio.h>
#include <string.h>

#define FUZZ_COOKIE "fuzz-cookie-0123456789abcdef"
#define FUZZ_HUB    "corehub"

static inline ch_hello fuzz_hello(uint64_t node, uint8_t role)
{
    ch_hello h = {.node_id = node, .incarnation = 1, .cores = 4, .role = role};
    snprintf(h.hub_id, sizeof(h.hub_id), "%s", FUZZ_HUB);
    snprintf(h.addr, sizeof(h.addr), "127.0.0.1:%u", (unsigned)(7000 + node));
    if (role == CH_ROLE_LANE) h.lane_core = 2;
    return h;
}

#endif
