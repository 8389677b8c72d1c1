/*
 * Reactions and watch-together beside the move (issue 14): a party's reaction (an emoji at a
 * position) reaches the other party and the call's watch page; a party's "share <https URL>"
 * gives both a link to /w/{secret}, a page that plays the video in sync for all on it.
 */
#ifndef QRXFER_MOVE_REACT_H
#define QRXFER_MOVE_REACT_H

#include <stddef.h>

#include "sip/sip.h"

/* The reaction's media type: {"emoji": "…", "x": 0..1, "y": 0..1}. */
#define REACT_CTYPE "application/vnd.qrxfer.reaction+json"

#define REACT_BODY_MAX  256  /* a reaction's body, bytes */
#define REACT_EMOJI_MAX 32   /* an emoji's UTF-8 bytes (a ZWJ family fits) */
#define REACT_URL_MAX   1024 /* a shared URL's bytes */

struct react_conf {
	const char *dtmf;      /* "*1=👍,*2=👏": DTMF codes that send a reaction; "" none */
	unsigned rate, burst;  /* reactions a second per call and side, and the burst */
	unsigned listeners;    /* long polls waiting on one watch page at once */
	unsigned per_address;  /* of them from one address (IPv6: its /64) */
	unsigned poll_secs;    /* how long a poll waits for news before it is answered */
	const char *conf_path; /* the config file, for error lines (kept) */
};

/*
 * Hook reactions and watch-together into a stack (after move_init()): MESSAGEs of
 * REACT_CTYPE and "share <URL>" in a call, the DTMF codes of conf->dtmf. EINVAL (logged,
 * naming the entry) for a bad dtmf map, ENOMEM, ENOSPC.
 */
int react_init(struct sip *s, const struct react_conf *conf);

/* Checks conf (the dtmf map, and its codes against the move's feature code) before anything
 * starts: 0, or EINVAL with a line naming the file and the key logged. */
int react_conf_check(const struct react_conf *conf, const char *move_feature);

/*
 * Parses one reaction body: 0, or EINVAL with why ("x is not a number in [0,1]"). emoji gets
 * REACT_EMOJI_MAX + 1 bytes.
 */
int react_parse(const char *body, size_t len, char *emoji, double *x, double *y, char *why,
                size_t whylen);

/* Whether text is one emoji grapheme (a base, its modifiers, ZWJ sequences, a flag, a keycap). */
int react_emoji_ok(const char *text, size_t len);

/* Whether url may be shared: https only, no credentials, bounded; 0 or EINVAL with why. */
int react_url_ok(const char *url, char *why, size_t whylen);

/*
 * Share url in the live call call_id (the admin API): both parties get a MESSAGE with the
 * watch page's link; link gets it ("" without a [http] public_url: then path). ENOENT no such
 * call, EINVAL bad URL (why), ENOTCONN the call is not answered.
 */
int react_share(struct sip *s, const char *call_id, const char *url, char *link, size_t linklen,
                char *why, size_t whylen);

/* ---- the watch page (web/watch.c) ---- */

struct react_waiter;

/* The page's news as JSON text (len bytes; the watch's, valid during the call: copy it), or
 * err: ENOENT the watch is gone. */
typedef void react_watch_h(int err, const char *json, size_t len, void *arg);

/* 0 when secret names a live watch, else ENOENT. */
int react_watch_exists(struct sip *s, const char *secret);

/*
 * The watch's state once it has news after since (at once when it has, or after
 * [react] poll_secs without). 0 (cb called or to be called; *wp is the waiter to cancel while
 * it waits, NULL once answered), ENOENT, EMLINK (too many listeners on the watch), EUSERS (too
 * many from this address: key is the peer's address key).
 */
int react_watch_poll(struct sip *s, const char *secret, unsigned long since, const char *key,
                     react_watch_h *cb, void *arg, struct react_waiter **wp);

/* The request of a waiter went away: forget it (cb is not called). */
void react_watch_cancel(struct react_waiter *w);

/* play, pause or seek (pos seconds) for everyone on the watch: ENOENT, EINVAL (why). */
int react_watch_control(struct sip *s, const char *secret, const char *action, double pos,
                        char *why, size_t whylen);

#endif
