/*
 * Replay a stream of LLFree requests through llfree-c (luhsra/llfree-c) and write the
 * results, so that memdesc.lib.llfree can be compared with the reference bit for bit
 * (benchmarks/llfree_vs_c.py builds this against a checkout and drives it).
 *
 * usage: llc_replay FRAMES CORES CLASSING OPS OUT
 *   CLASSING: 0 = llfree_classing_simple(CORES), 1 = llfree_classing_movable(CORES)
 *   OPS: int64 records of 5 words: kind, a, b, c, d
 *     kind 0 get:  order a, class b, local c (-1: none), frame d (-1: any)
 *     kind 1 put:  the frames of get op a with its order, class b, local c
 *     kind 2 drain
 *     kind 3 put:  frame (result of get op a) + d, order b, class c >> 8, local (c & 0xff) - 1
 *   OUT: int64 pairs per op: frame (get) or 0 (put/drain) or -error, class;
 *        then free frames, free huge, free trees (lower stats), and the tree-stats free frames.
 */
#include "llfree.h"
#include "llfree_inner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *alloc_aligned(size_t size)
{
	size_t s = (size + 63) / 64 * 64;
	void *p = aligned_alloc(64, s ? s : 64);
	if (p == NULL) {
		perror("aligned_alloc");
		exit(2);
	}
	memset(p, 0, s ? s : 64);
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s FRAMES CORES CLASSING OPS OUT\n", argv[0]);
		return 2;
	}
	size_t frames = strtoull(argv[1], NULL, 0);
	size_t cores = strtoull(argv[2], NULL, 0);
	int classing_kind = atoi(argv[3]);
	llfree_classing_t classing = classing_kind ? llfree_classing_movable(cores) :
						     llfree_classing_simple(cores);

	FILE *f = fopen(argv[4], "rb");
	if (f == NULL) {
		perror(argv[4]);
		return 2;
	}
	fseek(f, 0, SEEK_END);
	long bytes = ftell(f);
	fseek(f, 0, SEEK_SET);
	size_t n = (size_t)bytes / (5 * sizeof(int64_t));
	int64_t *ops = malloc((size_t)bytes + 8);
	if (fread(ops, 1, (size_t)bytes, f) != (size_t)bytes) {
		perror("fread");
		return 2;
	}
	fclose(f);
	int64_t *out = calloc(2 * n + 4, sizeof(int64_t));

	llfree_meta_size_t m = llfree_metadata_size(&classing, frames);
	llfree_meta_t meta = { .local = alloc_aligned(m.local),
			       .trees = alloc_aligned(m.trees),
			       .lower = alloc_aligned(m.lower) };
	llfree_t *llfree = alloc_aligned(sizeof(llfree_t));
	llfree_result_t r = llfree_init(llfree, frames, LLFREE_INIT_FREE, meta, &classing);
	if (!llfree_is_ok(r)) {
		fprintf(stderr, "init failed: %d\n", r.error);
		return 1;
	}

	for (size_t i = 0; i < n; i++) {
		int64_t *op = &ops[5 * i];
		int64_t kind = op[0];
		if (kind == 0) {
			llfree_request_t req = llreq((uint8_t)op[1], (uint8_t)op[2],
						     op[3] < 0 ? ll_none() : ll_some((size_t)op[3]));
			frame_id_optional_t at = op[4] < 0 ? frame_id_none() :
							      frame_id_some(frame_id((uint64_t)op[4]));
			r = llfree_get(llfree, at, req);
			out[2 * i] = llfree_is_ok(r) ? (int64_t)r.frame.value : -(int64_t)r.error;
			out[2 * i + 1] = r.class;
		} else if (kind == 1 || kind == 3) {
			int64_t j = op[1];
			int64_t got = out[2 * j];
			if (got < 0) {
				out[2 * i] = 0;
				continue;
			}
			llfree_request_t req;
			uint64_t frame;
			if (kind == 1) {
				int64_t local = op[3];
				req = llreq((uint8_t)ops[5 * j + 1], (uint8_t)op[2],
					    local < 0 ? ll_none() : ll_some((size_t)local));
				frame = (uint64_t)got;
			} else {
				int64_t local = (op[3] & 0xff) - 1;
				req = llreq((uint8_t)op[2], (uint8_t)(op[3] >> 8),
					    local < 0 ? ll_none() : ll_some((size_t)local));
				frame = (uint64_t)(got + op[4]);
			}
			r = llfree_put(llfree, frame_id(frame), req);
			out[2 * i] = llfree_is_ok(r) ? 0 : -(int64_t)r.error;
		} else if (kind == 2) {
			llfree_drain(llfree);
		}
	}
	ll_stats_t st = llfree_stats(llfree);
	out[2 * n] = (int64_t)st.free_frames;
	out[2 * n + 1] = (int64_t)st.free_huge;
	out[2 * n + 2] = (int64_t)st.free_trees;
	out[2 * n + 3] = (int64_t)llfree_tree_stats(llfree).free_frames;
	llfree_validate(llfree);

	f = fopen(argv[5], "wb");
	fwrite(out, sizeof(int64_t), 2 * n + 4, f);
	fclose(f);
	return 0;
}
