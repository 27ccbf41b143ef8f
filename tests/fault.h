/*
 * tests/fault.h - the parts of the fault suite (tests/fault_suite.c).
 *
 * A hub under test is a set of node slots. Slot k listens on its own loopback address
 * 127.0.0.(11+k), so that a partition between two slots is a pair of iptables rules on
 * their addresses (the transport connects out from the listen address). Slots
 * 0..npumps-1 run the pumps and are never killed nor left: a pump's count of rounds is what
 * every seq process must have received, and a pump that died would take it along. The
 * other slots are mortal; the last one starts empty, for joins.
 *
 * fault_hub.c keeps the slots (spawn, kill, settle), the firewall and the cleanup that also
 * runs on SIGINT/SIGTERM; fault_check.c checks the invariants once the hub has healed.
 * What a crash-like fault (kill -9, a stall past failure detection, a partition) may
 * legitimately reset is recorded as it happens: the ids then local to the victim are
 * "exposed", and only an exposed id may come back with its state reset.
 */
#ifndef CH_TESTS_FAULT_H
#define CH_TESTS_FAULT_H

#include "cluster_harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FX_MAX_SLOTS   6
#define FX_SEQ_PREFIX  "sq"
#define FX_BLOB_PREFIX "bl"
#define FX_BLOB_SIZE   512
#define FX_STR_(x)     #x
#define FX_STR(x)      FX_STR_(x)
#define FX_PROBE_MS    "300" /* detection ~1.5 s: probe, indirect probe, 4 periods of suspicion */
#define FX_LEAVE_MS    "5000"

typedef enum { SLOT_EMPTY, SLOT_UP, SLOT_DEAD, SLOT_GONE } fx_state;

typedef struct fx_slot {
    hnode *n; /* its current process; NULL before the first spawn */
    fx_state st;
    int port;     /* the port it listens on: 0 (any), or the churn's fixed one */
    bool drained; /* `ctl drain` ran on its current process */
    bool counted; /* its process's crash restarts are in restarts_of_dead already */
} fx_slot;

typedef struct fx_hub {
    ch_harness h;
    fx_slot slot[FX_MAX_SLOTS];
    int nslots;                /* nodes asked for, plus one free slot for joins */
    int npumps;                /* slots 0..npumps-1: pumps, never killed nor left */
    uint64_t nseq, nblob;      /* sq0..sq<nseq-1>, bl0..bl<nblob-1> */
    uint8_t *exposed_seq;      /* per id: a crash-like fault may have reset it */
    uint8_t *exposed_blob;     /* */
    bool exposed_all;          /* a partition: both sides restart each other's processes */
    uint64_t restarts_of_dead; /* crash_restarts counted by nodes before they were killed
                                  or left (a node that left counted the starts it sent) */
    bool started;              /* the processes were started: settling includes placement */
    int leaves, leave_failures, drains, drain_failures;
    uint64_t t0_ms; /* the schedule's start, for the log's timestamps */
    int schedule;   /* its number, for the log */
    bool no_lanes;  /* nodes start with --no-lanes */
} fx_hub;

/* ---- fault_hub.c ------------------------------------------------------------------------ */

/* A log line of the schedule: "[s3 12.4s] ...". */
void fx_log(const fx_hub *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int fx_hub_init(fx_hub *x, int schedule, int nodes, int npumps, uint64_t nseq, uint64_t nblob);
/* Kills every node, removes the firewall rules, keeps the logs when keep is set. */
void fx_hub_fini(fx_hub *x, bool keep);

/* Spawns a node in slot k (seeded by the pump slots that are up). 0 or a negative error. */
int fx_spawn(fx_hub *x, int k);
/* kill -9 of slot k, exposing what it held (asked just before, and a survivor's registry
 * just after). */
void fx_kill(fx_hub *x, int k);
/* Adds the crash restarts slot k counted to restarts_of_dead, once per process: before it
 * is killed or leaves, its count would go with it. */
void fx_count_restarts(fx_hub *x, int k);
/* Exposes the ids slot k holds now (a stall or a leave that may be cut short). */
void fx_expose_local(fx_hub *x, int k);
/* Runs a control command on slot k: its status, or a negative error; *text (if not NULL)
 * gets the answer, malloc'd. */
int fx_ctl(fx_hub *x, int k, char **text, ...) __attribute__((sentinel));
/* The value of `name` in a `stats` answer, or 0. */
uint64_t fx_stat(const char *stats, const char *name);
/* Polls until every up slot answers, all see the same alive members (exactly the up
 * slots) and the same epoch, and none migrates; false after timeout_ms, with why. */
bool fx_wait_settled(fx_hub *x, int timeout_ms, char *why, size_t cap);
/* The index of id[0..len) in PREFIX0..PREFIX<count-1>, if it is one of them. */
bool fx_id_index(const char *id, size_t len, const char *prefix, uint64_t count, uint64_t *i);
/* Whether slot k holds a running process. */
bool fx_up(const fx_hub *x, int k);

/* The firewall (iptables on loopback, root only). fx_fw_init checks once that it works and
 * returns false, having said why, when it does not. */
bool fx_fw_init(void);
int fx_fw_block(int slot_a, int slot_b);
void fx_fw_heal(void);
void fx_fw_fini(void);
/* Installs SIGINT/SIGTERM handlers that kill x's nodes and remove the firewall rules. */
void fx_cleanup_on_signal(fx_hub *x);

/* ---- fault_check.c ---------------------------------------------------------------------- */

typedef struct fx_pumps {
    uint64_t rounds; /* summed over the pumps: what each seq process must have received */
    uint64_t sent, failed;
    bool ok; /* every pump ended and answered */
} fx_pumps;

/* Stops the pumps and waits for them. */
void fx_pumps_stop(fx_hub *x, fx_pumps *p);
/* Checks every invariant, printing a verdict line each; returns how many failed. */
int fx_check(fx_hub *x, const fx_pumps *p, bool settled, const char *settle_why);

#endif
