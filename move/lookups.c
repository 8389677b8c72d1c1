/* The budget of store lookups for unknown dialogs (move/lookups.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"
#include "move/lookups.h"
#include "sql/store.h"
#include "util/hash.h"
#include "util/log.h"

/* Asking the store about a dialog nobody here knows costs a store round trip; a stranger can
 * make up Call-IDs for nothing. Lookups are budgeted, per source and in all: a token each,
 * refilled at these rates (per second) up to the bursts; a lookup that finds a call (a restart,
 * a dead node's call through the proxy) gets its token back, so what is spent is the lookups
 * that found nothing. Over budget, the request is answered as a dialog nobody has (481) with no
 * lookup. */
#define MISS_RATE      20
#define MISS_BURST     100
#define MISS_RATE_ALL  200
#define MISS_BURST_ALL 1000
#define MISS_SLOTS     1024 /* sources tracked; one that collides starts afresh */

/* A budget of store lookups (tokens, refilled by time). */
struct bucket {
	char source[STORE_SOURCE_MAX];
	double tokens;
	long long at; /* ms: last refilled */
};

struct lookups {
	struct bucket all, miss[MISS_SLOTS]; /* in all, and per source */
	long long refused, refused_logged;   /* over budget: answered without a lookup */
	double rate, burst, rate_all, burst_all;
	const char *what; /* a string literal: what is budgeted, for the log */
	int metric;
};

int lookups_alloc_rates(struct lookups **lp, const char *what, double rate, double burst,
                        double rate_all, double burst_all, int metric)
{
	struct lookups *lk = calloc(1, sizeof(*lk));

	*lp = lk;
	if (!lk)
		return ENOMEM;
	lk->rate = rate;
	lk->burst = burst;
	lk->rate_all = rate_all;
	lk->burst_all = burst_all;
	lk->what = what;
	lk->metric = metric;
	lk->all.tokens = burst_all;
	lk->all.at = store_now();
	return 0;
}

int lookups_alloc(struct lookups **lp)
{
	return lookups_alloc_rates(lp, "requests in dialogs nobody has", MISS_RATE, MISS_BURST,
	                           MISS_RATE_ALL, MISS_BURST_ALL,
	                           METRIC_SIP_UNKNOWN_DIALOGS_REFUSED_TOTAL);
}

void lookups_free(struct lookups *lk)
{
	free(lk);
}

static void refill(struct bucket *b, double rate, double burst, long long now)
{
	if (now > b->at)
		b->tokens += (double)(now - b->at) * rate / 1000.0;
	if (b->tokens > burst)
		b->tokens = burst;
	b->at = now;
}

/* The source's bucket (a fresh one, full, for a source not seen lately). */
static struct bucket *bucket_of(struct lookups *lk, const char *source, long long now)
{
	struct bucket *b = &lk->miss[hash_str(source) % MISS_SLOTS];

	if (strcmp(b->source, source)) {
		snprintf(b->source, sizeof(b->source), "%s", source);
		b->tokens = lk->burst;
		b->at = now;
	}
	refill(b, lk->rate, lk->burst, now);
	return b;
}

int lookup_allowed(struct lookups *lk, const char *source)
{
	long long now = store_now();
	struct bucket *b;

	if (!lk)
		return 1;
	b = bucket_of(lk, source, now);
	refill(&lk->all, lk->rate_all, lk->burst_all, now);
	if (b->tokens < 1 || lk->all.tokens < 1) {
		lk->refused++;
		if (lk->metric >= 0)
			metric_inc((enum metric)lk->metric);
		/* a line a second at most: the flood is the sender's, not the log's */
		if (now - lk->refused_logged >= 1000) {
			LOG_WARN(
			    "sip",
			    "%s from %s: over the budget of store lookups (%lld refused so far), "
			    "answered without one",
			    lk->what, source, lk->refused);
			lk->refused_logged = now;
		}
		return 0;
	}
	b->tokens--;
	lk->all.tokens--;
	return 1;
}

void lookup_found(struct lookups *lk, const char *source)
{
	struct bucket *b;

	if (!lk)
		return;
	b = bucket_of(lk, source, store_now());
	b->tokens = b->tokens + 1 > lk->burst ? lk->burst : b->tokens + 1;
	lk->all.tokens = lk->all.tokens + 1 > lk->burst_all ? lk->burst_all : lk->all.tokens + 1;
}
