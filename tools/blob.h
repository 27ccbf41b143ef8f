/*
 * tools/blob.h - the "blob" process type, built into the corehub program: a byte store.
 *
 * State: the bytes, at most BLOB_MAX of them (what one reply can carry by default).
 * Casts: "set BYTES" replaces them ("set" alone empties the store); "append BYTES" adds
 *        to the end. An append past BLOB_MAX, and any other cast, is ignored.
 * Calls: "get" replies the bytes; "len" replies their count as decimal text; anything
 *        else gets no reply (the caller sees -ENODATA).
 * Init argument: the initial bytes.
 */
#ifndef COREHUB_TOOLS_BLOB_H
#define COREHUB_TOOLS_BLOB_H

#include <corehub/corehub.h>

#define BLOB_TYPE_NAME "blob"
#define BLOB_MAX       (1u << 20) /* ch_node_config.max_message's default */

const ch_process_type *blob_type(void);

/* Fills out[0..size) with the content `ctl start-blobs` gives the blob `id` and that
 * `ctl check-blobs` expects back: deterministic per id, and realistic for a codec (JSON-like
 * records of words and numbers: neither zeros nor noise; zstd-1 shrinks one 4 KiB
 * blob about 3.5x, 64 KiB of them 4.5x). */
void blob_content(const char *id, size_t id_len, void *out, size_t size);

#endif
