/*
 * The budget of store lookups for requests in dialogs nobody here knows (move/survive.c): a
 * stranger can make up Call-IDs for nothing, each would cost a store round trip.
 */
#ifndef QRXFER_MOVE_LOOKUPS_H
#define QRXFER_MOVE_LOOKUPS_H

struct lookups;

int lookups_alloc(struct lookups **lp);
/* A budget with its own rates (tokens a second, bursts: per source, and in all), its log lines
 * naming what (e.g. "pulls"), counted in metric (a METRIC_ index). */
int lookups_alloc_rates(struct lookups **lp, const char *what, double rate, double burst,
                        double rate_all, double burst_all, int metric);
void lookups_free(struct lookups *lk);

/* Takes a token from source's budget and from the budget in all: 0 when either is spent (the
 * request is then answered without a lookup; counted and logged). lk NULL: always 1. */
int lookup_allowed(struct lookups *lk, const char *source);

/* The lookup found a call: its token goes back. */
void lookup_found(struct lookups *lk, const char *source);

#endif
