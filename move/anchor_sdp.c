/*
 * The media anchor's SDP toward each side: directions, one origin per near-side party (RFC
 * 3264 8), our own re-INVITEs; and unanchoring, where each side whose last SDP was rtpengine's
 * gets the other's own again, once the call's offer is free.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move/anchor_int.h"

/* sdp with its direction set to dir (NULL: kept); free() it. Its o= line is the anchor's to
 * set (move_anchor_for_near, reinvite_with): RFC 3264 8 wants one origin per party. */
char *move_sdp_with(const char *sdp, const char *dir)
{
	struct buf b = {0};
	const char *p = sdp;
	int had_dir = 0;

	while (p && *p) {
		size_t n = strcspn(p, "\r\n"), e = n;

		while (p[e] == '\r' || p[e] == '\n')
			e++;
		if (n == 10 && dir &&
		    (!strncmp(p, "a=sendrecv", n) || !strncmp(p, "a=sendonly", n) ||
		     !strncmp(p, "a=recvonly", n) || !strncmp(p, "a=inactive", n))) {
			buf_printf(&b, "a=%s\r\n", dir);
			had_dir = 1;
			p += e;
			continue;
		}
		buf_printf(&b, "%.*s\r\n", (int)n, p);
		p += e;
	}
	if (!had_dir && dir)
		buf_printf(&b, "a=%s\r\n", dir);
	return buf_take(&b, NULL);
}

static struct anchor_origin *origin_of(struct anchor_call *ac, struct leg *leg)
{
	struct anchor_origin *free_one = NULL;

	for (unsigned i = 0; i < ANCHOR_ORIGINS; i++) {
		if (ac->origins[i].leg == leg)
			return &ac->origins[i];
		if (!free_one && !ac->origins[i].leg)
			free_one = &ac->origins[i];
	}
	if (free_one)
		free_one->leg = leg;
	return free_one;
}

/* body (len bytes) as the near-side party leg is to get it: our one origin toward it, its
 * version up by one per change (RFC 3264 8). A string in the call's home (su_free), or NULL:
 * send body as it is. */
char *anchor_for_near(struct anchor_call *ac, struct leg *leg, const char *body, size_t len,
                      size_t *outlen)
{
	struct anchor_origin *o = ac->c ? origin_of(ac, leg) : NULL;

	return o ? sdp_origin_apply(ac->c->home, &o->o, body, len, outlen) : NULL;
}

/* Which side a message to leg to reaches: its last SDP is rtpengine's (1) or not. */
void anchor_mark_side(struct anchor_call *ac, struct leg *to, int anchored)
{
	if (to == ac->c->far)
		ac->to_far_anchored = anchored;
	else
		ac->to_near_anchored = anchored;
}

/* The answer to a re-INVITE we sent ourselves (a hold, a resume): ACK it. */
int anchor_on_invite_response(void *arg, struct call *c, struct leg *leg, int status,
                              const char *phrase, const sip_t *sip)
{
	struct anchor_call *ac = anchor_call_of(c, 0);
	unsigned i;

	if (!ac)
		return 0;
	for (i = 0; i < 2 && ac->reinvited[i] != leg; i++)
		;
	if (i == 2 || !leg)
		return 0;
	if (status < 200)
		return 1;
	ac->reinvited[i] = NULL;
	if (status < 300)
		leg_ack(leg, NULL, NULL);
	else
		LOG_INFO("media", "%s: %s answered %d %s to our re-INVITE", c->id, call_side(leg),
		         status, phrase ? phrase : "");
	return 1;
}

int move_anchor_reinvite(struct call *c, struct leg *leg, const char *sdp)
{
	struct anchor_call *ac = anchor_call_of(c, 0);

	return ac ? anchor_reinvite(ac, leg, sdp) : ENOENT;
}

int anchor_reinvite(struct anchor_call *ac, struct leg *leg, const char *sdp)
{
	struct call *c = ac->c;
	sip_payload_t *pl;
	size_t n = 0;
	char *mine;
	unsigned i;

	if (!c || !leg || leg->terminated || leg->oinv || !sdp)
		return EBUSY;
	for (i = 0; i < 2 && ac->reinvited[i] && ac->reinvited[i] != leg; i++)
		;
	if (i == 2)
		return EBUSY;
	mine = leg != c->far ? anchor_for_near(ac, leg, sdp, strlen(sdp), &n) : NULL;
	pl = sip_payload_create(c->home, mine ? mine : sdp, (isize_t)(mine ? n : strlen(sdp)));
	su_free(c->home, mine);
	if (leg == c->far)
		pl = sdp_to_far(c, pl);
	if (leg_invite(leg, NULL, pl, TAG_END()))
		return EIO;
	ac->reinvited[i] = leg;
	return 0;
}

char *move_anchor_for_near(struct call *c, struct leg *leg, const char *sdp, size_t len,
                           size_t *outlen)
{
	struct anchor_call *ac = anchor_call_of(c, 0);
	char *mine = ac && leg ? anchor_for_near(ac, leg, sdp, len, outlen) : NULL;
	char *copy = mine ? strndup(mine, *outlen) : NULL;

	if (mine)
		su_free(c->home, mine);
	return copy;
}

static void quiet_tick(su_root_magic_t *m, su_timer_t *t, void *arg);

/* Each side whose last SDP was rtpengine's gets the other's own, once the call's offer is
 * free; the number of re-INVITEs sent, or -1 while it waits. */
static int unanchor_try(struct anchor_call *ac)
{
	struct call *c = ac->c;
	int sent = 0;

	if (!c || ac->gone || !ac->unanchoring || c->state == SIP_CALL_ENDING || !c->near ||
	    !c->far) {
		ac->unanchoring = 0;
		return 0;
	}
	if (c->state != SIP_CALL_ANSWERED || c->ack_pending || c->offer_busy || c->reinvite_ack ||
	    c->near->oinv || c->far->oinv || c->near->inv || c->far->inv || ac->reinvited[0] ||
	    ac->reinvited[1] || !STAILQ_EMPTY(&ac->ops)) {
		if (++ac->quiet_tries > ANCHOR_QUIET_MAX) {
			LOG_WARN("media",
			         "%s: the call's offer stayed busy: its sides keep the "
			         "anchor's media",
			         c->id);
			ac->unanchoring = 0;
			return 0;
		}
		if (!ac->quiet)
			ac->quiet = su_timer_create(su_root_task(ac->a->s->root), ANCHOR_QUIET_MS);
		if (ac->quiet)
			su_timer_set(ac->quiet, quiet_tick, ac);
		return -1;
	}
	ac->unanchoring = 0;
	if (ac->to_far_anchored && c->near_sdp && !anchor_reinvite(ac, c->far, c->near_sdp)) {
		ac->to_far_anchored = 0;
		sent++;
	}
	if (ac->to_near_anchored && ac->far_raw && !anchor_reinvite(ac, c->near, ac->far_raw)) {
		ac->to_near_anchored = 0;
		sent++;
	}
	LOG_INFO("media", "%s: unanchored: %d side(s) re-INVITEd with the other's own media", c->id,
	         sent);
	return sent;
}

static void quiet_tick(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	unanchor_try(arg);
}

void anchor_unanchor_start(struct anchor_call *ac)
{
	if (ac->unanchoring)
		return;
	ac->unanchoring = 1;
	ac->quiet_tries = 0;
	unanchor_try(ac);
}

/* rtpengine is gone: each side gets the other's own media again, in a re-INVITE. */
int anchor_unanchor(struct anchor_call *ac)
{
	ac->state = ANCHOR_OFF;
	metric_inc(METRIC_MEDIA_UNANCHORED_TOTAL);
	ac->unanchoring = 1;
	ac->quiet_tries = 0;
	return unanchor_try(ac) > 0;
}

/* The move's re-point failed, or rtpengine is gone: the call goes on without rtpengine. */
int move_anchor_unanchor(struct call *c, const char *why)
{
	struct anchor_call *ac = anchor_call_of(c, 0);

	if (!ac || ac->state != ANCHOR_ON)
		return ENOENT;
	log_limited(&ac->a->lim, LOG_LEVEL_WARN, "media",
	            "rtpengine %s: %s: call %s goes on unanchored", ac->a->addr, why, ac->id);
	ac->to_near_anchored = ac->to_far_anchored = 1;
	return anchor_unanchor(ac) ? 0 : EAGAIN;
}

/* A leg that leaves takes what it saw of our origin with it (its address may come again). */
int anchor_on_leg_terminated(void *arg, struct call *c, struct leg *leg)
{
	struct anchor_call *ac = anchor_call_of(c, 0);

	for (unsigned i = 0; ac && i < ANCHOR_ORIGINS; i++)
		if (ac->origins[i].leg == leg)
			memset(&ac->origins[i], 0, sizeof(ac->origins[i]));
	for (unsigned i = 0; ac && i < 2; i++)
		if (ac->reinvited[i] == leg)
			ac->reinvited[i] = NULL;
	return 0;
}
