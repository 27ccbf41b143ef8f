/*
 * net/cluster/mtab.h - the membership table and its merge rules (pure logic, no I/O).
 *
 * Every node keeps a record per member it heard of: id, SWIM incarnation, state. Views
 * from peers merge record by record with rules that make every node converge on the same
 * table whatever the order of messages (SWIM and memberlist's rules):
 *
 *   - a record with a higher incarnation wins, whatever its state, with one exception: a
 *     member declared DEAD at incarnation d comes back only with a record that says it
 *     knows (rejoin_inc > d). A node that merely refuted a suspicion after a stall has
 *     not yet retired what the hub replaced while it was away, so it stays dead until it
 *     hears of its death and rejoins;
 *   - at the same incarnation the worse news wins: DEAD over SUSPECT over ALIVE;
 *   - LEFT is final: a node that left gracefully has exited (a restarted node is a new
 *     member with a new id);
 *   - only a member speaks for itself: told that it is SUSPECT, it refutes with an
 *     incarnation above the one it was accused at (CH_MT_REFUTE); told DEAD at d (at or
 *     above its last rejoin), it takes an incarnation above both and sets rejoin_inc to it,
 *     and the table reports CH_MT_REJOIN, so the coordinator can retire what the hub
 *     replaced meanwhile;
 *   - a DEAD record names its declarer (dead_by), the member whose own detector found it
 *     dead; relays pass it on unchanged.
 *
 * The ring is built from the members that are ALIVE or SUSPECT and not drained; a change
 * of that set is what makes a new epoch.
 *
 * Records are allocated one by one, so a ch_mem pointer stays valid while the table grows;
 * only ch_mtab_reap frees records (DEAD or LEFT ones long enough to be forgotten, with no
 * connection, no dial and no handover pending), and the table holds at most
 * CH_MTAB_MAX members, of which at most CH_MTAB_TOMBSTONES may be DEAD or LEFT.
 */
#ifndef CH_NET_CLUSTER_MTAB_H
#define CH_NET_CLUSTER_MTAB_H

#include <corehub/cluster.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CH_MTAB_MAX        4096 /* members a table holds: a peer cannot grow it past this */
#define CH_MTAB_TOMBSTONES 256  /* DEAD/LEFT records kept at most (the oldest go first) */

typedef struct ch_mem {
    uint64_t id;
    uint64_t incarnation;
    uint64_t rejoin_inc; /* the incarnation it took when it last heard of its death; 0: never */
    uint64_t dead_by;    /* DEAD: the member whose detector declared it (views carry it, so a
                            node told of its death by a relay judges the declarer) */
    char addr[CH_ADDR_MAX + 1];
    uint16_t cores;
    uint8_t state;     /* ch_member_state */
    uint64_t since_ns; /* when this node saw the state begin */
    void *conn;        /* the coordinator's authenticated connection, or NULL */
    void *dialing;     /* an outgoing connection not yet up */
    uint32_t retired;  /* replaced connections still reading (their ud is this record) */
    uint64_t next_dial_ns;
    uint32_t dead_dials;         /* dials made to it while DEAD (they back off) */
    uint64_t reg_count, reg_xor; /* digest of the registry rows this member owns */
    void *backlog;               /* the coordinator's frames waiting for a connection */
    uint64_t mig_barrier;        /* migration: the last ring hash it switched to */
    uint64_t mig_end;            /* migration: the last ring hash it finished sending for */
    bool left_pending;           /* left gracefully; its handover runs until it hangs up */
    bool left_handled;           /* ... and it hung up: its rows were adopted */
    bool drained;                /* alive but out of the ring (ch_node_drain): its own
                                    record says so, ordered by its incarnation */
    bool partitioned;            /* in a view: its sender is in partition mode (not merged) */
    bool revived;                /* came back from DEAD (a higher incarnation); the
                                    coordinator clears it once it welcomed it back */
    uint64_t revived_ns;         /* when it last came back from DEAD (0: never) */
    uint64_t heard_ns;           /* when a frame from it last arrived here */
} ch_mem;

typedef struct ch_mtab {
    ch_mem **v; /* one allocation per record: pointers stay valid until reaped */
    size_t n, cap;
    uint64_t self;
} ch_mtab;

enum { CH_MT_CHANGED = 1, CH_MT_RING = 2, CH_MT_REFUTE = 4, CH_MT_REJOIN = 8 };

int ch_mtab_init(ch_mtab *t, const ch_mem *self);
void ch_mtab_free(ch_mtab *t);
ch_mem *ch_mtab_find(ch_mtab *t, uint64_t id);
ch_mem *ch_mtab_self(ch_mtab *t);
/* Merges one record (now: this node's clock). Returns CH_MT_* bits. */
int ch_mtab_merge(ch_mtab *t, const ch_mem *m, uint64_t now);
/* Sets a member's state locally (suspect, dead, left); returns CH_MT_* bits. A LEFT
 * member stays LEFT. */
int ch_mtab_set(ch_mtab *t, ch_mem *m, ch_member_state s, uint64_t now);
/* Frees the DEAD and LEFT records older than keep_ns (by since_ns) that nothing uses (no
 * connection, dial, backlog or pending handover), and the oldest unused ones past
 * CH_MTAB_TOMBSTONES. Returns how many it freed. */
size_t ch_mtab_reap(ch_mtab *t, uint64_t now, uint64_t keep_ns);
/* Alive or suspect, and not drained: owns a part of the ring. */
bool ch_mem_in_ring(const ch_mem *m);
/* DEAD now, or back from DEAD less than window_ns ago. */
bool ch_mem_recently_dead(const ch_mem *m, uint64_t now, uint64_t window_ns);
/* Alive or suspect: a member to talk to, probe and wait for (drained or not). */
bool ch_mem_alive(const ch_mem *m);
/* Ids of the ring members, sorted; returns the count (out has room for t->n). */
size_t ch_mtab_ring_ids(const ch_mtab *t, uint64_t *out);
size_t ch_mtab_ring_size(const ch_mtab *t);
/* Members ALIVE (not suspect) in the ring: the ones this node hears from now. */
size_t ch_mtab_alive_size(const ch_mtab *t);

#endif
