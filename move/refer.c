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
	if (ro->nh) {
		nua_handle_bind(ro->nh, NULL);
		nua_handle_destroy(ro->nh);
	}
	if (ro->cb)
		ro->cb(ETIMEDOUT, NULL, ro->cb_arg);
	free(ro);
}

static void refer_out_expired(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	move_refer_out_free(arg);
}

int sip_move_refer(struct sip *s, const char *move_id, const char *target, sip_move_h *cb,
                   void *arg)
{
	struct move_stack *ms = move_stack(s);
	struct move *m = move_by_id(s, move_id);
	struct refer_out *ro;
	char refer_to[256], uri[320];
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
	ro->b.kind = BOUND_HOOK;
	ro->b.hook_kind = MOVE_BOUND_REFER;
	ro->sip = s;
	LIST_INSERT_HEAD(&ms->refers, ro, link);
	ro->cb = cb;
	ro->cb_arg = arg;
	snprintf(ro->move_id, sizeof(ro->move_id), "%s", m->id);
	snprintf(refer_to, sizeof(refer_to), "<sip:m.%s@%s>", m->token, s->conf.domain);
	ro->timer = su_timer_create(su_root_task(s->root), 0);
	ro->nh = nua_handle(s->nua, &ro->b, NUTAG_URL(target), SIPTAG_TO_STR(target),
	                    TAG_IF(!direct, NUTAG_INITIAL_ROUTE_STR(s->upstream_route)), TAG_END());
	if (!ro->nh || !ro->timer) {
		ro->cb = NULL;
		move_refer_out_free(ro);
		return ENOMEM;
	}
	su_timer_set_interval(ro->timer, refer_out_expired, ro, MOVE_REFER_HOLD);
	move_event(m, "refer", "REFER to %s to dial the code", target);
	nua_refer(ro->nh, SIPTAG_REFER_TO_STR(refer_to), TAG_END());
	return 0;
}

void move_bound_event(struct sip *s, nua_event_t ev, int status, const char *phrase,
                      nua_handle_t *nh, struct bound *b, const sip_t *sip, tagi_t tags[])
{
	if (b->hook_kind == MOVE_BOUND_REDEEM) {
		struct redeem *r = (struct redeem *)b;
		if (ev == nua_i_cancel)
			r->cancelled = 1;
		else if (ev == nua_i_state) {
			int cs = -1;
			tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
			if (cs == nua_callstate_terminated)
				r->cancelled = 1;
		}
		return;
	}
	if (b->hook_kind == MOVE_BOUND_REFER) {
		struct refer_out *ro = (struct refer_out *)b;
		if (ev == nua_r_refer && status >= 200) {
			struct move *m = move_by_id(s, ro->move_id);
			struct sip_move_info info;
			if (m)
				move_event(m, "refer", "the phone answered %d to the REFER",
				           status);
			if (ro->cb) {
				if (m)
					move_info_fill(m, &info);
				ro->cb(status < 300 ? 0 : EPROTO, status < 300 && m ? &info : NULL,
				       ro->cb_arg);
				ro->cb = NULL;
			}
			if (status >= 300)
				move_refer_out_free(ro);
		} else if (ev == nua_i_notify) {
			int ss = -1;
			tl_gets(tags, NUTAG_SUBSTATE_REF(ss), TAG_END());
			if (ss == nua_substate_terminated)
				move_refer_out_free(ro);
		}
	}
}
