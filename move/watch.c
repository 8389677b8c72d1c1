/*
 * Watch-together pages (issue 14): one per call whose party shared a URL, named by a 128-bit
 * secret kept only as its SHA-256. The server holds what plays (URL, playing or paused, the
 * position at a time) and the last reactions; pages long-poll for news (web/watch.c defers
 * the request, so nothing waits on the loop) and send play, pause and seek, which every page
 * then follows. It lives as long as its call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "move/move_int.h"
#include "move/react_int.h"

#define WATCH_POS_MAX 86400.0    /* seconds: a seek past a day is refused */
#define WATCH_SHOW_US 10000000LL /* a reaction is news to a page that arrives this soon after */

static double pos_now(const struct watch *w, long long now)
{
	return w->pos + (w->playing ? (double)(now - w->pos_at_us) / 1e6 : 0);
}

/* What a page is told: the state now and the reactions after since. */
static char *state_json(struct watch *w, unsigned long since)
{
	long long now = move_now_us();
	json_t *o, *a = json_array();
	char *text;

	for (unsigned i = 0; i < w->nev; i++) {
		const struct watch_event *e =
		    &w->ev[(w->next_ev + REACT_EVENTS - w->nev + i) % REACT_EVENTS];

		if (e->seq > since && now - e->at_us < WATCH_SHOW_US)
			json_array_append_new(a, json_pack("{s:I,s:s,s:f,s:f}", "seq",
			                                   (json_int_t)e->seq, "emoji", e->emoji,
			                                   "x", e->x, "y", e->y));
	}
	o = json_pack("{s:I,s:s,s:b,s:f,s:o}", "seq", (json_int_t)w->seq, "url", w->url, "playing",
	              w->playing, "pos", pos_now(w, now), "reactions", a);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

/* Answers rw with json (NULL: err, or ENOMEM) and forgets it. */
static void waiter_answer(struct react_waiter *rw, int err, const char *json)
{
	struct watch *w = rw->w;
	react_watch_h *cb = rw->cb;
	void *arg = rw->arg;

	LIST_REMOVE(rw, link);
	w->nwaiters--;
	su_timer_destroy(rw->timer);
	free(rw);
	cb(err ? err : json ? 0 : ENOMEM, json, json ? strlen(json) : 0, arg);
}

/*
 * Every page waiting hears the news: the state is packed once for all of them (they all
 * wait on the seq before this change, and hear the same moment), not once per waiter.
 */
static void news(struct watch *w)
{
	unsigned long since = w->seq;
	char *json = NULL;

	w->seq++;
	if (!LIST_EMPTY(&w->waiters))
		json = state_json(w, since);
	while (!LIST_EMPTY(&w->waiters)) {
		struct react_waiter *rw = LIST_FIRST(&w->waiters);

		if (rw->since != since) { /* none: a waiter's since is clamped to the seq */
			char *own = state_json(w, rw->since);

			waiter_answer(rw, 0, own);
			free(own);
		} else {
			waiter_answer(rw, 0, json);
		}
	}
	free(json);
}

static void waited_out(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct react_waiter *rw = arg;
	char *json = state_json(rw->w, rw->since);

	waiter_answer(rw, 0, json);
	free(json);
}

int watch_new(struct react_stack *rs, struct react_call *rc, const char *url, char *secret,
              size_t secretlen)
{
	struct watch *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return ENOMEM;
	err = code_secret_make(secret, secretlen);
	if (!err)
		err = code_secret_hash(secret, w->hash);
	if (err) {
		free(w);
		return EIO;
	}
	w->rs = rs;
	w->rc = rc;
	snprintf(w->url, sizeof(w->url), "%s", url);
	w->seq = 1;
	w->pos_at_us = move_now_us();
	LIST_INIT(&w->waiters);
	LIST_INSERT_HEAD(&rs->watches, w, link);
	rc->watch = w;
	return 0;
}

void watch_url(struct watch *w, const char *url)
{
	snprintf(w->url, sizeof(w->url), "%s", url);
	w->playing = 0;
	w->pos = 0;
	w->pos_at_us = move_now_us();
	news(w);
}

void watch_reaction(struct watch *w, const char *emoji, double x, double y)
{
	struct watch_event *e = &w->ev[w->next_ev];

	w->next_ev = (w->next_ev + 1) % REACT_EVENTS;
	if (w->nev < REACT_EVENTS)
		w->nev++;
	e->seq = w->seq + 1; /* news() makes it the watch's */
	snprintf(e->emoji, sizeof(e->emoji), "%s", emoji);
	e->x = x;
	e->y = y;
	e->at_us = move_now_us();
	news(w);
}

void watch_end(struct watch *w)
{
	while (!LIST_EMPTY(&w->waiters))
		waiter_answer(LIST_FIRST(&w->waiters), ENOENT, NULL);
	LIST_REMOVE(w, link);
	if (w->rc)
		w->rc->watch = NULL;
	OPENSSL_cleanse(w->hash, sizeof(w->hash));
	free(w);
}

static struct watch *watch_find(struct sip *s, const char *secret)
{
	struct react_stack *rs = react_stack(s);
	uint8_t hash[CODE_HASH_LEN];
	struct watch *w;

	if (!rs || !secret || code_secret_hash(secret, hash))
		return NULL;
	LIST_FOREACH(w, &rs->watches, link)
	if (!CRYPTO_memcmp(w->hash, hash, sizeof(hash)))
		return w;
	return NULL;
}

int react_watch_exists(struct sip *s, const char *secret)
{
	return watch_find(s, secret) ? 0 : ENOENT;
}

int react_watch_poll(struct sip *s, const char *secret, unsigned long since, const char *key,
                     react_watch_h *cb, void *arg, struct react_waiter **wp)
{
	struct watch *w = watch_find(s, secret);
	struct react_waiter *rw;
	unsigned mine = 0;
	char *json;

	*wp = NULL;
	if (!w)
		return ENOENT;
	if (w->seq > since) {
		json = state_json(w, since);
		cb(json ? 0 : ENOMEM, json, json ? strlen(json) : 0, arg);
		free(json);
		return 0;
	}
	since = w->seq; /* a page ahead of the watch waits for the next change like the rest */
	if (w->nwaiters >= w->rs->conf.listeners)
		return EMLINK;
	LIST_FOREACH(rw, &w->waiters, link)
	mine += !strcmp(rw->key, key);
	if (mine >= w->rs->conf.per_address)
		return EUSERS;
	rw = calloc(1, sizeof(*rw));
	if (!rw)
		return ENOMEM;
	rw->timer = su_timer_create(su_root_task(s->root), w->rs->conf.poll_secs * 1000);
	if (!rw->timer || su_timer_set(rw->timer, waited_out, rw) < 0) {
		su_timer_destroy(rw->timer);
		free(rw);
		return ENOMEM;
	}
	rw->w = w;
	rw->since = since;
	snprintf(rw->key, sizeof(rw->key), "%s", key);
	rw->cb = cb;
	rw->arg = arg;
	LIST_INSERT_HEAD(&w->waiters, rw, link);
	w->nwaiters++;
	*wp = rw;
	return 0;
}

void react_watch_cancel(struct react_waiter *rw)
{
	if (!rw)
		return;
	LIST_REMOVE(rw, link);
	rw->w->nwaiters--;
	su_timer_destroy(rw->timer);
	free(rw);
}

int react_watch_control(struct sip *s, const char *secret, const char *action, double pos,
                        char *why, size_t whylen)
{
	struct watch *w = watch_find(s, secret);
	long long now = move_now_us();

	if (!w) {
		snprintf(why, whylen, "no such watch page");
		return ENOENT;
	}
	if (!strcmp(action, "play") || !strcmp(action, "pause")) {
		w->pos = pos_now(w, now);
		w->playing = !strcmp(action, "play");
	} else if (!strcmp(action, "seek")) {
		if (!(pos >= 0 && pos <= WATCH_POS_MAX)) {
			snprintf(why, whylen, "pos is not a number of seconds in [0,%g]",
			         WATCH_POS_MAX);
			return EINVAL;
		}
		w->pos = pos;
	} else {
		snprintf(why, whylen, "action is not play, pause or seek");
		return EINVAL;
	}
	w->pos_at_us = now;
	news(w);
	return 0;
}
