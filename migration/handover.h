/*
 * migration/handover.h - the migration engine of one core: moving its processes to their
 * new owners when the ring changes, and installing the processes other nodes move here.
 *
 * The protocol (design §3), as each core runs it. On a new ring R (from the coordinator):
 *
 *  1. Switch. The core now routes by R, tells every local core (MARK) and the coordinator
 *     (SWITCHED). Each mailbox is FIFO, so a core that got every core's MARK knows that
 *     no local core still routes by the old ring; the coordinator, once every core
 *     switched and no application thread is between routing and posting, pushes a marker
 *     into each core's inbox (IMARK: application threads' messages are ahead of it) and
 *     sends a BARRIER to every peer on the same connection as its casts (once it has also
 *     routed everything queued in its own inbox before: messages for other nodes carry
 *     the epoch of the ring their sender routed them by, and the coordinator sends them
 *     where that ring said, so a message posted just before the change still goes to the
 *     old owner, which forwards it behind the process, in order), and
 *     tells its cores SEALED when every participant's BARRIER for R arrived: from then on
 *     nothing new reaches this node for the processes R moved away.
 *  2. Plan, then freeze just in time. The core queues its processes whose owner changed.
 *     When one's turn comes to enter its lane's batch it is frozen: prepare_handover writes
 *     its state straight into the batch (a PROC record). Messages that reach a frozen
 *     process are appended to the same lane as MSG records, in arrival order, until the
 *     core is sealed; then an END record closes the process's stream.
 *  3. Lanes. One lane per (target node, target core), so a record is decoded and installed
 *     on the core that will own it (no hop on the target). A full batch goes through the
 *     core's codec (auto, zstd, none) and out on the core's own data lane to the target
 *     core (net/lane.h; through the coordinators' connection while that lane is not up,
 *     migration/ho_lane.c), with at most inflight_bytes of unconfirmed raw bytes per
 *     core. The raw batch is kept until the target confirms it: if the target dies, every
 *     process it held unconfirmed is unfrozen here and every forwarded message replayed,
 *     then planned again.
 *  4. Install. The target core checks the whole frame (checksum, record structure) before
 *     it applies anything (a bad frame is refused whole and sent again), starts each process
 *     (init with CH_INIT_MIGRATED, alter_handover), runs its forwarded messages, and holds
 *     messages that reached it directly until the process's END: then they run, in order.
 *     While any participant has not finished its part of R, the core holds messages for
 *     ids it does not have yet (UNHOLD lifts it), bounded by child_timeout_ms.
 *  5. Confirm. The target acknowledges each frame (after its processes' END records with
 *     confirm_handover); the source then terminates the old instances (reason MIGRATED).
 *     Past retention_ms without a confirmation the source asks the target which processes
 *     it holds, drops those, and keeps (unfreezes) the others, reporting each as a failure.
 *     A core says DONE (its coordinator then sends END) only once every frame it sent is
 *     confirmed: END means "every move of mine is settled", which step 6 relies on.
 *
 *  6. A target that dies (kill -9 mid-move). Senders switch to the new ring at step 1, so
 *     casts for a process P that has not reached its target T yet go to T, which holds
 *     them; if T dies, P stays on its source S (never frozen, or thawed by the replay of
 *     step 3) and what T held is gone. The options were:
 *       (a) senders keep routing by the previous ring until T confirms P, S forwarding
 *           behind the state: needs a second switch point per round, with its own
 *           barrier, and a forwarding entry on S after P left (the same protocol twice);
 *       (b) T bounces what it holds back to S: the bounced messages race the ones T gets
 *           after P's END (T cannot know when the last bounce is back), so per-sender
 *           order breaks even without a fault, unless T counts bounces and S numbers them;
 *       (c) copies survive where T's crash cannot reach them: the senders.
 *     We chose (c): it leaves the protocol of steps 1-5 (and its order) as it was. Every
 *     coordinator keeps a copy of each cast it sends to a node that is not the previous
 *     ring's owner of the id, while a round is open (net/cluster/coord_route.c); it drops them
 *     when every participant, itself included, sent END for the round (step 5: every move
 *     confirmed). When T is declared dead, the ring without T is built, and before it is
 *     published the coordinator routes T's copies again, in send order, by that ring: to
 *     S over the same connection as the sender's earlier casts (FIFO), or, when S is this
 *     node, into the core's inbox, ahead of anything an application thread routes by the
 *     new ring. On S, those arrive while P is still queued (delivered), frozen with its
 *     stream open (forwarded, so replayed in order), or frozen and ended (held until the
 *     replay thawed P, then run). A local thread's casts for P still queued in the
 *     coordinator when the ring changed arrive after the new ring's direct ones could: on
 *     a ring that lost a member, direct casts for a process that was to move to it wait
 *     until the round seals (then every older one is here). Per-sender order across T's
 *     crash is not promised yet: a window we have not found still reorders one sender's
 *     casts for a few hundred processes in about one test run in five (none is lost).
 *     A P that T had confirmed was T's: it restarts from its spec (a crash restart) and
 *     its copies reach the new instance or count as dead letters. Calls are not kept: a
 *     call to a dead node fails (the caller learns it). Copies are bounded (KEPT_MAX per
 *     node, said once if hit).
 *
 * Every function runs on the core's own reactor thread.
 */
#ifndef CH_MIGRATION_HANDOVER_H
#define CH_MIGRATION_HANDOVER_H

#include "core/reactor.h"

#include <corehub/node.h> /* CH_ADDR_MAX */

#include <stdbool.h>
#include <stdint.h>

/* CH_OP_MIG records between the coordinator and the cores, read and written as ch_mig_msg.
 * Byte blocks (frames) travel by pointer: ptr owns a heap block whose length is the
 * record's 8-byte payload, and frame holds the frame type. */
enum ch_mig_op {
    CH_MIG_RING = 1, /* coord -> core: the ring (ptr) and its hash (round); payload = members */
    CH_MIG_MARK,     /* core -> core: round, from_core */
    CH_MIG_SWITCHED, /* core -> coord: round */
    CH_MIG_SEALED,   /* coord -> core: round */
    CH_MIG_DONE,     /* core -> coord: round: every record of it is sent and confirmed */
    CH_MIG_UNHOLD,   /* coord -> core: round: every participant is done */
    CH_MIG_OUT,      /* core -> coord: a frame (ptr; payload: u64 length) for node */
    CH_MIG_IN,       /* coord -> core: a frame from node (ptr: 16 bytes, then it) */
    CH_MIG_GONE,     /* coord -> core: node is gone */
    CH_MIG_REPLY,    /* core -> coord: a forwarded call's answer: payload u64 node, u16
                        core, u64 ref, i32 status, bytes */
    CH_MIG_IMARK,    /* coord -> core, through the inbox: round: every message application
                        threads routed by an older ring is ahead of it */
    CH_MIG_LANES,    /* coord -> core: a peer's lane ports (ptr: a ch_mig_lanes block) */
};

/* CH_MIG_LANES's block: node's cores listen for lanes at host:ports[core]. */
typedef struct ch_mig_lanes {
    uint64_t node;
    char host[CH_ADDR_MAX + 1];
    uint16_t n;
    uint16_t ports[];
} ch_mig_lanes;

/* A migration record (CH_OP_MIG) between the coordinator and the cores, by name. It rides
 * in a ch_rec; ch_mig_rec and ch_mig_read map its fields to the record's and back in one
 * place, so no field means two things to the code that writes or reads it. */
typedef struct ch_mig_msg {
    uint8_t op;         /* enum ch_mig_op */
    uint8_t frame;      /* OUT, IN: the frame's type (CH_F_MIG_*) */
    uint16_t from_core; /* MARK: the core that sent it */
    uint64_t round;     /* RING, MARK, SWITCHED, SEALED, DONE, UNHOLD, IMARK: a ring's hash */
    uint64_t node;      /* OUT: the peer it goes to; IN: the one it came from; GONE: who */
    void *ptr;          /* RING: the ring; OUT, IN: the frame's block (the receiver frees it) */
} ch_mig_msg;

/* The record header for m with a payload of len bytes, and m read back from a record. */
ch_rec ch_mig_rec(const ch_mig_msg *m, size_t len);
ch_mig_msg ch_mig_read(const ch_rec *rec);

/* One member of a ring as the cores need it (RING's payload is an array of these). */
typedef struct ch_mig_member {
    uint64_t id;
    uint32_t cores;
    uint32_t pad;
} ch_mig_member;

/* The lane header before each MIG_DATA frame's codec frame: u16 source core, u16 target
 * core (with CH_MIG_LANE_FIRST), u32 sequence, u64 ring hash. */
#define CH_MIG_LANE_HDR 16u
/* In the target core field: the lane's first frame since it (re)started, which the target
 * applies whatever it saw of the lane before (a source that took its lane back from a
 * target it declared gone goes on numbering, and says so). */
#define CH_MIG_LANE_FIRST 0x8000u
/* Where a received frame starts in the block the coordinator hands a core: the codec
 * header then ends 64-byte aligned, and so does a raw batch (design §6). Before it, for an
 * ACK: u64 bytes and u64 ns the link to that node took so far (ch_conn_link). */
#define CH_MIG_IN_OFF 16u

struct ch_ho;
struct ch_hello;
typedef struct ch_mig_proc ch_mig_proc;

/* 0 or -ENOMEM / -EINVAL (a bad codec in the config). Only clustered cores have one. */
int ch_ho_create(ch_reactor *r);
void ch_ho_destroy(ch_reactor *r);

void ch_ho_on_rec(ch_reactor *r, ch_rec *rec);
/* Opens this core's data lanes (net/lane.h), before the threads run: the port, or a
 * negative code (the core then sends through the coordinator). self: the node's hello. */
int ch_ho_lanes_open(ch_reactor *r, const char *host, const struct ch_hello *self,
                     const void *cookie, size_t cookie_len);
/* A lane frame (DATA, ACK, QUERY) as received: the local core it is for, or -EINVAL. */
int ch_ho_frame_core(uint8_t type, const uint8_t *p, size_t len, unsigned cores);
/* The block a core takes a received lane frame in (CH_MIG_IN's ptr): link (an ACK's
 * feedback, or zeros), then the frame at CH_MIG_IN_OFF, 64-byte aligned; NULL without
 * memory. */
uint8_t *ch_ho_in_block(const uint8_t *p, size_t len, const uint64_t link[2]);
/* A cast or call for `p` (NULL: not here) arrived. True when the engine took it: forwarded
 * behind a frozen process, held for a process on its way here. */
bool ch_ho_intercept(ch_reactor *r, ch_rec *rec, ch_proc *p, unsigned core, uint64_t ref);
/* Streams queued processes; returns the work done (the reactor keeps turning while > 0). */
unsigned ch_ho_turn(ch_reactor *r);
bool ch_ho_busy(const ch_reactor *r);
/* True when p's terminate already ran because it is moving by ColdSwap (it must not run
 * twice for one instance, e.g. when the node stops during the move). */
bool ch_ho_terminated(const ch_proc *p);
/* Where p, frozen here, is moving to: true and (node, core), or false. */
bool ch_ho_target(const ch_proc *p, uint64_t *node, uint16_t *core);
/* p leaves the table while migrating (stopped, shut down). */
void ch_ho_proc_gone(ch_reactor *r, ch_proc *p);
/* A forwarded call's reply entry completed (supervisor). */
void ch_ho_reply_done(ch_reactor *r, uint64_t node, uint16_t core, uint64_t ref, int status,
                      const void *data, size_t len);

#endif
