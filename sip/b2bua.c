/* The stack: set-up, the event dispatch, shutdown. */
#include "config.h"
#include <stdlib.h>
#include <malloc.h>
#include <strings.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "sip/b2bua.h"

#include <sofia-sip/nta_tport.h>
#include <sofia-sip/tport.h>

const char *sip_call_state_name(enum sip_call_state st)
{
	switch (st) {
	case SIP_CALL_EARLY:
		return "early";
	case SIP_CALL_ANSWERED:
		return "answered";
	case SIP_CALL_ENDING:
		return "ending";
	}
	return "unknown";
}

static int default_known(struct sip *s, nta_incoming_t *irq, const sip_t *sip);

/* Every request outside the dialogs of our calls. */
static int on_default(void *arg, nta_leg_t *dlg, nta_incoming_t *irq, const sip_t *sip)
{
	struct sip *s = arg;
	sip_method_t method = sip->sip_request->rq_method;

	if (method == sip_method_ack) {
		nta_incoming_destroy(irq); /* its transaction is gone: nothing to do */
		return 0;
	}
	metric_inc(METRIC_SIP_REQUESTS_TOTAL);
	if (method == sip_method_invite && !sip->sip_to->a_tag) {
		invite_new(s, irq, sip);
		return 0;
	}
	/* A dialog of a call we do not have: a previous run's or a dead node's, maybe. */
	if (sip->sip_to->a_tag && !relay_routed_us(s, sip) && !s->shutting_down &&
	    hook_unknown_dialog(s, irq, sip))
		return 0;
	return default_known(s, irq, sip);
}

/* The rest of on_default, for a request no hook took. */
static int default_known(struct sip *s, nta_incoming_t *irq, const sip_t *sip)
{
	sip_method_t method = sip->sip_request->rq_method;
	msg_t *req;
	int taken = 0;

	if (method == sip_method_invite || method == sip_method_bye || method == sip_method_prack) {
		/* A dialog of a call we do not have (any more). */
		metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
		sip_reply(irq, SIP_481_NO_TRANSACTION, TAG_END());
		return 0;
	}
	req = nta_incoming_getrequest(irq);
	if (!sip->sip_to->a_tag && method == sip_method_message)
		taken = hook_message(s, NULL, irq, sip, req);
	else if (!sip->sip_to->a_tag && method == sip_method_refer)
		taken = hook_refer(s, NULL, irq, sip, req);
	else if (!sip->sip_to->a_tag && method == sip_method_publish)
		taken = hook_publish(s, irq, sip, req);
	if (!taken)
		relay_out_of_dialog(s, irq, sip, req);
	msg_destroy(req);
	return 0;
}

/* A request the unknown_dialog hook held: to its call's leg if the call is served here now,
 * else answered as a dialog nobody has. */
void sip_dialog_resume(struct sip *s, nta_incoming_t *irq)
{
	msg_t *req = nta_incoming_getrequest(irq);
	sip_t *sip = req ? sip_object(req) : NULL;
	struct leg *leg = NULL;

	if (sip && sip->sip_call_id && sip->sip_from && sip->sip_to)
		leg = leg_by_dialog(s, sip->sip_call_id->i_id, sip->sip_to->a_tag,
		                    sip->sip_from->a_tag);
	if (leg)
		leg_dispatch(leg, irq, sip); /* counted when it came */
	else if (sip)
		default_known(s, irq, sip);
	else
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
	msg_destroy(req);
}

/* Messages nta has no transaction for: a 2xx to our INVITE sent again because our ACK was lost
 * gets the ACK again (RFC 3261 13.2.2.4), and so does the 2xx of an INVITE a previous run sent
 * on a dialog read back since (the transaction died with it); anything else is owed nothing. */
static int on_stray(struct sip *s, nta_agent_t *agent, msg_t *msg, sip_t *sip)
{
	struct leg *leg = NULL;

	if (sip && sip->sip_status && sip->sip_status->st_status >= 200 &&
	    sip->sip_status->st_status < 300 && sip->sip_cseq &&
	    sip->sip_cseq->cs_method == sip_method_invite && sip->sip_call_id && sip->sip_from &&
	    sip->sip_to && sip->sip_to->a_tag)
		leg = leg_by_dialog(s, sip->sip_call_id->i_id, sip->sip_from->a_tag,
		                    sip->sip_to->a_tag);
	if (leg && leg->acked_cseq && leg->acked_cseq <= sip->sip_cseq->cs_seq)
		leg_ack_again(leg, sip->sip_cseq->cs_seq);
	nta_msg_discard(agent, msg);
	return 0;
}

/*
 * Every 10 s, give the heap nta's finished transactions left back to the system: glibc keeps
 * freed memory at the top of the heap otherwise, so RSS would stay at its highest.
 */
static void trim_heap(su_root_magic_t *m, su_timer_t *t, void *arg)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

/* Once a second, the calls whose dialogs changed are written. */
static void write_dirty(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	struct sip *s = arg;
	struct call *c;

	while ((c = TAILQ_FIRST(&s->dirty)))
		call_touch(c, 1); /* takes it off the list */
}

static void done_now(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	struct sip *s = arg;

	LOG_INFO("sip", "stack stopped");
	if (s->done)
		s->done(s->done_arg);
}

/* Shutting down and nothing left to wait for: tell the host, from the loop. */
void b2bua_check_done(struct sip *s)
{
	if (!s->shutting_down || s->stopped || !TAILQ_EMPTY(&s->calls) || !LIST_EMPTY(&s->txns))
		return;
	s->stopped = 1;
	metric_set(METRIC_CALLS_ACTIVE, 0);
	if (s->shutdown_timer)
		su_timer_set_interval(s->shutdown_timer, done_now, s, 0);
	else
		done_now(NULL, NULL, s);
}

sip_contact_t *b2bua_contact(struct sip *s, int secure, int tcp)
{
	if (secure && s->contact_tls)
		return s->contact_tls;
	return tcp ? s->contact_tcp : s->contact_udp;
}

/* The transport a request came over: our answers' Contact must bring the peer back on it. */
void b2bua_transport_of(struct sip *s, nta_incoming_t *irq, int *secure, int *tcp)
{
	tport_t *tp = nta_incoming_transport(s->nta, irq, NULL);
	const char *proto = tp ? tport_name(tp)->tpn_proto : NULL;

	*secure = proto && !strcasecmp(proto, "tls");
	*tcp = proto && !strcasecmp(proto, "tcp");
	tport_unref(tp);
}

static int resolve_upstream(struct sip *s)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	const char *host = s->upstream->url_host;
	char hostbuf[256];
	int rc;

	/* [v6] literals come with their brackets. */
	if (host[0] == '[') {
		snprintf(hostbuf, sizeof(hostbuf), "%.*s", (int)strlen(host) - 2, host + 1);
		host = hostbuf;
	}
	rc = getaddrinfo(host, url_port(s->upstream), &hints, &res);
	if (rc) {
		LOG_ERR("sip", "upstream %s: %s", s->conf.upstream, gai_strerror(rc));
		return EINVAL;
	}
	memcpy(&s->upstream_addr, res->ai_addr, res->ai_addrlen);
	s->upstream_addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static char *route_param_uri(su_home_t *home, const char *uri)
{
	url_t *u = url_hdup(home, URL_STRING_MAKE(uri)->us_url);

	if (!u)
		return NULL;
	u->url_user = NULL;
	u->url_password = NULL;
	u->url_headers = NULL;
	return su_sprintf(home, "<%s:%s%s%s%s%s;lr>", u->url_type == url_sips ? "sips" : "sip",
	                  u->url_host, u->url_port ? ":" : "", u->url_port ? u->url_port : "",
	                  u->url_params ? ";" : "", u->url_params ? u->url_params : "");
}

static sip_contact_t *make_contact(struct sip *s, const url_t *u, const char *scheme,
                                   const char *params)
{
	return sip_contact_format(s->home, "<%s:%s%s%s%s>", scheme, u->url_host,
	                          u->url_port ? ":" : "", u->url_port ? u->url_port : "", params);
}

#define DUP(field) (s->conf.field = conf->field ? su_strdup(s->home, conf->field) : NULL)

int sip_alloc(struct sip **sp, su_root_t *root, const struct sip_conf *conf)
{
	struct sip *s;
	int err = EINVAL;

	s = calloc(1, sizeof(*s));
	if (!s)
		return ENOMEM;
	TAILQ_INIT(&s->calls);
	TAILQ_INIT(&s->dirty);
	LIST_INIT(&s->txns);
	su_home_init(s->home);
	s->root = root;
	s->call_table = calloc(CALL_BUCKETS, sizeof(*s->call_table));
	if (!s->call_table) {
		err = ENOMEM;
		goto out;
	}
	s->conf = *conf;
	DUP(listen);
	DUP(tls_listen);
	DUP(tls_cert_dir);
	DUP(domain);
	DUP(upstream);
	DUP(dial_domains);
	s->upstream = url_hdup(s->home, URL_STRING_MAKE(s->conf.upstream)->us_url);
	if (!s->upstream || !s->upstream->url_host) {
		LOG_ERR("sip", "upstream %s: not a SIP URI", s->conf.upstream);
		goto out;
	}
	err = resolve_upstream(s);
	if (err)
		goto out;
	s->upstream_route = route_param_uri(s->home, s->conf.upstream);
	s->upstream_rt = s->upstream_route ? sip_route_make(s->home, s->upstream_route) : NULL;
	s->path = route_param_uri(s->home, s->conf.listen);
	s->self = url_hdup(s->home, URL_STRING_MAKE(s->conf.listen)->us_url);
	if (s->conf.tls_listen)
		s->self_tls = url_hdup(s->home, URL_STRING_MAKE(s->conf.tls_listen)->us_url);
	if (s->self && s->self->url_host)
		s->node = su_sprintf(s->home, "sip:%s%s%s", s->self->url_host,
		                     s->self->url_port ? ":" : "",
		                     s->self->url_port ? s->self->url_port : "");
	if (!s->upstream_rt || !s->path || !s->node) {
		LOG_ERR("sip", "listen %s: not a SIP URI", s->conf.listen);
		err = EINVAL;
		goto out;
	}
	s->contact_udp = make_contact(s, s->self, "sip", "");
	s->contact_tcp = make_contact(s, s->self, "sip", ";transport=tcp");
	if (s->self_tls && s->self_tls->url_host)
		s->contact_tls = make_contact(s, s->self_tls, "sips", "");
	err = sip_work_alloc(&s->work, root);
	if (err) {
		LOG_ERR("sip", "cannot start the image worker: %s", strerror(err));
		goto out;
	}
	/*
	 * One agent for everything: UA behaviour (RFC 3261 13.3.1.4: it sends our 2xx again until
	 * the ACK; 17.2.1), a default leg for requests outside our dialogs. The UDP receive
	 * buffer is sofia's own knob; bursts overflow the kernel's default (about 208 KB).
	 */
	sofia_log_init();
	/* TCP: a CRLF keep-alive (RFC 5626 3.5.1) gets its CRLF pong. */
	s->nta = nta_agent_create(root, URL_STRING_MAKE(s->conf.listen), on_stray, s, NTATAG_UA(1),
	                          NTATAG_MERGE_482(1), NTATAG_CANCEL_487(1), TPTAG_PONG2PING(1),
	                          TAG_IF(s->conf.udp_rcvbuf, TPTAG_UDP_RMEM(s->conf.udp_rcvbuf)),
	                          TAG_END());
	if (!s->nta) {
		err = errno ? errno : EADDRINUSE;
		LOG_ERR("sip", "cannot listen on %s: %s", s->conf.listen, strerror(err));
		goto out;
	}
	if (s->conf.tls_listen &&
	    nta_agent_add_tport(
	        s->nta, URL_STRING_MAKE(s->conf.tls_listen),
	        TAG_IF(s->conf.tls_cert_dir, TPTAG_CERTIFICATE(s->conf.tls_cert_dir)),
	        TAG_END()) < 0) {
		err = errno ? errno : EADDRINUSE;
		LOG_ERR("sip", "cannot listen on %s: %s", s->conf.tls_listen, strerror(err));
		goto out;
	}
	s->default_leg = nta_leg_tcreate(s->nta, on_default, s, NTATAG_NO_DIALOG(1), TAG_END());
	if (!s->default_leg) {
		err = ENOMEM;
		goto out;
	}
	s->shutdown_timer = su_timer_create(su_root_task(root), 0);
	s->trim_timer = su_timer_create(su_root_task(root), 10000);
	if (s->trim_timer)
		su_timer_run(s->trim_timer, trim_heap, s);
	s->dirty_timer = su_timer_create(su_root_task(root), 1000);
	if (s->dirty_timer)
		su_timer_run(s->dirty_timer, write_dirty, s);
	if (s->conf.udp_rcvbuf)
		LOG_INFO("sip", "UDP receive buffer asked: %u bytes", s->conf.udp_rcvbuf);
	LOG_INFO("sip", "listening on %s%s%s, upstream %s", s->conf.listen,
	         s->conf.tls_listen ? " and " : "", s->conf.tls_listen ? s->conf.tls_listen : "",
	         s->conf.upstream);
	*sp = s;
	return 0;
out:
	sip_work_free(s->work);
	if (s->default_leg)
		nta_leg_destroy(s->default_leg);
	if (s->nta)
		nta_agent_destroy(s->nta);
	su_home_deinit(s->home);
	free(s->call_table);
	free(s);
	return err;
}

static void shutdown_now(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	struct sip *s = arg;
	struct call *c, *next;

	/* Peers that never answer our BYE must not hold the daemon up. */
	for (c = TAILQ_FIRST(&s->calls); c; c = next) {
		struct leg *leg;

		next = TAILQ_NEXT(c, link);
		su_home_ref(c->home);
		SLIST_FOREACH(leg, &c->legs, link)
		call_leg_terminated(leg);
		su_home_unref(c->home);
	}
	while (!LIST_EMPTY(&s->txns))
		txn_free(LIST_FIRST(&s->txns));
	b2bua_check_done(s);
}

void sip_drain(struct sip *s)
{
	if (!s->draining)
		LOG_INFO("sip", "draining: new calls are refused (503), %lld live calls go on",
		         (long long)metric_get(METRIC_CALLS_ACTIVE));
	s->draining = 1;
}

int sip_draining(const struct sip *s)
{
	return s->draining;
}

/*
 * [sip] on_stop = keep: the calls stay up. Their state is written now, and the next start (or
 * another node) serves them; transactions in flight are left to their senders' retransmits.
 */
static void shutdown_keep(struct sip *s)
{
	struct call *c;
	unsigned n = 0;

	TAILQ_FOREACH(c, &s->calls, link)
	if (c->state == SIP_CALL_ANSWERED && c->recorded) {
		call_touch(c, 1);
		n++;
	}
	LOG_INFO("sip",
	         "shutting down: %u calls kept for the next start, %lld not answered "
	         "dropped",
	         n, (long long)metric_get(METRIC_CALLS_ACTIVE) - n);
	while (!LIST_EMPTY(&s->txns))
		txn_free(LIST_FIRST(&s->txns));
	s->stopped = 1;
	if (s->shutdown_timer)
		su_timer_set_interval(s->shutdown_timer, done_now, s, 0);
	else
		done_now(NULL, NULL, s);
}

void sip_shutdown(struct sip *s, sip_done_h *done, void *arg)
{
	struct call *c, *next;

	if (s->shutting_down)
		return;
	s->shutting_down = 1;
	s->done = done;
	s->done_arg = arg;
	if (s->conf.on_stop_keep && s->conf.store && !s->conf.no_call_state) {
		shutdown_keep(s);
		return;
	}
	LOG_INFO("sip", "shutting down: ending %lld calls",
	         (long long)metric_get(METRIC_CALLS_ACTIVE));
	for (c = TAILQ_FIRST(&s->calls); c; c = next) {
		next = TAILQ_NEXT(c, link);
		call_end(c, 0, "SIP;cause=503;text=\"Server shutting down\"");
	}
	while (!LIST_EMPTY(&s->txns))
		txn_free(LIST_FIRST(&s->txns));
	if (!TAILQ_EMPTY(&s->calls) && s->shutdown_timer)
		su_timer_set_interval(s->shutdown_timer, shutdown_now, s, 4000);
	b2bua_check_done(s);
}

void sip_detach_store(struct sip *s)
{
	s->detached = 1;
	s->conf.store = NULL;
}

void sip_reconf(struct sip *s, const struct sip_conf *conf)
{
	s->conf.qr_uri_https = conf->qr_uri_https;
	s->conf.code_ttl = conf->code_ttl;
	s->conf.code_digits = conf->code_digits;
	s->conf.send_qr_image = conf->send_qr_image;
	s->conf.send_barcode_image = conf->send_barcode_image;
	s->conf.confirm = conf->confirm;
	s->conf.confirm_sms_near = conf->confirm_sms_near;
	s->conf.confirm_sms_far = conf->confirm_sms_far;
	s->conf.confirm_timeout = conf->confirm_timeout;
	s->conf.scans_both = conf->scans_both;
	s->conf.scan_rate = conf->scan_rate;
	s->conf.scan_burst = conf->scan_burst;
	s->conf.scan_max_bytes = conf->scan_max_bytes;
	s->conf.scan_max_pixels = conf->scan_max_pixels;
	s->conf.scan_queue = conf->scan_queue;
}

void sip_free(struct sip *s)
{
	struct call *c;

	if (!s)
		return;
	if (s->shutdown_timer)
		su_timer_destroy(s->shutdown_timer);
	if (s->trim_timer)
		su_timer_destroy(s->trim_timer);
	if (s->dirty_timer)
		su_timer_destroy(s->dirty_timer);
	sip_work_free(s->work);
	hook_stop(s);
	/* Calls a shutdown did not wait for (an exit on a second signal): let go of them. */
	while ((c = TAILQ_FIRST(&s->calls))) {
		struct leg *leg;

		TAILQ_REMOVE(&s->calls, c, link);
		while (!LIST_EMPTY(&c->ctxs)) {
			struct ctx *x = LIST_FIRST(&c->ctxs);

			LIST_REMOVE(x, link);
			free(x);
		}
		SLIST_FOREACH(leg, &c->legs, link)
		leg_release(leg);
		if (c->max_timer)
			su_timer_destroy(c->max_timer);
		su_home_unref(c->home);
	}
	while (!LIST_EMPTY(&s->txns))
		txn_free(LIST_FIRST(&s->txns));
	if (s->default_leg)
		nta_leg_destroy(s->default_leg);
	if (s->nta)
		nta_agent_destroy(s->nta);
	su_home_deinit(s->home);
	free(s->call_table);
	free(s);
}

static void call_info(const struct call *c, struct sip_call_info *info)
{
	info->id = c->id;
	info->state = c->state;
	info->near_call_id = c->near ? c->near->call_id : NULL;
	info->near_uri = c->near ? c->near->uri : NULL;
	info->far_call_id = c->far ? c->far->call_id : NULL;
	info->far_uri = c->far ? c->far->uri : NULL;
	info->near_is_caller = c->in == c->near;
	info->created = c->created;
	info->answered = c->answered;
}

int sip_call_get(struct sip *s, const char *id, sip_call_h *fn, void *arg)
{
	struct sip_call_info info;
	struct call *c = call_find(s, id);

	if (!c)
		return ENOENT;
	call_info(c, &info);
	fn(&info, arg);
	return 0;
}

void sip_calls_foreach(struct sip *s, sip_call_h *fn, void *arg)
{
	struct sip_call_info info;
	struct call *c;

	TAILQ_FOREACH(c, &s->calls, link)
	{
		call_info(c, &info);
		fn(&info, arg);
	}
}
