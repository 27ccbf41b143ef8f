/*
 * tools/nodectl_load.h - the node's load and verification commands, and what they share
 * with the other control commands (nodectl.c). Private to nodectl*.c.
 *
 * These commands drive and check migrations from outside a node (tests, benchmarks,
 * people at a shell): start many processes with known states, send to all of them, run
 * background senders (pumps), then check every state, every sender's order, and where
 * each process lives. Each handles 10 000 ids in well under a second or two: bulk API
 * calls, asynchronous calls many at a time (callmany.h), never one round trip per id
 * through the control channel.
 */
#ifndef COREHUB_TOOLS_NODECTL_LOAD_H
#define COREHUB_TOOLS_NODECTL_LOAD_H

#include "ctlout.h"
#include "nodectl.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- shared with nodectl.c ---- */

/* A whole decimal number in [1, max]: the only form a count may take. 0 or -1. */
int nodectl_parse_count(const char *s, uint64_t max, uint64_t *out);
/* ch_send, retried for up to a second while the mailbox is full (-EAGAIN). */
int nodectl_send_retry(ch_node *n, const char *id, const void *msg, size_t len);

typedef struct nodectl_started {
    uint64_t started, failed;
    int first_error;
} nodectl_started;

/* Starts PREFIX0..PREFIX<count-1> of `type` in blocking batches; with index_arg child i
 * gets the decimal text of i as its init argument. 0 or -ENOMEM; outcomes in *out. */
int nodectl_start_range(nodectl *c, const char *prefix, uint64_t count, const char *type,
                        bool index_arg, nodectl_started *out);
/* "started S failed F" (and the first error), or its JSON object, left open when
 * close_json is false so that the caller can add members. */
void nodectl_put_started(const ctlout *o, const nodectl_started *s, bool close_json);

/* ---- the commands (argv[0] is the command's name) ---- */

int nodectl_cmd_start_blobs(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_send_many(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_pump(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_pump_stop(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_pump_wait(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_pumps(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_check_seq(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_check_counters(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_check_blobs(nodectl *c, const ctlout *o, int argc, char **argv);
int nodectl_cmd_placement(nodectl *c, const ctlout *o, int argc, char **argv);

#endif
