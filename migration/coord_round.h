/*
 * migration/coord_round.h - the coordinator's half of the handover protocol: the round of
 * each ring (announce it to the cores, BARRIER when every core switched, SEALED and UNHOLD
 * when every participant said so) and the lanes' frames between the cores and the peers
 * (migration/coord_round.c). The coordinator (net/cluster/) calls it through this table,
 * which the wiring file (core/node.c) hands to ch_coord_create.
 */
#ifndef CH_MIGRATION_COORD_ROUND_H
#define CH_MIGRATION_COORD_ROUND_H

#include "net/cluster/coord.h"

extern const ch_coord_round ch_coord_round_ops;

#endif
