/*
 * core/member.h - the membership table and its merge rules (pure logic, no I/O).
 *
 * Every node keeps a record per member it ever heard of: id, SWIM incarnation, state.
 * Views from peers merge record by record with rules that make every node converge on the
 * same table whatever the order of messages: a higher incarnation wins; at the same
 * incarnation SUSPECT beats ALIVE; DEAD and LEFT are final (a restarted node comes back
 * under a new id, so a final state never has to be undone). The ring is built from the
 * members that are ALIVE or SUSPECT; a change of that set is what makes a new epoch.
 */
#ifndef CH_CORE_MEMBER_H
#define CH_CORE_MEMBER_H

#include <corehub/cluster.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct ch_mem {
    uint64_t id;
    uint64_t incarnation;
    char addr[CH_ADDR_MAX + 1];
    uint16_t cores;
    uint8_t state;     /* ch_member_state */
    uint64_t since_ns; /* when this node saw the state begin */
    void *conn;        /* the coordinator's authenticated connection, or NULL */
    void *dialing;     /* an outgoing connection not yet up */
    uint64_t next_dial_ns;
    uint64_t reg_count, reg_xor; /* digest of the registry rows this member owns */
    void *backlog;               /* the coordinator's frames waiting for a connection */
    uint64_t mig_barrier;        /* migration: the last ring hash it switched to */
    uint64_t mig_end;            /* migration: the last ring hash it finished sending for */
    bool left_pending;           /* left gracefully; its handover runs until it hangs up */
    bool left_handled;           /* ... and it hung up: its rows were adopted */
    bool drained;                /* alive but out of the ring (ch_node_drain): its own
                                    record says so, ordered by its incarnation */
} ch_mem;

typedef struct ch_mtab {
    ch_mem *v;
    size_t n, cap;
    uint64_t self;
} ch_mtab;

enum { CH_MT_CHANGED = 1, CH_MT_RING = 2, CH_MT_REFUTE = 4 };

int ch_mtab_init(ch_mtab *t, const ch_mem *self);
void ch_mtab_free(ch_mtab *t);
ch_mem *ch_mtab_find(ch_mtab *t, uint64_t id);
ch_mem *ch_mtab_self(ch_mtab *t);
/* Merges one record (now: this node's clock). Returns CH_MT_* bits. */
int ch_mtab_merge(ch_mtab *t, const ch_mem *m, uint64_t now);
/* Sets a member's state locally (suspect, dead, left); returns CH_MT_* bits. */
int ch_mtab_set(ch_mtab *t, ch_mem *m, ch_member_state s, uint64_t now);
/* Alive or suspect, and not drained: owns a part of the ring. */
bool ch_mem_in_ring(const ch_mem *m);
/* Alive or suspect: a member to talk to, probe and wait for (drained or not). */
bool ch_mem_alive(const ch_mem *m);
/* Ids of the ring members, sorted; returns the count (out has room for t->n). */
size_t ch_mtab_ring_ids(const ch_mtab *t, uint64_t *out);
size_t ch_mtab_ring_size(const ch_mtab *t);

#endif
