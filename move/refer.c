/* Where a code holder may have us call, and REFER out to a known phone to dial a code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/hostdomain.h>

#include "move/move_int.h"

/* Whether name is in the comma or space separated list (case does not matter). */
static int in_list(const char *list, const char *name)
{
	size_t n = strlen(name), k;

	while (list && *list) {
		list += strspn(list, ", \t");
		k = strcspn(list, ", \t");
		if (k == n && !strncasecmp(list, name, n))
			return 1;
		list += k;
	}
	return 0;
}

/*
 * Where a code holder may have us call (landing page, images, REFER out): a user at our domain,
 * reached through the upstream (*direct = 0), or at a host of [move] dial_domains, reached
 * directly (*direct = 1). An address literal or a port only where the administrator listed
 * exactly that host[:port]; never URI parameters but user=phone, or headers: the target names
 * a user, not a route. out gets the URI to dial. EPERM or EINVAL.
 */
int move_dial_target(struct sip *s, const char *target, char *out, size_t len, int *direct)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	url_t *u;
	int err = 0;

	/* A tel: number is dialled in our domain, through the PBX. */
	if (!strncasecmp(target, "tel:", 4)) {
		size_t n = strcspn(target + 4, ";");
		if (!n || n > 32 || strspn(target + 4, "+0123456789-.()") < n)
			return EINVAL;
		snprintf(out, len, "sip:%.*s@%s;user=phone", (int)n, target + 4, s->conf.domain);
		*direct = 0;
		return 0;
	}
	char hostport[300];

	u = url_make(home, target);
	if (!u || (u->url_type != url_sip && u->url_type != url_sips) || !u->url_host ||
	    !u->url_user || !*u->url_user || u->url_password)
		err = EINVAL;
	else if (u->url_headers || (u->url_params && strcasecmp(u->url_params, "user=phone")))
		err = EPERM;
	if (!err)
		snprintf(hostport, sizeof(hostport), "%s%s%s", u->url_host, u->url_port ? ":" : "",
		         u->url_port ? u->url_port : "");
	if (err)
		;
	else if (in_list(s->conf.dial_domains, hostport))
		*direct = 1;
	else if (u->url_port || host_is_ip_address(u->url_host))
		err = EPERM;
	else if (s->conf.domain && !strcasecmp(u->url_host, s->conf.domain))
		*direct = 0;
	else
		err = EPERM;
	if (!err && (size_t)snprintf(out, len, "%s", target) >= len)
		err = EINVAL;
	su_home_deinit(home);
	return err;
}

void move_refer_out_free(struct refer_out *ro)
{
	LIST_REMOVE(ro, link);
	if (ro->timer)
		su_timer_destroy(ro->timer);
	if (ro->orq)
		nta_outgoing_destroy(ro->orq);
	if (ro->dlg)
		nta_leg_destroy(ro->dlg);
	if (ro->cb)
		ro->cb(ETIMEDOUT, NULL, ro->cb_arg);
	free(ro);
}

static void refer_out_expired(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	move_refer_out_free(arg);
}

/* The phone's answer to our REFER. */
static int refer_answered(void *arg, nta_outgoing_t *orq, const sip_t *sip)
{
	struct refer_out *ro = arg;
	struct sip *s = ro->sip;
	int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
	struct move *m;
	struct sip_move_info info;

	if (status < 200)
		return 0;
	nta_outgoing_destroy(orq);
	ro->orq = NULL;
	m = move_by_id(s, ro->move_id);
	if (m)
		move_event(m, "refer", "the phone answered %d to the REFER", status);
	if (status < 300 && sip && sip->sip_to && sip->sip_to->a_tag) {
		nta_leg_rtag(ro->dlg, sip->sip_to->a_tag);
		nta_leg_client_reroute(ro->dlg, sip->sip_record_route, sip->sip_contact, 1);
	}
	if (ro->cb) {
		if (m)
			move_info_fill(m, &info);
		ro->cb(status < 300 ? 0 : EPROTO, status < 300 && m ? &info : NULL, ro->cb_arg);
		ro->cb = NULL;
	}
	if (status >= 300)
		move_refer_out_free(ro);
	return 0;
}

/* A NOTIFY in the REFER's subscription: how the phone's call to the code goes. */
static int refer_request(void *arg, nta_leg_t *dlg, nta_incoming_t *irq, const sip_t *sip)
{
	struct refer_out *ro = arg;
	const sip_subscription_state_t *ss = sip->sip_subscription_state;

	if (sip->sip_request->rq_method == sip_method_ack) {
		nta_incoming_destroy(irq);
		return 0;
	}
	if (sip->sip_request->rq_method != sip_method_notify)
		return 405;
	sip_reply(irq, SIP_200_OK, TAG_END());
	if (ss && ss->ss_substate && !strcasecmp(ss->ss_substate, "terminated"))
		move_refer_out_free(ro);
	return 0;
}

int sip_move_refer(struct sip *s, const char *move_id, const char *target, sip_move_h *cb,
                   void *arg)
{
	struct move_stack *ms = move_stack(s);
	struct move *m = move_by_id(s, move_id);
	struct refer_out *ro;
	char refer_to[256], uri[320], from[300];
	int direct = 0, err;

	if (!m)
		return ENOENT;
	if (m->phase != MOVE_OFFERED)
		return EALREADY;
	if (strncasecmp(target, "sip:", 4) && strncasecmp(target, "sips:", 5))
		return EINVAL;
	err = move_dial_target(s, target, uri, sizeof(uri), &direct);
	if (err)
		return err;
	target = uri;
	ro = calloc(1, sizeof(*ro));
	if (!ro)
		return ENOMEM;
	ro->sip = s;
	LIST_INSERT_HEAD(&ms->refers, ro, link);
	ro->cb = cb;
	ro->cb_arg = arg;
	snprintf(ro->move_id, sizeof(ro->move_id), "%s", m->id);
	snprintf(refer_to, sizeof(refer_to), "<sip:m.%s@%s>", m->token, s->conf.domain);
	snprintf(from, sizeof(from), "<sip:move@%s>", s->conf.domain);
	ro->timer = su_timer_create(su_root_task(s->root), 0);
	ro->dlg = nta_leg_tcreate(s->nta, refer_request, ro, SIPTAG_FROM_STR(from),
	                          SIPTAG_TO_STR(target), TAG_END());
	if (ro->dlg && !direct)
		nta_leg_client_route(ro->dlg, (sip_record_route_t *)s->upstream_rt, NULL);
	if (ro->dlg && nta_leg_tag(ro->dlg, NULL))
		ro->orq =
		    nta_outgoing_tcreate(ro->dlg, refer_answered, ro, NULL, SIP_METHOD_REFER,
		                         URL_STRING_MAKE(target), SIPTAG_REFER_TO_STR(refer_to),
		                         SIPTAG_CONTACT(b2bua_contact(s, 0, 0)), TAG_END());
	if (!ro->orq || !ro->timer) {
		ro->cb = NULL;
		move_refer_out_free(ro);
		return ENOMEM;
	}
	su_timer_set_interval(ro->timer, refer_out_expired, ro, MOVE_REFER_HOLD);
	move_event(m, "refer", "REFER to %s to dial the code", target);
	return 0;
}
