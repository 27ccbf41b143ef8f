/*
 * migration/ho_lane.c - the handover engine on its core's data lanes (net/lane.h): which
 * way each frame leaves, lane frames coming in, a lane lost.
 *
 * A frame leaves on the data lane from this core to its target core when that lane is up,
 * else through the coordinators' connection; a lane comes up in the background, so one
 * handover lane's frames may take both ways, and the two do not keep their order between
 * them. The target applies a lane's frames in sequence order whichever way each came,
 * holding the ones that come early (ho_target.c), and confirms a repeat again without
 * applying it. When a data lane closes, what it carried unconfirmed may be lost: every
 * such frame goes again, in order, the other way (and a lane that stops moving is closed:
 * net/lane.c). Queries, which rescue frames left unconfirmed, always take the coordinator;
 * one may overtake its frame, and the target then counts that frame as taken back
 * (ch__ho_on_query), as before lanes when a connection was lost.
 *
 * A frame received on a lane for this core (always, unless the peer dialled a port that
 * moved) is handled where it lies in the lane's receive buffer: decoded in place, copied
 * only when it must wait (an early frame). One for another core is copied into a block
 * (ch_ho_in_block, as the coordinator does) and posted there. The copy cost more than the
 * decode: a fresh 256 KiB block per frame faulted in its pages (perf: 12% of a 100k x
 * 4 KiB join's samples in ch_ho_in_block's memcpy).
 */
#include "ho_int.h"

#include "core/log.h"
#include "migration/le.h"
#include "net/lane.h"

#include <stdlib.h>

/* ---- frames in -------------------------------------------------------------------------- */

int ch_ho_frame_core(uint8_t type, const uint8_t *p, size_t len, unsigned cores)
{
    if (type != CH_F_MIG_DATA && type != CH_F_MIG_ACK && type != CH_F_MIG_QUERY) return -EINVAL;
    size_t at = type == CH_F_MIG_ACK ? 0 : 2; /* an ACK names our source core, others the target */
    if (len < at + 2) return -EINVAL;
    uint16_t core = ch_le_get16(p + at) & (uint16_t)~CH_MIG_LANE_FIRST;
    return core < cores ? core : -EINVAL;
}

uint8_t *ch_ho_in_block(const uint8_t *p, size_t len, const uint64_t link[2])
{
    size_t bytes = (CH_MIG_IN_OFF + len + 63) & ~(size_t)63;
    uint8_t *block = aligned_alloc(64, bytes);
    if (!block) return NULL;
    memcpy(block, link, 2 * sizeof(*link));
    memcpy(block + CH_MIG_IN_OFF, p, len);
    return block;
}

static void lane_frame(void *ud, uint64_t node, uint8_t type, const uint8_t *p, size_t len)
{
    ch_ho *h = ud;
    ch_reactor *r = h->r;
    int core = ch_ho_frame_core(type, p, len, r->node->cores);
    if (core < 0) {
        CH_WARN("%s frame from %016llx on a data lane refused", ch_frame_type_name(type),
                (unsigned long long)node);
        ho_count(&r->stats.bad_frames, 1);
        return;
    }
    uint64_t link[2] = {0, 0}; /* an ACK: what our lane to its sender took, for the codec */
    if (type == CH_F_MIG_ACK && len >= 10)
        ch_lanes_link(h->wire, node, ch_le_get16(p + 8), &link[0], &link[1]);
    if ((unsigned)core == r->core) {
        if (type == CH_F_MIG_DATA)
            ch__ho_on_data(h, node, p, len, NULL);
        else if (type == CH_F_MIG_ACK)
            ch__ho_on_ack(h, node, (const uint8_t *)link, p, len);
        else
            ch__ho_on_query(h, node, p, len);
        ho_update_gauge(h);
        return;
    }
    uint8_t *block = ch_ho_in_block(p, len, link);
    if (!block) {
        CH_ERROR("no memory for a migration frame from %016llx", (unsigned long long)node);
        return;
    }
    ch_mig_msg m = {.op = CH_MIG_IN, .frame = type, .node = node, .ptr = block};
    uint64_t l = len;
    ch_rec rec = ch_mig_rec(&m, sizeof(l));
    if (ch_reactor_post(r->node, (unsigned)core, &rec, NULL, &l, false) < 0) free(block);
}

/* ---- frames out ------------------------------------------------------------------------- */

/* The data lane to (node, core) is gone: what it carried unconfirmed goes again, in order,
 * the other way. */
static void lane_down(void *ud, uint64_t node, uint16_t core)
{
    ch_ho *h = ud;
    unsigned n = 0;
    for (ho_sent *s = h->sent_head; s; s = s->next)
        n += s->node == node && s->core == core && s->via_lane;
    if (!n) return;
    ho_count(&h->r->stats.handover_lanes_lost, 1);
    CH_INFO("data lane to %016llx core %u lost: %u unconfirmed frames go again",
            (unsigned long long)node, core, n);
    for (ho_sent *s = h->sent_head; s; s = s->next) {
        if (s->node != node || s->core != core || !s->via_lane) continue;
        if (ch__ho_transmit(h, s) < 0)
            CH_WARN("frame %u not sent again (no memory): its retention query settles it", s->seq);
    }
}

void ch__ho_send_frame(ch_ho *h, ho_sent *s, uint8_t type, uint8_t *block, size_t len)
{
    /* A query rescues a frame that went unconfirmed, perhaps stuck on its lane: it takes
     * the coordinators' connection, whose peer the membership watches. */
    if (type != CH_F_MIG_QUERY && h->wire &&
        ch_lanes_send(h->wire, s->node, s->core, type, block, len, NULL, 0) == 0) {
        free(block);
        if (type != CH_F_MIG_DATA) return;
        s->via_lane = true;
        ho_count(&h->r->stats.handover_frames_lane, 1);
        if (h->f_lane_cut && ++h->lane_frames % h->f_lane_cut == 0) { /* fault (tests) */
            CH_WARN("fault injected: the data lane to %016llx core %u cut after frame %u",
                    (unsigned long long)s->node, s->core, s->seq);
            ch_lanes_reset(h->wire, s->node, s->core);
        }
        return;
    }
    if (type == CH_F_MIG_DATA) s->via_lane = false;
    ch__ho_send_block(h->r, s->node, type, block, len);
}

void ch__ho_send_ack(ch_ho *h, uint64_t node, uint16_t core, ch_wbuf *w)
{
    if (!w->err && h->wire &&
        ch_lanes_send(h->wire, node, core, CH_F_MIG_ACK, w->data, w->len, NULL, 0) == 0)
        return;
    ch__ho_send_wbuf(h->r, node, CH_F_MIG_ACK, w);
}

/* ---- life ------------------------------------------------------------------------------- */

int ch_ho_lanes_open(ch_reactor *r, const char *host, const struct ch_hello *self,
                     const void *cookie, size_t cookie_len)
{
    ch_ho *h = r->ho;
    if (!h) return -ENOENT;
    ch_lanes_cbs cbs = {.ud = h, .on_frame = lane_frame, .on_down = lane_down};
    int rc = ch_lanes_create(r, host, self, cookie, cookie_len, &cbs, &h->wire);
    return rc < 0 ? rc : ch_lanes_port(h->wire);
}

void ch__ho_on_lanes(ch_ho *h, const ch_mig_msg *m)
{
    const ch_mig_lanes *b = m->ptr;
    int rc = h->wire ? ch_lanes_set_peer(h->wire, b->node, b->host, b->ports, b->n) : 0;
    if (rc < 0)
        CH_WARN("lanes of %016llx not taken: %s", (unsigned long long)b->node, ch_strerror(rc));
}
