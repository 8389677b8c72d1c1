/* Internal to the reactions (react.c) and the watch pages (watch.c). */
#ifndef QRXFER_MOVE_REACT_INT_H
#define QRXFER_MOVE_REACT_INT_H

#include <stdint.h>
#include <sys/queue.h>

#include "codes/code.h"
#include "move/react.h"
#include "sql/store.h"
#include "sip/b2bua.h"
#include "util/log.h"

#define REACT_EVENTS    32 /* reactions a watch keeps for pages that poll */
#define REACT_JSON_LEGS 8  /* legs of a call known to take REACT_CTYPE */
#define REACT_DTMF_MAX  10 /* DTMF codes mapped to reactions */
#define REACT_ACCEPTS   64 /* dialogs whose INVITE said Accept: REACT_CTYPE, until answered */
#define REACT_KEY_MAX   STORE_SOURCE_MAX /* an address key (web_source_of's, whole) */

struct watch;

/* A reaction as the watch keeps it. */
struct watch_event {
	unsigned long seq;
	char emoji[REACT_EMOJI_MAX + 1];
	double x, y;
	long long at_us; /* monotonic */
};

/* One long poll waiting for news. Owned by its watch's list. */
struct react_waiter {
	LIST_ENTRY(react_waiter) link;
	struct watch *w;
	char key[REACT_KEY_MAX];
	unsigned long since;
	su_timer_t *timer;
	react_watch_h *cb;
	void *arg;
};

/* One call's watch page. Owned by its react_call; on the stack's list while alive. */
struct watch {
	LIST_ENTRY(watch) link;
	struct react_stack *rs;
	struct react_call *rc;       /* whose watch it is */
	uint8_t hash[CODE_HASH_LEN]; /* of its secret: the secret itself is never kept */
	char url[REACT_URL_MAX + 1];
	unsigned long seq; /* one up per change (control, reaction, new URL) */
	int playing;
	double pos;          /* seconds, at pos_at */
	long long pos_at_us; /* monotonic */
	struct watch_event ev[REACT_EVENTS];
	unsigned nev, next_ev;
	LIST_HEAD(, react_waiter) waiters;
	unsigned nwaiters;
};

/*
 * A JSON reaction sent, kept with its transaction: if its leg answers that it takes no such
 * body, this emoji goes again as text. Owned by its call's list; freed by the answer or with
 * the call (whose end drops the transaction without an answer).
 */
struct react_sent {
	LIST_ENTRY(react_sent) link;
	struct react_call *rc;
	char emoji[REACT_EMOJI_MAX + 1];
};

/* A call's reactions: its rate per side, the legs known to take JSON, its watch. */
struct react_call {
	LIST_HEAD(, react_sent) sent; /* JSON reactions awaiting their answer */
	double tokens[2];             /* [near, far] */
	long long stamp_us[2];
	uint32_t json_legs[REACT_JSON_LEGS];
	unsigned njson;
	struct watch *watch;
};

struct react_dtmf {
	char code[12];
	char emoji[REACT_EMOJI_MAX + 1];
	struct react_stack *rs;
};

/* The reactions' part of one stack. Owned by its hooks: freed by their stop. */
struct react_stack {
	struct sip *sip;
	int slot;
	struct react_conf conf;
	struct react_dtmf dtmf[REACT_DTMF_MAX];
	unsigned ndtmf;
	uint32_t accepts[REACT_ACCEPTS];
	unsigned next_accept;
	LIST_HEAD(, watch) watches;
	struct log_limit limited; /* reactions over the rate */
};

/* react.c */
struct react_stack *react_stack(struct sip *s);

/* watch.c */
int watch_new(struct react_stack *rs, struct react_call *rc, const char *url, char *secret,
              size_t secretlen);
void watch_url(struct watch *w, const char *url);
void watch_reaction(struct watch *w, const char *emoji, double x, double y);
void watch_end(struct watch *w);

#endif
