/* The stack: set-up, the event dispatch, shutdown. */
#include "config.h"
#include <stdlib.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "sip/b2bua.h"

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

static void on_state(struct bound *b, tagi_t tags[])
{
	int cs = -1;

	if (!b || b->kind != BOUND_LEG)
		return;
	tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
	if (cs == nua_callstate_terminated && !((struct leg *)b)->terminated)
		call_leg_terminated((struct leg *)b);
}

/* A request we do not take: answer it so the sender is never left waiting. */
static void refuse_request(struct sip *s, nua_handle_t *nh, struct bound *b, int status,
                           const char *phrase)
{
	metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
	nua_respond(nh, status, phrase, NUTAG_WITH_THIS(s->nua), TAG_END());
	if (!b)
		nua_handle_destroy(nh);
}

static void on_shutdown(struct sip *s, int status)
{
	struct call *c;

	if (status < 200)
		return;
	/* The stack is gone with its handles: forget ours. */
	while ((c = TAILQ_FIRST(&s->calls))) {
		TAILQ_REMOVE(&s->calls, c, link);
		if (c->max_timer)
			su_timer_destroy(c->max_timer);
		su_home_unref(c->home);
	}
	memset(s->call_table, 0, CALL_BUCKETS * sizeof(*s->call_table));
	metric_set(METRIC_CALLS_ACTIVE, 0);
	call_zombies_forget(s);
	LOG_INFO("sip", "stack stopped");
	if (s->done)
		s->done(s->done_arg);
}

static void on_event(nua_event_t ev, int status, char const *phrase, nua_t *nua, struct sip *s,
                     nua_handle_t *nh, struct bound *b, sip_t const *sip, tagi_t tags[])
{
	struct leg *leg = b && b->kind == BOUND_LEG ? (struct leg *)b : NULL;

	if (ev >= nua_r_set_params && status >= 100)
		metric_inc(METRIC_SIP_RESPONSES_TOTAL);
	if (ev < nua_r_set_params && ev != nua_i_state && ev != nua_i_error && ev != nua_i_active &&
	    ev != nua_i_terminated && ev != nua_i_media_error)
		metric_inc(METRIC_SIP_REQUESTS_TOTAL);

	if (b && b->kind == BOUND_HOOK) {
		hook_bound_event(s, ev, status, phrase, nh, b, sip, tags);
		return;
	}
	if (b && b->kind == BOUND_ZOMBIE) {
		call_zombie_event(s, ev, status, nh, b);
		return;
	}
	/* A final answer to one of our requests on a leg. */
	if (leg && status >= 200 && leg->pending &&
	    (ev == nua_r_invite || ev == nua_r_update || ev == nua_r_info || ev == nua_r_message ||
	     ev == nua_r_notify || ev == nua_r_refer))
		leg->pending--;

	switch (ev) {
	case nua_i_invite:
		if (leg)
			invite_again(leg, sip);
		else if (!b)
			invite_new(s, nh, sip);
		else
			refuse_request(s, nh, b, SIP_481_NO_TRANSACTION);
		break;
	case nua_r_invite:
		if (leg)
			invite_response(leg, status, phrase, sip);
		break;
	case nua_i_ack:
		if (leg)
			invite_ack(leg, sip);
		break;
	case nua_i_cancel:
		if (leg)
			invite_cancel(leg);
		break;
	case nua_i_bye:
		if (leg)
			invite_bye(leg);
		else
			refuse_request(s, nh, b, SIP_481_NO_TRANSACTION);
		break;
	case nua_i_state:
		on_state(b, tags);
		break;
	case nua_i_message:
	case nua_i_info:
	case nua_i_update:
		message_request(s, ev, nh, b, sip);
		break;
	case nua_r_message:
	case nua_r_info:
	case nua_r_update:
		message_response(s, ev, b, status, phrase, sip);
		break;
	case nua_i_register:
		register_request(s, nh, sip);
		break;
	case nua_i_refer:
		if (!hook_refer(s, leg, nh, sip, tags))
			refuse_request(s, nh, b, 501, "Only REFER To sip:move@ Is Served");
		break;
	case nua_i_subscribe:
	case nua_i_publish:
	case nua_i_method:
		refuse_request(s, nh, b, SIP_501_NOT_IMPLEMENTED);
		break;
	case nua_i_options:
		if (!b)
			nua_handle_destroy(nh);
		break;
	case nua_i_error:
		LOG_WARN("sip", "stack error %d %s", status, phrase ? phrase : "");
		break;
	case nua_r_shutdown:
		on_shutdown(s, status);
		break;
	case nua_i_notify:
	case nua_r_notify:
	case nua_r_refer:
	case nua_r_bye:
	case nua_r_cancel:
	case nua_r_set_params:
	case nua_i_active:
	case nua_i_terminated:
		break;
	default:
		LOG_DEBUG("sip", "event %s %d %s ignored", nua_event_name(ev), status,
		          phrase ? phrase : "");
		/* An unbound handle nobody took must not linger. */
		if (!b && nh && ev < nua_r_set_params)
			nua_handle_destroy(nh);
		break;
	}
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

/*
 * Bursts overflow the kernel's default UDP receive buffer (about 208 KB): give our listening
 * UDP sockets a larger one. sofia-sip has no tag for it, so find them among our descriptors.
 */
static void udp_buffers(struct sip *s)
{
	unsigned short port = (unsigned short)atoi(url_port(s->self));
	int size = (int)s->conf.udp_rcvbuf, n = 0, fd, type;
	struct sockaddr_storage ss;
	socklen_t len;
	DIR *d;
	struct dirent *e;

	if (!size || !port || !(d = opendir("/proc/self/fd")))
		return;
	while ((e = readdir(d))) {
		fd = atoi(e->d_name);
		len = sizeof(type);
		if (e->d_name[0] == '.' || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) ||
		    type != SOCK_DGRAM)
			continue;
		len = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &len) ||
		    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) ||
		    ntohs(ss.ss_family == AF_INET
		              ? ((struct sockaddr_in *)&ss)->sin_port
		              : ((struct sockaddr_in6 *)&ss)->sin6_port) != port)
			continue;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) == 0)
			n++;
	}
	closedir(d);
	LOG_INFO("sip", "UDP receive buffer asked %d bytes on %d socket(s)", size, n);
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
	LIST_INIT(&s->txns);
	LIST_INIT(&s->zombies);
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
	s->path = route_param_uri(s->home, s->conf.listen);
	s->self = url_hdup(s->home, URL_STRING_MAKE(s->conf.listen)->us_url);
	if (s->self && s->self->url_host)
		s->node = su_sprintf(s->home, "sip:%s%s%s", s->self->url_host,
		                     s->self->url_port ? ":" : "",
		                     s->self->url_port ? s->self->url_port : "");
	if (!s->upstream_route || !s->path || !s->node) {
		LOG_ERR("sip", "listen %s: not a SIP URI", s->conf.listen);
		err = EINVAL;
		goto out;
	}
	/* One thread: the stack runs on the caller's loop, not in a clone task. */
	su_root_threading(root, 0);
	err = register_init(s);
	if (err)
		goto out;
	err = sip_work_alloc(&s->work, root);
	if (err) {
		LOG_ERR("sip", "cannot start the image worker: %s", strerror(err));
		goto out;
	}
	s->nua =
	    nua_create(root, on_event, s, NUTAG_URL(s->conf.listen),
	               TAG_IF(s->conf.tls_listen, NUTAG_SIPS_URL(s->conf.tls_listen)),
	               TAG_IF(s->conf.tls_cert_dir, NUTAG_CERTIFICATE_DIR(s->conf.tls_cert_dir)),
	               NUTAG_MEDIA_ENABLE(0), TAG_END());
	if (!s->nua) {
		err = errno ? errno : EADDRINUSE;
		LOG_ERR("sip", "cannot listen on %s%s%s: %s", s->conf.listen,
		        s->conf.tls_listen ? " and " : "",
		        s->conf.tls_listen ? s->conf.tls_listen : "", strerror(err));
		goto out;
	}
	/* RETRY_COUNT 0: no following of 3xx behind the caller's back (we answer 480). */
	nua_set_params(
	    s->nua, NUTAG_AUTOACK(0), NUTAG_AUTOANSWER(0), NUTAG_AUTOALERT(0), NUTAG_RETRY_COUNT(0),
	    NUTAG_ENABLEMESSAGE(1), NUTAG_SESSION_TIMER(0), NUTAG_APPL_METHOD("INVITE"),
	    NUTAG_APPL_METHOD("REGISTER"), NUTAG_APPL_METHOD("MESSAGE"), NUTAG_APPL_METHOD("INFO"),
	    NUTAG_APPL_METHOD("UPDATE"), NUTAG_APPL_METHOD("REFER"), NUTAG_APPL_METHOD("SUBSCRIBE"),
	    NUTAG_APPL_METHOD("PUBLISH"),
	    /* What we really take: NOTIFY only for our own REFERs. */
	    SIPTAG_ALLOW_STR("INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, "
	                     "REFER, NOTIFY, REGISTER"),
	    NUTAG_SUPPORTED("path"), NUTAG_USER_AGENT("qrxfer/" PACKAGE_VERSION), TAG_END());
	udp_buffers(s);
	LOG_INFO("sip", "listening on %s%s%s, upstream %s", s->conf.listen,
	         s->conf.tls_listen ? " and " : "", s->conf.tls_listen ? s->conf.tls_listen : "",
	         s->conf.upstream);
	*sp = s;
	return 0;
out:
	sip_work_free(s->work);
	if (s->nta)
		nta_agent_destroy(s->nta);
	su_home_deinit(s->home);
	free(s->call_table);
	free(s);
	return err;
}

void b2bua_stop(struct sip *s)
{
	if (s->shutdown_sent)
		return;
	s->shutdown_sent = 1;
	nua_shutdown(s->nua);
}

static void shutdown_now(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	struct sip *s = arg;

	call_zombies_drop(s);
	b2bua_stop(s);
}

void sip_shutdown(struct sip *s, sip_done_h *done, void *arg)
{
	struct call *c, *next;
	su_timer_t *t;

	if (s->shutting_down)
		return;
	s->shutting_down = 1;
	s->done = done;
	s->done_arg = arg;
	LOG_INFO("sip", "shutting down: ending %lld calls",
	         (long long)metric_get(METRIC_CALLS_ACTIVE));
	for (c = TAILQ_FIRST(&s->calls); c; c = next) {
		next = TAILQ_NEXT(c, link);
		call_end(c, 0, "SIP;cause=503;text=\"Server shutting down\"");
	}
	while (!LIST_EMPTY(&s->txns)) {
		struct txn *tx = LIST_FIRST(&s->txns);

		nua_respond(tx->in_nh, SIP_503_SERVICE_UNAVAILABLE, NUTAG_WITH_SAVED(tx->saved),
		            TAG_END());
		txn_free(tx);
	}
	if (TAILQ_EMPTY(&s->calls) && LIST_EMPTY(&s->zombies)) {
		b2bua_stop(s);
		return;
	}
	/* Peers that never answer our BYE must not hold the daemon up. */
	t = su_timer_create(su_root_task(s->root), 0);
	if (t) {
		su_timer_set_interval(t, shutdown_now, s, 4000);
		s->shutdown_timer = t;
	}
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
	if (!s)
		return;
	if (s->shutdown_timer)
		su_timer_destroy(s->shutdown_timer);
	sip_work_free(s->work);
	hook_stop(s);
	if (s->nta)
		nta_agent_destroy(s->nta);
	nua_destroy(s->nua);
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
