/*
 * media/: the media anchor's control protocol (rtpengine's "ng": bencode over UDP). This
 * header: the bencode codec. Strings are bytes with a length (not NUL-terminated); a parsed
 * tree points into the input, which must outlive it.
 *
 * Grammar (strict): i<decimal>e (no leading zeros, no -0, fits long long), <len>:<bytes>
 * (len without leading zeros), l<items>e, d<string key><value>...e. EINVAL for anything else
 * or trailing bytes, E2BIG past BENC_MAX_NODES nodes or BENC_MAX_DEPTH nesting.
 */
#ifndef QRXFER_MEDIA_BENCODE_H
#define QRXFER_MEDIA_BENCODE_H

#include <stddef.h>

#include "util/buf.h"

#define BENC_MAX_NODES 4096
#define BENC_MAX_DEPTH 32

enum benc_type { BENC_INT, BENC_STR, BENC_LIST, BENC_DICT };

/* One value. A list's or dict's items are child, then next; a dict item has its key. */
struct benc {
	enum benc_type type;
	long long i;
	const char *s; /* BENC_STR: the bytes, len of them */
	size_t len;
	const char *key; /* an item of a dict: its key, klen bytes */
	size_t klen;
	struct benc *child, *next;
};

/* Parse len bytes into *rootp (free with benc_free); 0 or EINVAL, E2BIG, ENOMEM. */
int benc_parse(const char *in, size_t len, struct benc **rootp);
void benc_free(struct benc *root);

/* A dict's value under key, or NULL (also when d is not a dict). */
const struct benc *benc_get(const struct benc *d, const char *key);
/* Whether v is a string equal to s. */
int benc_is(const struct benc *v, const char *s);
/* A dict's string under key copied into out (NUL-terminated, cut to len-1); 0 or ENOENT. */
int benc_get_str(const struct benc *d, const char *key, char *out, size_t len);

/* Writing: strings, ints, and the d/l ... e brackets, to a struct buf. */
void benc_put_str(struct buf *b, const char *s);
void benc_put_mem(struct buf *b, const void *p, size_t n);
void benc_put_int(struct buf *b, long long v);
static inline void benc_put_dict(struct buf *b)
{
	buf_add(b, "d", 1);
}
static inline void benc_put_list(struct buf *b)
{
	buf_add(b, "l", 1);
}
static inline void benc_put_end(struct buf *b)
{
	buf_add(b, "e", 1);
}
/* key and string value in one, for dicts */
void benc_put_kv(struct buf *b, const char *key, const char *val);

#endif
