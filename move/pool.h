/*
 * move/pool: codes made ahead on a worker, so that asking for a move costs the loop a list pop
 * rather than a QR mask search and a deflate (see README, "make bench-codes").
 *
 * Contract. Everything here is called on the loop thread of the su_root given to
 * move_pool_alloc(); a worker (util/queue) makes codes and hands them back to the loop. A code
 * is everything of a move's code that does not depend on its move: a move id, a token that
 * names it, the token's hash, the URI the QR holds and its PNG, a numeric code with its hashes
 * and, if asked for, its Code 128 PNG. move_pool_take() hands each code out once; the taker
 * owns it and frees it with move_code_free(), which wipes the secrets.
 *
 * Time. A pooled token signs made + ttl + max_age as its expiry, and the pool never hands out
 * a code older than max_age (min(ttl / 4, 30 s)): the move that binds it expires ttl after the
 * binding (its timer and the store's row say so), which is never after the token's own expiry.
 * A code made on the loop (the pool empty, off or just reconfigured) signs now + ttl.
 */
#ifndef QRXFER_MOVE_POOL_H
#define QRXFER_MOVE_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "codes/code.h"

struct su_root_s;
struct move_pool;

#define MOVE_POOL_MAX    64 /* [codes] pool at most */
#define MOVE_POOL_HASHES 8  /* a numeric code's hashes: one a key, the current first */

/* What a code is made with; the pool keeps its own copies of the strings and the keyring. */
struct move_pool_conf {
	unsigned size;                   /* codes kept ready; 0: every code made on the loop */
	const struct code_keyring *keys; /* signs tokens and hashes numeric codes */
	unsigned ttl;                    /* seconds a move's code is valid once bound */
	enum code_uri_kind uri_kind;
	const char *where; /* the SIP domain or the public URL, by uri_kind */
	unsigned digits;   /* numeric code length, 6..10 */
	unsigned qr_px;    /* pixels a QR module in the PNG; 0: no QR PNG */
	unsigned barcode;  /* 1: the numeric code's Code 128 PNG too */
};

/* One code. Owner: the pool while ready, then whoever took it (move_code_free). */
struct move_code {
	struct move_code *next; /* in the pool's ready list */
	uint64_t id64;          /* the move id the token names; never 0 */
	time_t made;            /* when it was made */
	time_t expires;         /* what the token signs */
	unsigned gen;           /* the pool's configuration it was made under */
	char token[CODE_TOKEN_LEN + 1];
	uint8_t token_hash[CODE_HASH_LEN];
	char qr_uri[512];
	char code[12];
	unsigned ncode_hash; /* hashes of code under keys 0 .. ncode_hash-1 */
	uint8_t code_hash[MOVE_POOL_HASHES][CODE_HASH_LEN];
	uint8_t *qr_png, *barcode_png; /* malloc'd, or NULL when not asked for */
	size_t qr_png_len, barcode_png_len;
};

struct move_pool_stats {
	unsigned ready;          /* codes ready now */
	unsigned refilling;      /* codes a worker is making now */
	unsigned long made;      /* by the worker */
	unsigned long taken;     /* handed out ready */
	unsigned long made_here; /* made on the loop: the pool was empty, off or out of date */
	unsigned long dropped;   /* made and let go unused: too old or out of date */
};

/* Starts a pool on root with conf (copied) and begins filling it; *pp set only on success. */
int move_pool_alloc(struct move_pool **pp, struct su_root_s *root,
                    const struct move_pool_conf *conf);

/*
 * Hands out a code for a move bound now, under conf (what the caller's configuration says
 * today: a difference from the pool's drops the ready codes and refills under conf, reading
 * the keyring again). A ready one if there is one, else one made here (*here = 1 then). *cp is
 * set only on success. p may be NULL (no pool): every code is made here.
 */
int move_pool_take(struct move_pool *p, const struct move_pool_conf *conf, time_t now,
                   struct move_code **cp, int *here);

/* Makes one code under conf on the calling thread, as a worker does (expires = now + ttl +
 * slack); for the loop's fallback and the benchmark. */
int move_code_make(const struct move_pool_conf *conf, time_t now, unsigned slack,
                   struct move_code **cp);

/* Remakes the numeric part of c (another move on offer has its digits): new digits, hashes and
 * barcode. */
int move_code_renumber(struct move_code *c, const struct code_keyring *keys, unsigned digits,
                       int barcode);

/* Wipes and frees a code; NULL is fine. */
void move_code_free(struct move_code *c);

void move_pool_stats(const struct move_pool *p, struct move_pool_stats *st);

/* Drops the ready codes, waits for a refill under way and frees the pool; NULL is fine. */
void move_pool_free(struct move_pool *p);

#endif
