/*
 * sip/state.c: a leg's dialog written out and read back on a real nta agent (loopback, no
 * packet sent): the same Call-ID, tags, CSeqs, route set and target, and requests of that
 * dialog find the new leg.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sofia-sip/su.h>

#include "sip/b2bua.h"
#include "tests/unit/leakcheck.h"

static su_root_t *root;
static struct sip *s;

static void setup(void)
{
	/* Criterion runs tests in parallel processes: each binds its own port (nothing is ever
	 * sent; the upstream's port is only a name). */
	char listen[64];
	struct sip_conf conf = {
	    .listen = listen,
	    .upstream = "sip:127.0.0.1:28962",
	    .domain = "qrxfer.test",
	};

	snprintf(listen, sizeof(listen), "sip:127.0.0.1:%d", 40000 + (int)(getpid() % 4000) * 2);
	su_init();
	root = su_root_create(NULL);
	cr_assert_not_null(root);
	cr_assert_eq(sip_alloc(&s, root, &conf), 0, "the stack starts on loopback");
}

static void teardown(void)
{
	sip_free(s);
	su_root_destroy(root);
	su_deinit();
	leakcheck();
}

TestSuite(leg_state, .init = setup, .fini = teardown);

/* A far leg as a dialled and answered one looks: our tag, theirs, a route set, a target. */
static struct leg *answered_leg(struct call *c)
{
	url_t *target = url_make(c->home, "sip:carol@127.0.0.1:28970");
	sip_from_t *from = sip_from_make(c->home, "<sip:alice@qrxfer.test>");
	sip_to_t *to = sip_to_make(c->home, "<sip:carol@qrxfer.test>");
	sip_record_route_t *rr = sip_record_route_make(c->home, "<sip:127.0.0.1:28963;lr>");
	sip_contact_t *m = sip_contact_make(c->home, "<sip:carol@127.0.0.1:28971>");
	struct leg *leg = leg_dial(c, 0, target, from, to, 1);

	cr_assert_not_null(leg);
	nta_leg_rtag(leg->dlg, "carol-tag");
	nta_leg_client_reroute(leg->dlg, rr, m, 1);
	leg->answered = 1;
	return leg;
}

Test(leg_state, round_trip)
{
	struct call *c1, *c2;
	struct leg *leg, *back;
	struct leg_state st, st2;

	cr_assert_eq(call_alloc(&c1, s), 0);
	leg = answered_leg(c1);
	cr_assert_eq(leg_state_get(leg, &st), 0);
	cr_expect_str_eq(st.call_id, leg->call_id);
	cr_expect_str_eq(st.rtag, "carol-tag");
	cr_expect(st.ltag[0], "our tag is written out");
	cr_expect_str_eq(st.target, "sip:carol@127.0.0.1:28971");
	cr_expect(strstr(st.route, "127.0.0.1:28963") != NULL, "route set %s", st.route);
	cr_expect(st.answered && !st.incoming && !st.near);

	/* The old leg goes (a restart); the dialog is rebuilt in another call. */
	leg_release(leg);
	cr_expect_null(leg_by_dialog(s, st.call_id, st.ltag, st.rtag));
	cr_assert_eq(call_alloc(&c2, s), 0);
	back = leg_restore(c2, &st);
	cr_assert_not_null(back);
	cr_assert_eq(leg_state_get(back, &st2), 0);
	cr_expect_str_eq(st2.call_id, st.call_id);
	cr_expect_str_eq(st2.ltag, st.ltag);
	cr_expect_str_eq(st2.rtag, st.rtag);
	cr_expect_eq(st2.lseq, st.lseq);
	cr_expect_eq(st2.rseq, st.rseq);
	cr_expect_str_eq(st2.route, st.route);
	cr_expect_str_eq(st2.target, st.target);
	cr_expect_str_eq(st2.local, st.local);
	cr_expect_str_eq(st2.remote, st.remote);
	cr_expect(st2.answered);
	/* A request of that dialog (our tag local, theirs remote) finds the rebuilt leg. */
	cr_expect_eq(leg_by_dialog(s, st.call_id, st.ltag, st.rtag), back);
	cr_expect_null(leg_by_dialog(s, st.call_id, st.ltag, "someone-else"));
}

Test(leg_state, too_long_is_refused)
{
	struct call *c;
	struct leg *leg;
	struct leg_state st;
	char big[600];

	cr_assert_eq(call_alloc(&c, s), 0);
	leg = answered_leg(c);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	leg->remote = su_sprintf(c->home, "<sip:%s@qrxfer.test>", big);
	cr_expect_eq(leg_state_get(leg, &st), ENOSPC, "a field that does not fit is an error");
}

/* An answered call of two dialled legs, as the store would see it. */
static struct call *answered_call(void)
{
	struct call *c;

	cr_assert_eq(call_alloc(&c, s), 0);
	c->far = answered_leg(c);
	c->near = answered_leg(c);
	c->near->near = 1;
	c->in = c->near;
	c->out = c->far;
	c->state = SIP_CALL_ANSWERED;
	c->created = 1000;
	c->answered = 1001;
	c->far_origin = su_strdup(c->home, "alice 123");
	c->far_origin_tail = su_strdup(c->home, "IN IP4 127.0.0.1");
	c->far_version = 7;
	c->far_body = su_strdup(c->home, "v=0\r\no=alice 123 7 IN IP4 127.0.0.1\r\n");
	c->near_sdp = su_strdup(c->home, "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\n");
	return c;
}

Test(leg_state, call_round_trip)
{
	struct call *c1 = answered_call(), *c2 = NULL;
	struct leg_state near1, far1, near2, far2;
	char why[160] = "";
	char *text = call_state_dump(c1);

	cr_assert_not_null(text, "an answered call has a state");
	/* As if each dialog had carried 5 requests of ours (none was sent here). */
	for (char *p = text; (p = strstr(p, "\"lseq\":0,"));)
		p[7] = '5';
	cr_assert_eq(leg_state_get(c1->near, &near1), 0);
	cr_assert_eq(leg_state_get(c1->far, &far1), 0);
	/* The old process is gone: its dialogs are no longer in nta. */
	leg_release(c1->near);
	leg_release(c1->far);
	cr_assert_eq(
	    call_state_load(s, "0123456789abcdef0123456789abcdef", text, &c2, why, sizeof(why)), 0,
	    "read back: %s", why);
	free(text);
	cr_assert_not_null(c2);
	cr_expect_str_eq(c2->id, "0123456789abcdef0123456789abcdef");
	cr_expect_eq(c2->state, SIP_CALL_ANSWERED);
	cr_expect_eq(c2->in, c2->near);
	cr_expect_eq(c2->out, c2->far);
	cr_expect(c2->near->near && !c2->far->near);
	cr_expect_eq(c2->created, 1000);
	cr_expect_eq(c2->far_version, 7);
	cr_expect_str_eq(c2->far_origin, "alice 123");
	cr_expect_str_eq(c2->far_body, c1->far_body);
	cr_expect_str_eq(c2->near_sdp, c1->near_sdp);
	cr_assert_eq(leg_state_get(c2->near, &near2), 0);
	cr_assert_eq(leg_state_get(c2->far, &far2), 0);
	cr_expect_str_eq(near2.call_id, near1.call_id);
	cr_expect_str_eq(far2.ltag, far1.ltag);
	cr_expect_str_eq(far2.rtag, far1.rtag);
	cr_expect_str_eq(far2.route, far1.route);
	cr_expect_str_eq(far2.target, far1.target);
	/* Our CSeq goes on past what may have been sent after the last write. */
	cr_expect_gt(far2.lseq, 5);
	cr_expect_gt(near2.lseq, 5);
	cr_expect_eq(leg_by_dialog(s, far1.call_id, far1.ltag, far1.rtag), c2->far);
	cr_expect_eq(leg_by_dialog(s, near1.call_id, near1.ltag, near1.rtag), c2->near);
	cr_expect(!c2->ack_pending, "its ACK had come");
	cr_expect_eq(c2->far->ack_cseq, 0);
}

/* Written while the answer waited for the caller's ACK: read back, that ACK is still owed to
 * the far side, for the INVITE the previous run sent, on a transaction of its own. */
Test(leg_state, call_read_back_before_its_ack)
{
	struct call *c1 = answered_call(), *c2 = NULL;
	char why[160] = "";
	char *text;

	c1->ack_pending = 1;
	c1->far->ack_cseq = 4711;
	text = call_state_dump(c1);
	cr_assert_not_null(text);
	cr_expect_not_null(strstr(text, "\"ack_cseq\":4711"), "%s", text);
	leg_release(c1->near);
	leg_release(c1->far);
	cr_assert_eq(
	    call_state_load(s, "0123456789abcdef0123456789abcdef", text, &c2, why, sizeof(why)), 0,
	    "read back: %s", why);
	free(text);
	cr_expect(c2->ack_pending);
	cr_expect_eq(c2->out, c2->far);
	cr_expect_eq(c2->far->ack_cseq, 4711);
	cr_expect(c2->far->ack_own_branch);
	cr_expect(!c2->near->ack_own_branch);
}

Test(leg_state, bad_call_state_is_refused)
{
	struct call *c1 = answered_call(), *c2 = NULL;
	char why[160];
	char *text = call_state_dump(c1);
	char *p;

	cr_assert_not_null(text);
	why[0] = 0;
	cr_expect_eq(call_state_load(s, c1->id, text, &c2, why, sizeof(why)), EEXIST,
	             "a call served here already is not read twice");
	why[0] = 0;
	cr_expect_eq(call_state_load(s, "a1", "{\"v\":1", &c2, why, sizeof(why)), EINVAL);
	cr_expect(why[0], "the reason is named");
	why[0] = 0;
	cr_expect_eq(call_state_load(s, "a2", "[]", &c2, why, sizeof(why)), EINVAL);
	cr_expect(why[0]);
	/* Another version of the format is not guessed at. */
	p = strstr(text, "\"v\":1");
	cr_assert_not_null(p);
	p[4] = '9';
	why[0] = 0;
	cr_expect_eq(call_state_load(s, "a3", text, &c2, why, sizeof(why)), EINVAL);
	cr_expect(strstr(why, "version") != NULL, "why: %s", why);
	p[4] = '1';
	/* A dialog without its tags cannot be served. */
	p = strstr(text, "\"rtag\":\"carol-tag\"");
	cr_assert_not_null(p);
	memcpy(p, "\"rtag\":\"\"         ", 18);
	why[0] = 0;
	cr_expect_eq(call_state_load(s, "a4", text, &c2, why, sizeof(why)), EINVAL);
	cr_expect(why[0]);
	cr_expect_null(call_find(s, "a4"), "nothing of a refused call stays");
	free(text);
	/* An ACK owed for a CSeq no INVITE can have. */
	c1->ack_pending = 1;
	c1->far->ack_cseq = 1000000000;
	text = call_state_dump(c1);
	cr_assert_not_null(text);
	p = strstr(text, "\"ack_cseq\":1000000000");
	cr_assert_not_null(p);
	p[11] = '9'; /* 9,000,000,000: past 2^31 - 1 */
	why[0] = 0;
	cr_expect_eq(call_state_load(s, "a5", text, &c2, why, sizeof(why)), EINVAL);
	cr_expect(strstr(why, "ack_cseq") != NULL, "why: %s", why);
	cr_expect_null(call_find(s, "a5"));
	free(text);
}

/* sip/sdp.c: one origin toward a party (RFC 3264 8), whoever made the SDP: the first sets it,
 * later ones keep its user and session id, the version up by one only when the session
 * changed. The media anchor sends A and B rtpengine's SDP (the far party's o= line) and its own
 * holds: A must see one session whose version goes up, never the far party's. */
Test(sdp_origin, one_session_toward_a_party)
{
	su_home_t *home = su_home_new(sizeof(su_home_t));
	struct sdp_origin o = {0};
	const char *first = "v=0\r\no=far 111 5 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.9\r\n"
	                    "m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";
	const char *hold = "v=0\r\no=far 111 5 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.9\r\n"
	                   "m=audio 4000 RTP/AVP 0\r\na=inactive\r\n";
	/* the far party's own next version, as rtpengine relays it: the same number we used */
	const char *far6 = "v=0\r\no=far 111 6 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.9\r\n"
	                   "m=audio 4002 RTP/AVP 0\r\na=sendrecv\r\n";
	const char *other = "v=0\r\no=rtpe 999 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.9\r\n"
	                    "m=audio 4004 RTP/AVP 0\r\na=sendrecv\r\n";
	size_t n = 0;
	char *out;

	cr_assert_not_null(home);
	cr_assert_null(sdp_origin_apply(home, &o, first, strlen(first), &n),
	               "the first goes as is");
	cr_assert_str_eq(o.origin, "far 111");
	out = sdp_origin_apply(home, &o, hold, strlen(hold), &n);
	cr_assert_not_null(out);
	cr_assert_eq(n, strlen(out));
	cr_assert(strstr(out, "o=far 111 6 IN IP4 10.0.0.1\r\n"), "a change: version 6: %s", out);
	cr_assert(strstr(out, "a=inactive"));
	out = sdp_origin_apply(home, &o, hold, strlen(hold), &n);
	cr_assert(strstr(out, "o=far 111 6 IN IP4"), "no change: the version stays: %s", out);
	out = sdp_origin_apply(home, &o, far6, strlen(far6), &n);
	cr_assert(strstr(out, "o=far 111 7 IN IP4"), "the far side's 6 is our 7 here: %s", out);
	out = sdp_origin_apply(home, &o, other, strlen(other), &n);
	cr_assert(strstr(out, "o=far 111 8 IN IP4 10.0.0.1\r\n"), "another origin is ours: %s",
	          out);
	cr_assert_null(strstr(out, "rtpe 999"));
	cr_assert(strstr(out, "m=audio 4004"));
	cr_assert_null(sdp_origin_apply(home, &o, "v=0\r\n", 5, &n), "no o= line: as it came");
	su_home_unref(home);
}
