/* Internal to move/anchor*.c: the media anchor's state (anchor.c: the ng requests and the
 * hooks; anchor_sdp.c: the SDP each side gets, and unanchoring). */
#ifndef QRXFER_MOVE_ANCHOR_INT_H
#define QRXFER_MOVE_ANCHOR_INT_H

#include "media/ng.h"
#include "move/move_int.h"

#define ANCHOR_TIMEOUT_MS 300 /* a try; with the retries below ~1.2 s before a call goes on */
#define ANCHOR_RETRIES    3
#define ANCHOR_PING_MS    2000
#define ANCHOR_QUIET_MS   100 /* an unanchoring re-INVITE waits for the call's offer to be free */
#define ANCHOR_QUIET_MAX  100
#define ANCHOR_ORIGINS    3 /* near-side parties a call's origins are kept for: A, B, spare */

#define TAG_NEAR "near"
#define TAG_FAR  "far"

enum anchor_state { ANCHOR_NONE, ANCHOR_ON, ANCHOR_OFF };

/* One ng request of a call: for a held SIP message (w), or the move's own (cb). */
struct anchor_op {
	STAILQ_ENTRY(anchor_op) link;
	struct sip_sdp_wait *w;
	const char *command; /* offer, answer, query */
	const char *from_tag, *to_tag;
	char *body; /* the SDP, or NULL */
	size_t len;
	move_anchor_h *cb;
	void *arg;
	unsigned paired : 1; /* a re-point's offer: its answer is the next op */
};

/* What one near-side party (A, or the move's B) has seen of our o= line (RFC 3264 8). */
struct anchor_origin {
	struct leg *leg;
	struct sdp_origin o; /* in the call's home */
};

/* A call's anchor. Owned by the call's slot; freed at its call_gone, or once the ng request in
 * flight then is answered (gone: its call is freed, the session is deleted). */
struct anchor_call {
	struct anchor *a;
	struct call *c; /* NULL once gone */
	char id[33];    /* the call's id, kept for a late delete */
	LIST_ENTRY(anchor_call) link;
	enum anchor_state state;
	char *far_raw;                /* the far party's last SDP, as it came */
	char *to_near;                /* rtpengine's last SDP for the near device */
	const char *offerer;          /* the tag whose offer waits for its answer */
	STAILQ_HEAD(, anchor_op) ops; /* the first is in flight */
	struct leg *reinvited[2];     /* legs we re-INVITEd ourselves: we ACK their 2xx */
	struct ng_req *req;
	struct anchor_origin origins[ANCHOR_ORIGINS];
	su_timer_t *quiet; /* unanchoring: waits for the offer in flight to be over */
	unsigned quiet_tries;
	int send_err; /* ng_send failed: on_reply runs on the loop's next turn */
	unsigned in_reply : 1, gone : 1;
	unsigned sent : 1; /* an offer went to rtpengine: it may hold a session */
	unsigned to_near_anchored : 1, to_far_anchored : 1; /* the last SDP each side got was
	                                                       rtpengine's */
	unsigned unanchoring : 1; /* each side is to get the other's own SDP again */
};

struct anchor {
	struct sip *s;
	struct ng *ng;
	char *addr;
	int slot;
	unsigned verify_ms, undo_secs;
	LIST_HEAD(, anchor_call) calls;
	su_timer_t *ping;
	struct ng_req *ping_req;
	struct soon *soon; /* ng_send failures, answered on the loop's next turn */
	unsigned down : 1;
	struct log_limit lim;
};

extern struct anchor *anchor_the;

/* anchor.c */
struct anchor_call *anchor_call_of(struct call *c, int make);
void anchor_send_delete(struct anchor *a, const char *call_id);

/* anchor_sdp.c */
char *anchor_for_near(struct anchor_call *ac, struct leg *leg, const char *body, size_t len,
                      size_t *outlen);
void anchor_mark_side(struct anchor_call *ac, struct leg *to, int anchored);
int anchor_reinvite(struct anchor_call *ac, struct leg *leg, const char *sdp);
int anchor_on_invite_response(void *arg, struct call *c, struct leg *leg, int status,
                              const char *phrase, const sip_t *sip);
int anchor_on_leg_terminated(void *arg, struct call *c, struct leg *leg);
void anchor_unanchor_start(struct anchor_call *ac);
int anchor_unanchor(struct anchor_call *ac);

#endif
