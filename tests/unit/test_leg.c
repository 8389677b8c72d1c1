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
