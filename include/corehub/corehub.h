/*
 * corehub/corehub.h - the umbrella header: include this one.
 *
 * corehub runs lightweight stateful processes on a shared-nothing, thread-per-core runtime:
 * one io_uring reactor per core, each owning a shard of processes, talking by messages only.
 *
 * The conventions every header follows (return codes, and the naming rule
 * ch_<object>[_<part>]_<verb>, with the old names kept as aliases) are written at the top
 * of corehub/common.h.
 */
#ifndef COREHUB_COREHUB_H
#define COREHUB_COREHUB_H

#include <corehub/common.h>
#include <corehub/process.h>
#include <corehub/node.h>
#include <corehub/cluster.h>
#include <corehub/server.h>

#define COREHUB_VERSION_MAJOR 0
#define COREHUB_VERSION_MINOR 1
#define COREHUB_VERSION_PATCH 0

#endif
