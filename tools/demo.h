/*
 * tools/demo.h - what the parts of `corehub demo` share: demo_opts.c reads the command
 * line, demo.c runs the phases (the hub, the load, the join, the leave), demo_check.c
 * judges the outcome and writes the report.
 * The state of a run lives in one `demo`; only the main thread touches it.
 */
#ifndef COREHUB_TOOLS_DEMO_H
#define COREHUB_TOOLS_DEMO_H

#include "demo_cluster.h"
#include "progress.h"
#include "svg.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_NODES       16 /* to start with */
#define MAX_SENDERS     32
#define SEQ_PREFIX      "q"
#define BLOB_PREFIX     "b"
#define POLL_MS         200   /* between looks at a changing hub */
#define LATE_UPDATES_MS 10000 /* updates still on their way after the senders */

typedef struct demo_opts {
    unsigned nodes; /* to start with; one more joins, one of these leaves */
    uint64_t procs; /* seq processes, updated by the senders */
    uint64_t blobs; /* blob processes, state only */
    uint64_t state_bytes;
    unsigned senders;
    uint64_t rate;   /* updates per second per sender; 0: as fast as they go */
    unsigned cores;  /* per node */
    uint64_t hold_s; /* load alone before the join, between join and leave, after it */
    const char *codec;
    uint64_t timeout_s; /* of every wait */
    int keep;
    const char *svg; /* --svg: the charts of the join and the leave; NULL: none */
} demo_opts;

/* What the demo reads from a node's `stats`. */
typedef struct node_stats {
    uint64_t processes, migrating, migrated_out, migrated_in, migration_failures;
    uint64_t crash_restarts, bytes_raw, bytes_wire, pause_p50, pause_p99;
} node_stats;

/* A join or a leave. */
typedef struct move_result {
    uint64_t moved;
    uint64_t bytes_raw, bytes_wire;
    uint64_t ns;  /* from the change until every process was in place */
    bool partial; /* the byte counts come from a sample that missed the end */
} move_result;

/* A node's pauses since it started, from its `metrics` text: log2 buckets, the longest. */
typedef struct pauses_view {
    uint64_t hist[CH_PAUSE_BUCKETS];
    uint64_t max_us;
} pauses_view;

typedef struct check_result {
    bool ran, ok;
    uint64_t bad, missing, errors; /* from the node's check report */
    char first[160];               /* its first problem line */
} check_result;

typedef struct demo {
    demo_opts opt;
    dc_cluster cl;
    uint64_t total;     /* processes: procs + blobs */
    int joiner, leaver; /* node indexes */
    char procs_s[24], blobs_s[24], state_s[24], round_ms_s[24], cores_s[12];
    progress pg;                   /* the current phase's line */
    bool pg_open;                  /* pg's line is not ended yet */
    uint64_t pg_done;              /* what the progress hook shows */
    node_stats base[DC_MAX_NODES]; /* at the start of a move */
    move_result join, leave;
    uint64_t pause_p50, pause_p99;   /* worst source node */
    int leave_code;                  /* the leaving node's exit code */
    long left_moved, left_not_moved; /* its `left:` line; -1 when absent */
    uint64_t pump_t0, pump_ns;
    uint64_t rounds, sent, send_failed, want;
    check_result seq, blob;
    uint64_t violations;
    int64_t lost, doubled; /* over every seq process; -1 when unknown */
    uint64_t scanned;
    uint64_t misplaced, unplaced, place_errors; /* summed over the nodes that stay */
    uint64_t instances, crash_restarts, migration_failures;
    char failure[256]; /* the first reason for a FAILED verdict */
    /* --svg (demo_svg.c) */
    FILE *svg;                            /* open from the start: a bad path fails at once */
    svg_run svg_join, svg_leave;          /* the two moves */
    svg_run *trace;                       /* the move demo.c's waits sample; NULL: none */
    uint64_t trace_t0;                    /* the current move's start */
    bool pause_src[DC_MAX_NODES];         /* the current move's source nodes */
    pauses_view pause_base[DC_MAX_NODES]; /* their pauses at its start ... */
    pauses_view pause_now[DC_MAX_NODES];  /* ... and at the latest look */
} demo;

/* demo_opts.c */

/* Reads the command line into *o: CLI_OK, CLI_USAGE (having said why on stderr), or -1
 * when it printed --help. */
int demo_parse_opts(int argc, char **argv, demo_opts *o);

/* demo.c */

/* The deadline of a wait that starts now (--timeout). */
uint64_t demo_deadline(const demo *d);
/* Notes the first reason why the verdict is FAILED; the demo goes on to check the rest. */
void demo_fail(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A phase's progress line: its name, what it counts, how many are expected. */
void demo_phase_begin(demo *d, const char *name, const char *unit, uint64_t total);
void demo_phase_end(demo *d, uint64_t done);
/* The counters the demo uses from a node's `stats` answer. */
void demo_parse_stats(const char *text, node_stats *s);
int demo_running_nodes(const demo *d);

/* demo_svg.c: --svg. Without it, each does nothing and returns 0. */

/* Opens the file and names the two runs; 0 or -errno. */
int demo_svg_open(demo *d);
/* A move from `source` (-1: every running node) begins: their pauses now are its base,
 * and run's time starts at 0 with 0 moved. 0, or a failure of the wait. */
int demo_svg_begin(demo *d, svg_run *run, int source, uint64_t dl);
/* `moved` processes had moved by now. */
void demo_svg_point(demo *d, svg_run *run, uint64_t moved);
/* A source's `metrics` answer (call->node's), read into its latest pauses if it parses. */
void demo_svg_pauses(demo *d, const dc_call *call);
/* The move ended: its pauses are the sources' (read now, or their latest look) less
 * their base. 0, or a failure of the wait. */
int demo_svg_end(demo *d, svg_run *run, bool read_now, uint64_t dl);
/* Writes both runs and closes the file; 0 or a negative code. */
int demo_svg_write(demo *d);

/* demo_check.c */

/* Once the senders stopped: every check, then d's verdict (d->failure). 0, or a failure of
 * a wait (the demo stops). */
int demo_check_all(demo *d);
/* On stdout: what the demo is about to do, and the report at the end. */
void demo_print_plan(const demo *d);
void demo_report(const demo *d);

#endif
