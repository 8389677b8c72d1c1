/*
 * web/http: libmicrohttpd in external-epoll mode on the su_root loop. Each face (one
 * listener, or a public and an admin one) is one MHD daemon: its epoll fd is one wait on the
 * root and MHD_get_timeout() drives one su_timer. Requests are matched to routes (router.c)
 * on their headers, so refusals (404, 405, 401, 403, 429, 413) are sent before any body is
 * read. MHD 0.9.75 only has an idle timeout: limits.c gives each connection deadlines.
 */
#define SU_WAKEUP_ARG_T void
#define SU_TIMER_ARG_T  void

#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "metrics/metrics.h"
#include "util/log.h"
#include "web/http_int.h"

#define TIMER_MAX_MS      (3600 * 1000)
#define DEFAULT_LISTEN    "127.0.0.1:8080"
#define DEFAULT_BODY_MAX  (8u << 20)
#define DEFAULT_RATE      10.0
#define DEFAULT_BURST     20
#define DEFAULT_TIMEOUT_S 30
#define DEFAULT_CONN_MAX  512
#define DEFAULT_HEADER_S  10
#define DEFAULT_BODY_S    30

/* MHD's lines about one connection's end: any peer makes them at will, they name no peer, and
 * conn_cut() has already said why when it was us. */
static const char *const mhd_quiet[] = {
    "Connection was closed by remote side",
    "Connection socket is closed when reading request",
};

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	unsigned i;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	for (i = 0; i < sizeof(mhd_quiet) / sizeof(mhd_quiet[0]); i++)
		if (!strncmp(buf, mhd_quiet[i], strlen(mhd_quiet[i])))
			return;
	buf[strcspn(buf, "\n")] = '\0';
	LOG_WARN("http", "mhd: %s", buf);
}

static void sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned n = 32;

	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

/* ---- the loop ---- */

static void arm(struct face *f);
static void on_timer(su_root_magic_t *magic, su_timer_t *t, void *arg);

static void run(struct face *f)
{
	f->running = true;
	f->kicked = false;
	MHD_run(f->d);
	f->running = false;
	if (f->kicked) {
		/* a handler answered a deferred request (watch pages): send it now, not at the
		 * next timeout MHD asks for */
		f->kicked = false;
		su_timer_set_interval(f->timer, on_timer, f, 0);
		return;
	}
	arm(f);
}

static int on_wait(su_root_magic_t *magic, su_wait_t *w, void *arg)
{
	run(arg);
	return 0;
}

static void on_timer(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	run(arg);
}

/* Sets the timer from MHD_get_timeout(): MHD must run again no later than that. */
static void arm(struct face *f)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (f->running)
		return;
	if (MHD_get_timeout(f->d, &ms) != MHD_YES) {
		su_timer_reset(f->timer);
		return;
	}
	if (ms > TIMER_MAX_MS)
		ms = TIMER_MAX_MS;
	su_timer_set_interval(f->timer, on_timer, f, (su_duration_t)ms);
}

/* Runs MHD on the next loop turn (never re-entered from inside a callback). */
void web_kick(struct face *f)
{
	if (f->running) {
		f->kicked = true;
		return;
	}
	su_timer_set_interval(f->timer, on_timer, f, 0);
}

/* ---- requests ---- */

static void req_unlink(struct mod_http_req *req)
{
	if (req->gone_idx > 0) {
		su_root_deregister(req->h->root, req->gone_idx);
		req->gone_idx = 0;
	}
	if (req->dlink.le_prev) {
		LIST_REMOVE(req, dlink);
		req->dlink.le_prev = NULL;
	}
}

static void req_free(struct mod_http_req *req)
{
	struct hdr *x;
	unsigned i;

	req_unlink(req);
	while ((x = SLIST_FIRST(&req->hdrs))) {
		SLIST_REMOVE_HEAD(&req->hdrs, link);
		free(x->name);
		free(x->value);
		free(x);
	}
	for (i = 0; i < SEGS_MAX; i++)
		free(req->pv[i]);
	if (req->resp)
		MHD_destroy_response(req->resp);
	free(req->method);
	free(req->path);
	free(req->raw);
	buf_release(&req->body);
	free(req);
}

const char *mod_http_method(const struct mod_http_req *req)
{
	return req->method;
}

const char *mod_http_path(const struct mod_http_req *req)
{
	return req->path;
}

const char *mod_http_param(const struct mod_http_req *req, const char *name)
{
	unsigned i;

	if (!req->route || !name)
		return NULL;
	for (i = 0; i < req->route->nseg; i++)
		if (req->route->param[i] && !strcmp(req->route->segs[i], name))
			return req->pv[i];
	return NULL;
}

const char *mod_http_query(const struct mod_http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *mod_http_header(const struct mod_http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *mod_http_body(const struct mod_http_req *req, size_t *lenp)
{
	if (lenp)
		*lenp = req->body.len;
	return req->body.data ? req->body.data : "";
}

const struct sockaddr *mod_http_peer(const struct mod_http_req *req)
{
	return (const struct sockaddr *)&req->peer;
}

const char *mod_http_peer_str(const struct mod_http_req *req)
{
	return req->peer_str;
}

int mod_http_body_json(struct mod_http_req *req, json_t **jp)
{
	json_error_t jerr;
	json_t *j;

	j = json_loadb(mod_http_body(req, NULL), req->body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		mod_http_reply_errorf(req, 400, "invalid JSON body: line %d column %d: %s",
		                      jerr.line, jerr.column, jerr.text);
		return EBADMSG;
	}
	*jp = j;
	return 0;
}

int mod_http_reply_header(struct mod_http_req *req, const char *name, const char *value)
{
	struct hdr *x;

	if (req->replied || !name || !value)
		return EINVAL;
	x = calloc(1, sizeof(*x));
	if (!x)
		return ENOMEM;
	x->name = strdup(name);
	x->value = strdup(value);
	if (!x->name || !x->value) {
		free(x->name);
		free(x->value);
		free(x);
		return ENOMEM;
	}
	SLIST_INSERT_HEAD(&req->hdrs, x, link);
	return 0;
}

static void count_status(unsigned status)
{
	if (status < 300)
		metric_inc(METRIC_HTTP_RESPONSES_2XX);
	else if (status < 400)
		metric_inc(METRIC_HTTP_RESPONSES_3XX);
	else if (status < 500)
		metric_inc(METRIC_HTTP_RESPONSES_4XX);
	else
		metric_inc(METRIC_HTTP_RESPONSES_5XX);
}

int mod_http_reply(struct mod_http_req *req, unsigned status, const char *content_type,
                   const void *data, size_t len)
{
	struct MHD_Response *resp;
	struct hdr *x;

	if (req->replied)
		return EALREADY;
	req_unlink(req);
	resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return ENOMEM;
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	SLIST_FOREACH(x, &req->hdrs, link)
	MHD_add_response_header(resp, x->name, x->value);
	req->replied = true;
	count_status(status);
	if (req->in_access) {
		if (MHD_queue_response(req->conn, status, resp) != MHD_YES)
			LOG_WARN("http", "%s: MHD refused the response; connection closes",
			         req->path);
		MHD_destroy_response(resp);
		return 0;
	}
	/* deferred: MHD calls the access handler again after the resume, which queues it */
	req->resp = resp;
	req->status = status;
	if (req->state == REQ_DEFERRED) {
		req->state = REQ_RESUMED;
		MHD_resume_connection(req->conn);
		web_kick(req->f);
	}
	return 0;
}

int mod_http_reply_json(struct mod_http_req *req, unsigned status, json_t *body)
{
	char *text;
	int err;

	if (!body)
		return mod_http_reply_error(req, 500, "out of memory");
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return mod_http_reply_error(req, 500, "out of memory");
	err = mod_http_reply(req, status, "application/json", text, strlen(text));
	free(text);
	return err;
}

int mod_http_reply_error(struct mod_http_req *req, unsigned status, const char *why)
{
	json_t *j = json_pack("{s:s}", "error", why ? why : "");
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	static const char oom[] = "{\"error\":\"out of memory\"}";
	int err;

	json_decref(j);
	if (text)
		err = mod_http_reply(req, status, "application/json", text, strlen(text));
	else
		err = mod_http_reply(req, 500, "application/json", oom, sizeof(oom) - 1);
	free(text);
	return err;
}

int mod_http_reply_errorf(struct mod_http_req *req, unsigned status, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return mod_http_reply_error(req, status, buf);
}

int mod_http_defer(struct mod_http_req *req, mod_http_cancel_h *cancel, void *arg)
{
	struct mod_http *h = req->h;

	if (req->replied || req->state != REQ_NEW || !req->in_access)
		return EINVAL;
	req->cancel = cancel;
	req->cancel_arg = arg;
	LIST_INSERT_HEAD(&h->deferred, req, dlink);
	req->state = REQ_DEFERRED;
	return 0;
}

/* No deadline once the request is read: a handler or a deferred reply takes its time. */
static void req_busy(struct mod_http_req *req)
{
	if (req->c)
		web_conn_phase(req->c, CONN_BUSY);
}

static void call_handler(struct mod_http_req *req)
{
	req_busy(req);
	req->in_access = true;
	req->route->fn(req, req->route->arg);
	req->in_access = false;
	if (req->replied) {
		req->state = REQ_HANDLED;
		return;
	}
	if (req->state == REQ_DEFERRED) {
		MHD_suspend_connection(req->conn);
		return;
	}
	LOG_ERR("http", "%s: handler gave no reply", req->path);
	req->in_access = true;
	mod_http_reply_error(req, 500, "internal error: no reply");
	req->in_access = false;
	req->state = REQ_HANDLED;
}

static bool admin_ok(struct mod_http *h, const char *auth)
{
	static const char prefix[] = "Bearer ";
	uint8_t got[32];

	if (!h->have_token || !auth || strncasecmp(auth, prefix, sizeof(prefix) - 1))
		return false;
	auth += sizeof(prefix) - 1;
	while (*auth == ' ')
		auth++;
	/* hashing first makes the comparison independent of the token's length too */
	sha256(auth, strlen(auth), got);
	return CRYPTO_memcmp(got, h->token_hash, sizeof(got)) == 0;
}

/* Refuses a request on its headers; true if it did. */
static bool refuse_early(struct mod_http_req *req, const char *allow)
{
	struct mod_http *h = req->h;
	struct route *r = req->route;
	const char *cl;

	if (!r && allow[0]) {
		mod_http_reply_header(req, "Allow", allow);
		mod_http_reply_errorf(req, 405, "method %s not allowed for %s", req->method,
		                      req->path);
		return true;
	}
	if (!r) {
		mod_http_reply_errorf(req, 404, "no such resource: %s", req->path);
		return true;
	}
	if (r->flags & MOD_HTTP_ADMIN) {
		if (h->loopback_only && !mod_http_is_loopback(mod_http_peer(req))) {
			mod_http_reply_error(req, 403, "administrative API is loopback-only");
			return true;
		}
		if (!admin_ok(h, mod_http_header(req, MHD_HTTP_HEADER_AUTHORIZATION))) {
			mod_http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"qrxfer\"");
			mod_http_reply_error(req, 401, "missing or wrong bearer token");
			return true;
		}
	} else if (!web_rate_take(h, mod_http_peer(req))) {
		metric_inc(METRIC_HTTP_RATE_LIMITED_TOTAL);
		mod_http_reply_header(req, "Retry-After", "1");
		mod_http_reply_error(req, 429, "too many requests");
		return true;
	}
	cl = mod_http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && strtoull(cl, NULL, 10) > h->body_max) {
		mod_http_reply_errorf(req, 413, "body over %zu bytes", h->body_max);
		return true;
	}
	return false;
}

/* Called by MHD with the request line's URI, before anything else: req starts here. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct mod_http_req *req = calloc(1, sizeof(*req));
	const union MHD_ConnectionInfo *ci;
	struct face *f = cls;

	if (!req)
		return NULL;
	req->f = f;
	req->h = f->h;
	req->conn = conn;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	req->c = ci ? ci->socket_context : NULL;
	if (req->c)
		req->c->line = true;
	req->raw = strndup(uri, strcspn(uri, "?#"));
	return req;
}

/* Completes req on the first access handler call: route, refusals. */
static int req_start(struct mod_http_req *req, const char *url, const char *method)
{
	const union MHD_ConnectionInfo *ci;
	struct MHD_Connection *conn = req->conn;
	char *segs[SEGS_MAX];
	char allow[128];
	unsigned nseg = 0, i;

	req->started = true;
	if (req->c)
		web_conn_phase(req->c, CONN_BODY);
	req->method = strdup(method);
	req->path = strdup(url);
	if (!req->method || !req->path || !req->raw)
		return ENOMEM;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		size_t n = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		                                     : sizeof(struct sockaddr_in);

		memcpy(&req->peer, sa, n);
		getnameinfo(sa, n, req->peer_str, sizeof(req->peer_str), NULL, 0, NI_NUMERICHOST);
	}
	req->route = web_route_find(req->f, method, req->raw, segs, &nseg, allow, sizeof(allow));
	if (req->route)
		for (i = 0; i < nseg; i++)
			req->pv[i] = segs[i];
	req->in_access = true;
	if (refuse_early(req, allow)) {
		req->state = REQ_HANDLED;
		req_busy(req);
	}
	req->in_access = false;
	return 0;
}

static int body_add(struct mod_http_req *req, const char *data, size_t n)
{
	req->seen += n;
	if (req->too_big || req->body.len + n > req->h->body_max) {
		req->too_big = true;
		return 0;
	}
	buf_add(&req->body, data, n);
	return req->body.failed ? ENOMEM : 0;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *data_size, void **con_cls)
{
	struct mod_http *h = ((struct face *)cls)->h;
	struct mod_http_req *req = *con_cls;
	enum MHD_Result ret;

	if (!req)
		return MHD_NO; /* on_uri ran out of memory */
	if (!req->started) {
		metric_inc(METRIC_HTTP_REQUESTS_TOTAL);
		return req_start(req, url, method) ? MHD_NO : MHD_YES;
	}
	if (req->state == REQ_RESUMED) {
		ret = MHD_queue_response(conn, req->status, req->resp);
		MHD_destroy_response(req->resp);
		req->resp = NULL;
		req->state = REQ_HANDLED;
		return ret;
	}
	if (*data_size) {
		if (req->state == REQ_NEW && body_add(req, data, *data_size))
			return MHD_NO;
		/* an over-long chunked body is read and dropped up to twice the cap, then cut */
		if (req->too_big && req->seen > 2 * h->body_max)
			return MHD_NO;
		*data_size = 0;
		return MHD_YES;
	}
	if (req->state != REQ_NEW)
		return MHD_YES;
	if (req->too_big) {
		req_busy(req);
		req->in_access = true;
		mod_http_reply_errorf(req, 413, "body over %zu bytes", h->body_max);
		req->in_access = false;
		req->state = REQ_REFUSED;
		return MHD_YES;
	}
	call_handler(req);
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct mod_http_req *req = *con_cls;

	if (!req)
		return;
	*con_cls = NULL;
	/* the connection waits for its next request's headers (or closes) */
	if (req->c && !req->c->cut) {
		req->c->requests++;
		req->c->line = false;
		web_conn_phase(req->c, CONN_HEADERS);
	}
	req_free(req);
}

/* ---- server ---- */

/* Starts face f's daemon on ss and hooks it to the loop. */
static int face_start(struct face *f, const struct sockaddr_storage *ss, const char *listen,
                      const struct mod_http_conf *conf)
{
	const union MHD_DaemonInfo *di;
	su_root_t *root = f->h->root;
	unsigned flags, conn_max = conf->conn_max ? conf->conn_max : DEFAULT_CONN_MAX;
	su_wait_t w[1];
	int err;

	f->peers = calloc(conn_max, sizeof(*f->peers));
	if (!f->peers)
		return ENOMEM;
	f->npeers = conn_max;
	flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ss->ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	errno = 0;
	f->d = MHD_start_daemon(
	    flags, 0, web_on_accept, f, on_access, f, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, f->h,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)ss, MHD_OPTION_LISTENING_ADDRESS_REUSE,
	    (unsigned)1, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)(conf->conn_timeout_s ? conf->conn_timeout_s : DEFAULT_TIMEOUT_S),
	    MHD_OPTION_CONNECTION_LIMIT, conn_max, MHD_OPTION_URI_LOG_CALLBACK, on_uri, f,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, f, MHD_OPTION_NOTIFY_CONNECTION,
	    web_on_connection, f, MHD_OPTION_END);
	if (!f->d) {
		err = errno ? errno : EADDRINUSE;
		LOG_ERR("http", "%s face: listen on %s: %s", f->name, listen, strerror(err));
		return err;
	}
	di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
	f->port = di ? di->port : 0;
	di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!di) {
		LOG_ERR("http", "start: no epoll fd");
		return ENOTSUP;
	}
	f->timer = su_timer_create(su_root_task(root), 0);
	if (!f->timer || su_wait_create(w, di->epoll_fd, SU_WAIT_IN)) {
		LOG_ERR("http", "start: cannot make a timer or a wait");
		return ENOMEM;
	}
	f->widx = su_root_register(root, w, on_wait, f, 0);
	if (f->widx < 0) {
		su_wait_destroy(w);
		LOG_ERR("http", "start: cannot register with the loop");
		return EIO;
	}
	arm(f);
	return 0;
}

int mod_http_alloc(struct mod_http **hp, su_root_t *root, const struct mod_http_conf *conf)
{
	static const struct mod_http_conf none;
	struct sockaddr_storage ss = {0}, ass = {0};
	struct mod_http *h;
	const char *listen, *admin_listen;
	unsigned i;
	int err = 0;

	if (!hp || !root)
		return EINVAL;
	if (!conf)
		conf = &none;
	listen = conf->listen && conf->listen[0] ? conf->listen : DEFAULT_LISTEN;
	admin_listen = conf->admin_listen && conf->admin_listen[0] ? conf->admin_listen : NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return ENOMEM;
	h->root = root;
	for (i = 0; i < 2; i++) {
		h->faces[i].h = h;
		h->faces[i].widx = -1;
	}
	h->loopback_only = conf->admin_loopback_only;
	h->body_max = conf->body_max ? conf->body_max : DEFAULT_BODY_MAX;
	h->rate = conf->rate > 0 ? conf->rate : DEFAULT_RATE;
	h->burst = conf->burst ? conf->burst : DEFAULT_BURST;
	h->per_ip_limit = conf->per_ip_limit;
	h->header_s = conf->header_timeout_s ? conf->header_timeout_s : DEFAULT_HEADER_S;
	h->body_s = conf->body_timeout_s ? conf->body_timeout_s : DEFAULT_BODY_S;
	if (conf->admin_token && conf->admin_token[0]) {
		h->have_token = true;
		sha256(conf->admin_token, strlen(conf->admin_token), h->token_hash);
	}
	h->buckets = calloc(BUCKETS, sizeof(*h->buckets));
	h->sweep = su_timer_create(su_root_task(root), 0);
	if (!h->buckets || !h->sweep) {
		err = ENOMEM;
		goto out;
	}
	err = web_parse_listen(listen, &ss);
	if (err) {
		LOG_ERR("http", "listen: want IP:PORT or [IPv6]:PORT");
		goto out;
	}
	if (admin_listen) {
		err = web_parse_listen(admin_listen, &ass);
		if (err) {
			LOG_ERR("http", "admin_listen: want IP:PORT or [IPv6]:PORT");
			goto out;
		}
		if (web_same_port(&ss, &ass)) {
			LOG_ERR("http", "admin_listen: must not take the port of listen");
			err = EINVAL;
			goto out;
		}
	}
	h->faces[0].name = admin_listen ? "public" : "http";
	h->faces[0].routes = admin_listen ? MOD_HTTP_PUBLIC : MOD_HTTP_PUBLIC | MOD_HTTP_ADMIN;
	h->nfaces = 1;
	err = face_start(&h->faces[0], &ss, listen, conf);
	if (err)
		goto out;
	if (admin_listen) {
		h->faces[1].name = "admin";
		h->faces[1].routes = MOD_HTTP_ADMIN;
		h->nfaces = 2;
		err = face_start(&h->faces[1], &ass, admin_listen, conf);
		if (err)
			goto out;
	}
	*hp = h;
	h = NULL;
out:
	mod_http_free(h);
	return err;
}

unsigned mod_http_port(const struct mod_http *h)
{
	return h->faces[0].port;
}

unsigned mod_http_admin_port(const struct mod_http *h)
{
	return h->nfaces > 1 ? h->faces[1].port : 0;
}

void mod_http_free(struct mod_http *h)
{
	struct mod_http_req *req;
	unsigned i;

	if (!h)
		return;
	/* MHD refuses to stop with suspended connections: answer them first */
	while ((req = LIST_FIRST(&h->deferred))) {
		req_unlink(req);
		if (req->cancel)
			req->cancel(req->cancel_arg);
		mod_http_reply_error(req, 503, "server shutting down");
	}
	/* stopping a daemon ends its requests, which would set deadlines: no sweep from here on */
	if (h->sweep)
		su_timer_destroy(h->sweep);
	h->sweep = NULL;
	for (i = 0; i < 2; i++) {
		struct face *f = &h->faces[i];

		if (f->widx >= 0)
			su_root_deregister(h->root, f->widx);
		if (f->timer)
			su_timer_destroy(f->timer);
		f->timer = NULL;
		if (f->d)
			MHD_stop_daemon(f->d);
		free(f->peers);
	}
	web_routes_free(h);
	free(h->buckets);
	free(h);
}
