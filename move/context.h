/* Beside the move: a call's context (who, since when, its moves, notes, a page), meetings and
 * the resume code a call leaves behind. */
#ifndef QRXFER_MOVE_CONTEXT_H
#define QRXFER_MOVE_CONTEXT_H

#include <stddef.h>

#include "sip/sip.h"

struct move_context_conf {
	unsigned resume_ttl;           /* seconds a resume code works; 0: none is given */
	const char *meet_url_template; /* a meeting's join link, {room} in it; NULL: no meetings */
	const char *meet_conference_uri; /* a SIP conference bridge, or NULL */
	int meet_sms;                    /* join links go by SMS to a party with a number */
	int summary; /* who gets the summary and resume MESSAGEs: 0 none, 1 all, 2 auto (Allow) */
	int far_call_info; /* a resumed call's INVITE to the far party names the context page */
};

/*
 * Hook the context, meetings and resume codes into a stack after move_init() (they use the
 * move's observers and DTMF codes): ENOMEM, ENOSPC when the stack has no room left.
 */
int move_context_init(struct sip *s, const struct move_context_conf *conf);

/*
 * Turn call_id's call into a meeting: both parties are sent the join link (link gets it).
 * ENOENT: no live call; ENOTSUP: no [meet] url_template; EALREADY: it is a meeting already
 * (link gets the room's); ENOMEM.
 */
int move_meet(struct sip *s, const char *call_id, char *link, size_t len);

/*
 * Resume by link ({public_url}/r/{secret}): once the store answered, cb gets err 0 with the far
 * party and the device the code went to, ENOENT (unknown, used or expired: a wrong guess is
 * counted against source), EAGAIN (source must wait retry_after s), ENOTSUP (no resume codes or
 * store here), or another error. use 0 only reads the code (the page); use 1 takes it once and
 * calls the device, then the far party (its answer: err 0; the call goes on without the web).
 * Returns 0 (cb will run once, on the loop), or an error (cb will not run).
 */
typedef void move_resume_h(void *arg, int err, const char *far, const char *device,
                           unsigned retry_after);
int move_resume_link(struct sip *s, const char *secret, const char *source, int use,
                     move_resume_h *cb, void *arg);

#endif
