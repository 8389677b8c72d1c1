/*
 * web/http: libmicrohttpd in external-epoll mode on the su_root loop. Each face (one
 * listener, or a public and an admin one) is one MHD daemon: its epoll fd is one wait on the
 * root and MHD_get_timeout() drives one su_timer. Requests are matched to routes on their
 * headers, so refusals (404, 405, 401, 403, 429, 413) are sent before any body is read.
 *
 * MHD 0.9.75 only has an idle timeout, which a client sending a byte now and then never
 * meets. So every connection carries a deadline for its request headers and one for its body;
 * one su_timer sweeps the late ones and shuts their sockets down, which MHD then sees as the
 * peer closing (it still owns and closes the descriptor).
 */
#define SU_WAKEUP_ARG_T void
#define SU_TIMER_ARG_T  void

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <microhttpd.h>

#include "util/hash.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sofia-sip/su_wait.h>

#include "web/http.h"
#include "metrics/metrics.h"

#define SEGS_MAX          16
#define BUCKETS           4096 /* power of two */
#define BUCKET_PROBE      8
#define TIMER_MAX_MS      (3600 * 1000)
#define DEFAULT_LISTEN    "127.0.0.1:8080"
#define DEFAULT_BODY_MAX  (8u << 20)
#define DEFAULT_RATE      10.0
#define DEFAULT_BURST     20
#define DEFAULT_TIMEOUT_S 30
#define DEFAULT_CONN_MAX  512
#define DEFAULT_HEADER_S  10
#define DEFAULT_BODY_S    30
#define REFUSED_LOG_S     10   /* at most one line per face this often about refused connections */
#define SWEEP_SLACK_S     0.25 /* a deadline may be met this late: sweeps come in batches */

/* One route; owned by its server's list. */
struct route {
	struct route *next;
	char *method;
	char *pattern;
	char *segs[SEGS_MAX]; /* literal text, or the name without braces for a param */
	bool param[SEGS_MAX];
	unsigned nseg;
	unsigned literals;
	unsigned flags;
	mod_http_h *fn;
	void *arg;
};

/* A token bucket for one source address; addresses are kept as IPv6 (v4-mapped). */
struct bucket {
	uint8_t addr[16];
	bool used;
	double tokens;
	double stamp; /* seconds, CLOCK_MONOTONIC */
};

struct hdr {
	struct hdr *next;
	char *name;
	char *value;
};

enum req_state {
	REQ_NEW,      /* headers seen, body (if any) coming */
	REQ_REFUSED,  /* answered before the handler (413 while reading the body) */
	REQ_HANDLED,  /* handler ran and replied */
	REQ_DEFERRED, /* handler deferred; connection suspended */
	REQ_RESUMED,  /* deferred reply is waiting for MHD to call us again */
};

struct face;

enum conn_phase {
	CONN_HEADERS, /* waiting for a request's line and headers: header deadline */
	CONN_BODY,    /* headers in, body coming: body deadline */
	CONN_BUSY,    /* handler, deferred reply or response on the wire: no deadline */
};

/* One TCP connection; owned by MHD's socket context (freed when MHD says it closed). */
struct conn {
	struct conn *next, *prev; /* in h->conns */
	struct face *f;
	struct MHD_Connection *mc;
	uint8_t key[16]; /* addr_key() of the peer */
	bool counted;    /* holds one of f->peers' counts */
	bool cut;        /* shut down by the sweep; MHD has yet to notice */
	bool line;       /* a request line came since the last reply */
	enum conn_phase phase;
	double deadline; /* CLOCK_MONOTONIC seconds, for CONN_HEADERS and CONN_BODY */
	unsigned requests;
	char peer[INET6_ADDRSTRLEN];
};

/* Open connections of one address (key) on one face; n == 0 is a free slot. */
struct peer {
	uint8_t key[16];
	unsigned n;
};

/* One listener; part of its server. */
struct face {
	struct mod_http *h;
	const char *name; /* "public" or "admin", for logs */
	unsigned routes;  /* the route flags served here */
	struct MHD_Daemon *d;
	int widx;
	su_timer_t *timer;
	bool running; /* inside MHD_run: no re-arming from replies */
	unsigned port;
	struct peer *peers; /* conn_max slots: no more addresses than connections */
	unsigned npeers;
	unsigned refused; /* over per_ip_limit since the last log line */
	double refused_logged;
};

/* One request; owned by MHD's connection (freed in on_completed). */
struct mod_http_req {
	struct mod_http *h;
	struct face *f;
	struct conn *c; /* NULL if its connection could not be tracked */
	struct MHD_Connection *conn;
	struct route *route;
	enum req_state state;
	bool started;   /* the access handler has seen it */
	bool in_access; /* inside our access handler: queue replies at once */
	char *raw;      /* path as sent, still percent-encoded: routing splits this */
	bool replied;
	char *method;
	char *path;
	char *pv[SEGS_MAX]; /* path parameter values by segment */
	char *body;
	size_t len, cap;
	size_t seen; /* body bytes received, kept or not */
	bool too_big;
	struct hdr *hdrs;
	struct MHD_Response *resp; /* deferred reply, queued when MHD calls back */
	unsigned status;
	mod_http_cancel_h *cancel;
	void *cancel_arg;
	struct mod_http_req *dnext, *dprev; /* in h->deferred */
	struct sockaddr_storage peer;
	char peer_str[INET6_ADDRSTRLEN];
};

/* The server; owned by whoever called mod_http_alloc. */
struct mod_http {
	su_root_t *root;
	struct face faces[2]; /* [0] public (and admin without admin_listen), [1] admin */
	unsigned nfaces;
	struct conn *conns;
	su_timer_t *sweep;
	double sweep_at; /* when the sweep timer fires; 0: not set */
	unsigned per_ip_limit;
	double header_s, body_s;
	struct route *routes;
	bool have_token;
	uint8_t token_hash[32];
	bool loopback_only;
	size_t body_max;
	double rate;
	double burst;
	struct bucket *buckets;
	struct mod_http_req *deferred;
};

static void log_err(const char *what, const char *why)
{
	fprintf(stderr, "qrxfer: http: %s: %s\n", what, why);
}

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
	log_err("mhd", buf);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned n = 32;

	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

/* ---- the loop ---- */

static void arm(struct face *f);

static void run(struct face *f)
{
	f->running = true;
	MHD_run(f->d);
	f->running = false;
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
static void kick(struct face *f)
{
	if (f->running)
		return;
	su_timer_set_interval(f->timer, on_timer, f, 0);
}

/* ---- routes ---- */

static void route_free(struct route *r)
{
	unsigned i;

	for (i = 0; i < r->nseg; i++)
		free(r->segs[i]);
	free(r->method);
	free(r->pattern);
	free(r);
}

static int route_parse(struct route *r, const char *pattern)
{
	const char *p = pattern, *e;
	size_t n;

	if (*p != '/')
		return EINVAL;
	while (*p == '/') {
		p++;
		e = strchr(p, '/');
		n = e ? (size_t)(e - p) : strlen(p);
		if (r->nseg == SEGS_MAX)
			return E2BIG;
		if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
			r->param[r->nseg] = true;
			r->segs[r->nseg] = strndup(p + 1, n - 2);
		} else {
			if (memchr(p, '{', n) || memchr(p, '}', n))
				return EINVAL;
			r->segs[r->nseg] = strndup(p, n);
			r->literals++;
		}
		if (!r->segs[r->nseg])
			return ENOMEM;
		r->nseg++;
		p += n;
	}
	return 0;
}

int mod_http_route(struct mod_http *h, const char *method, const char *pattern, unsigned flags,
                   mod_http_h *fn, void *arg)
{
	struct route *r, **rp;
	int err = 0;

	if (!h || !method || !pattern || !fn ||
	    (flags != MOD_HTTP_ADMIN && flags != MOD_HTTP_PUBLIC))
		return EINVAL;
	for (r = h->routes; r; r = r->next)
		if (!strcmp(r->method, method) && !strcmp(r->pattern, pattern))
			return EEXIST;
	r = calloc(1, sizeof(*r));
	if (!r)
		return ENOMEM;
	r->flags = flags;
	r->fn = fn;
	r->arg = arg;
	r->method = strdup(method);
	r->pattern = strdup(pattern);
	if (!r->method || !r->pattern) {
		err = ENOMEM;
		goto out;
	}
	err = route_parse(r, pattern);
	if (err)
		goto out;
	for (rp = &h->routes; *rp; rp = &(*rp)->next)
		;
	*rp = r;
	r = NULL;
out:
	if (r)
		route_free(r);
	return err;
}

/* Splits path into segments in place (path is modified). */
static int split(char *path, char **segs, unsigned *nseg)
{
	char *p = path;

	*nseg = 0;
	if (*p != '/')
		return EINVAL;
	while (*p == '/') {
		*p++ = '\0';
		if (*nseg == SEGS_MAX)
			return E2BIG;
		segs[(*nseg)++] = p;
		p += strcspn(p, "/");
	}
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s in place; EINVAL if it would hold a NUL. Bad escapes stay as they are. */
static int decode(char *s)
{
	char *o = s;
	int hi, lo;

	for (; *s; s++) {
		if (*s == '%' && (hi = hexval(s[1])) >= 0 && (lo = hexval(s[2])) >= 0) {
			*o = (char)(hi << 4 | lo);
			if (!*o)
				return EINVAL;
			o++;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return 0;
}

static bool route_match(const struct route *r, char **segs, unsigned nseg)
{
	unsigned i;

	if (r->nseg != nseg)
		return false;
	for (i = 0; i < nseg; i++) {
		if (r->param[i] ? !segs[i][0] : strcmp(r->segs[i], segs[i]))
			return false;
	}
	return true;
}

/*
 * Finds the route for method and raw (still encoded) path: the matching route with the most
 * literal segments among those face f serves. Segments are split before decoding, so "%2F"
 * stays inside a parameter. Without one for this method, allow gets the methods that would
 * match (for 405).
 */
static struct route *route_find(struct face *f, const char *method, const char *raw, char **segs,
                                unsigned *nseg, char *allow, size_t allowlen)
{
	struct mod_http *h = f->h;
	struct route *r, *best = NULL;
	char *copy;
	unsigned i;

	allow[0] = '\0';
	copy = strdup(raw);
	if (!copy || split(copy, segs, nseg)) {
		free(copy);
		return NULL;
	}
	for (i = 0; i < *nseg; i++) {
		if (decode(segs[i])) {
			free(copy);
			return NULL;
		}
	}
	for (r = h->routes; r; r = r->next) {
		if (!(r->flags & f->routes) || !route_match(r, segs, *nseg))
			continue;
		if (strcmp(r->method, method)) {
			if (!strstr(allow, r->method)) {
				if (allow[0])
					strncat(allow, ", ", allowlen - strlen(allow) - 1);
				strncat(allow, r->method, allowlen - strlen(allow) - 1);
			}
			continue;
		}
		if (!best || r->literals > best->literals)
			best = r;
	} /* segs point into copy, which goes: keep copies of the parameter values */
	if (best) {
		for (i = 0; i < *nseg; i++)
			segs[i] = best->param[i] ? strdup(segs[i]) : NULL;
		for (i = 0; i < *nseg; i++)
			if (best->param[i] && !segs[i])
				break;
		if (i < *nseg) {
			for (i = 0; i < *nseg; i++)
				free(segs[i]);
			best = NULL;
		}
	}
	free(copy);
	return best;
}

/* ---- the two faces ---- */

bool mod_http_is_loopback(const struct sockaddr *sa)
{
	static const uint8_t v6lo[16] = {[15] = 1};
	static const uint8_t v4mapped[12] = {[10] = 0xff, [11] = 0xff};
	const struct sockaddr_in6 *s6;

	if (!sa)
		return false;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family != AF_INET6)
		return false;
	s6 = (const struct sockaddr_in6 *)sa;
	if (!memcmp(s6->sin6_addr.s6_addr, v6lo, 16))
		return true;
	return !memcmp(s6->sin6_addr.s6_addr, v4mapped, 12) && s6->sin6_addr.s6_addr[12] == 127;
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

static void addr_key(const struct sockaddr *sa, uint8_t key[16])
{
	static const uint8_t v4mapped[12] = {[10] = 0xff, [11] = 0xff};

	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		memcpy(key, v4mapped, 12);
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		/* one host usually owns a whole /64: count it as one source */
		if (memcmp(key, v4mapped, 12))
			memset(key + 8, 0, 8);
	}
}

static uint32_t addr_hash(const uint8_t key[16])
{
	return hash_bytes(key, 16);
}

/*
 * Takes one token from the address's bucket; false when it is empty. The table is fixed:
 * an address without a slot takes the stalest one near its hash, which can only make the
 * limit laxer for that address, never stricter for another.
 */
static bool rate_take(struct mod_http *h, const struct sockaddr *sa)
{
	uint8_t key[16];
	struct bucket *b = NULL, *victim = NULL;
	uint32_t i0;
	double now = now_s();
	unsigned i;

	addr_key(sa, key);
	i0 = addr_hash(key);
	for (i = 0; i < BUCKET_PROBE; i++) {
		struct bucket *c = &h->buckets[(i0 + i) & (BUCKETS - 1)];

		if (c->used && !memcmp(c->addr, key, 16)) {
			b = c;
			break;
		}
		if (!victim || !c->used || (victim->used && c->stamp < victim->stamp))
			victim = c;
	}
	if (!b) {
		b = victim;
		memcpy(b->addr, key, 16);
		b->used = true;
		b->tokens = h->burst;
		b->stamp = now;
	}
	b->tokens = fmin(h->burst, b->tokens + (now - b->stamp) * h->rate);
	b->stamp = now;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

/* ---- connections: per-address limit, header and body deadlines ---- */

static struct peer *peer_find(struct face *f, const uint8_t key[16])
{
	unsigned i;

	for (i = 0; i < f->npeers; i++)
		if (f->peers[i].n && !memcmp(f->peers[i].key, key, 16))
			return &f->peers[i];
	return NULL;
}

/*
 * MHD's own MHD_OPTION_PER_IP_CONNECTION_LIMIT keys on the whole 128-bit IPv6 address, and
 * one host usually owns a /64: so we count connections by addr_key(), as the rate limit does.
 * Runs before MHD makes the connection; on_connection() counts it once made.
 */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct face *f = cls;
	struct peer *p;
	uint8_t key[16];
	char text[INET6_ADDRSTRLEN] = "?";
	double now;

	if (!f->h->per_ip_limit)
		return MHD_YES;
	addr_key(sa, key);
	p = peer_find(f, key);
	if (!p || p->n < f->h->per_ip_limit)
		return MHD_YES;
	metric_inc(METRIC_HTTP_CONNECTIONS_REFUSED_TOTAL);
	now = now_s();
	if (f->refused_logged && now - f->refused_logged < REFUSED_LOG_S) {
		f->refused++;
		return MHD_NO;
	}
	getnameinfo(sa, len, text, sizeof(text), NULL, 0, NI_NUMERICHOST);
	fprintf(stderr,
	        "qrxfer: http: %s: %s face: over per_ip_limit %u: connection refused (and %u "
	        "unlogged since the last such line; one line per %d s)\n",
	        text, f->name, f->h->per_ip_limit, f->refused, REFUSED_LOG_S);
	f->refused = 0;
	f->refused_logged = now;
	return MHD_NO;
}

static void on_sweep(su_root_magic_t *magic, su_timer_t *t, void *arg);

/* Makes the sweep run no later than at (plus the slack). */
static void sweep_by(struct mod_http *h, double at)
{
	double ms;

	at += SWEEP_SLACK_S;
	if (!h->sweep || (h->sweep_at && h->sweep_at <= at))
		return;
	ms = ceil((at - now_s()) * 1000.0) + 1;
	if (ms < 0)
		ms = 0;
	h->sweep_at = at;
	su_timer_set_interval(h->sweep, on_sweep, h, (su_duration_t)ms);
}

static void conn_phase(struct conn *c, enum conn_phase phase)
{
	struct mod_http *h = c->f->h;

	c->phase = phase;
	if (phase == CONN_BUSY)
		return;
	c->deadline = now_s() + (phase == CONN_HEADERS ? h->header_s : h->body_s);
	sweep_by(h, c->deadline);
}

/*
 * Shuts a late connection's socket down; MHD reads the end of it and closes it. A keep-alive
 * connection that sent nothing of a next request is idle, not slow: it goes without a word.
 */
static void conn_cut(struct conn *c)
{
	const union MHD_ConnectionInfo *ci;
	struct mod_http *h = c->f->h;

	c->cut = true;
	if (c->phase == CONN_BODY) {
		fprintf(stderr,
		        "qrxfer: http: %s: %s face: request body not complete %g s after its "
		        "headers: connection closed\n",
		        c->peer, c->f->name, h->body_s);
		metric_inc(METRIC_HTTP_CONNECTIONS_CUT_TOTAL);
	} else if (!c->requests || c->line) {
		fprintf(stderr,
		        "qrxfer: http: %s: %s face: no complete request headers %g s after %s: "
		        "connection closed\n",
		        c->peer, c->f->name, h->header_s,
		        c->requests ? "the last reply" : "connecting");
		metric_inc(METRIC_HTTP_CONNECTIONS_CUT_TOTAL);
	}
	ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		shutdown(ci->connect_fd, SHUT_RDWR);
	kick(c->f);
}

static void on_sweep(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct mod_http *h = arg;
	struct conn *c, *next;
	double now = now_s(), at = 0;

	h->sweep_at = 0;
	for (c = h->conns; c; c = next) {
		next = c->next;
		if (c->cut || c->phase == CONN_BUSY)
			continue;
		if (c->deadline <= now)
			conn_cut(c);
		else if (!at || c->deadline < at)
			at = c->deadline;
	}
	if (at)
		sweep_by(h, at);
}

static void conn_free(struct conn *c)
{
	struct mod_http *h = c->f->h;
	struct peer *p;

	if (c->counted && (p = peer_find(c->f, c->key)))
		p->n--;
	if (c->prev)
		c->prev->next = c->next;
	else if (h->conns == c)
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **ctx,
                          enum MHD_ConnectionNotificationCode what)
{
	const union MHD_ConnectionInfo *ci;
	struct face *f = cls;
	struct mod_http *h = f->h;
	struct conn *c;
	struct peer *p;
	unsigned i;

	if (what == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (*ctx)
			conn_free(*ctx);
		*ctx = NULL;
		return;
	}
	if (what != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return; /* untracked: no deadlines, uncounted; MHD's idle timeout still holds */
	c->f = f;
	c->mc = mc;
	ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;

		addr_key(sa, c->key);
		getnameinfo(sa,
		            sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		                                      : sizeof(struct sockaddr_in),
		            c->peer, sizeof(c->peer), NULL, 0, NI_NUMERICHOST);
		p = peer_find(f, c->key);
		for (i = 0; !p && i < f->npeers; i++)
			if (!f->peers[i].n)
				p = &f->peers[i];
		if (p) {
			memcpy(p->key, c->key, 16);
			p->n++;
			c->counted = true;
		}
	}
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	*ctx = c;
	conn_phase(c, CONN_HEADERS);
}

/* ---- requests ---- */

static void req_unlink(struct mod_http_req *req)
{
	struct mod_http *h = req->h;

	if (req->dprev)
		req->dprev->dnext = req->dnext;
	else if (h->deferred == req)
		h->deferred = req->dnext;
	if (req->dnext)
		req->dnext->dprev = req->dprev;
	req->dnext = req->dprev = NULL;
}

static void req_free(struct mod_http_req *req)
{
	struct hdr *x;
	unsigned i;

	req_unlink(req);
	while ((x = req->hdrs)) {
		req->hdrs = x->next;
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
	free(req->body);
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
		*lenp = req->len;
	return req->body ? req->body : "";
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

	j = json_loadb(mod_http_body(req, NULL), req->len, JSON_REJECT_DUPLICATES, &jerr);
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
	x->next = req->hdrs;
	req->hdrs = x;
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
	for (x = req->hdrs; x; x = x->next)
		MHD_add_response_header(resp, x->name, x->value);
	req->replied = true;
	count_status(status);
	if (req->in_access) {
		if (MHD_queue_response(req->conn, status, resp) != MHD_YES)
			log_err(req->path, "MHD refused the response; connection closes");
		MHD_destroy_response(resp);
		return 0;
	}
	/* deferred: MHD calls the access handler again after the resume, which queues it */
	req->resp = resp;
	req->status = status;
	if (req->state == REQ_DEFERRED) {
		req->state = REQ_RESUMED;
		MHD_resume_connection(req->conn);
		kick(req->f);
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
	req->dnext = h->deferred;
	if (h->deferred)
		h->deferred->dprev = req;
	h->deferred = req;
	req->state = REQ_DEFERRED;
	return 0;
}

/* No deadline once the request is read: a handler or a deferred reply takes its time. */
static void req_busy(struct mod_http_req *req)
{
	if (req->c)
		conn_phase(req->c, CONN_BUSY);
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
	log_err(req->path, "handler gave no reply");
	req->in_access = true;
	mod_http_reply_error(req, 500, "internal error: no reply");
	req->in_access = false;
	req->state = REQ_HANDLED;
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
	} else if (!rate_take(h, mod_http_peer(req))) {
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
		conn_phase(req->c, CONN_BODY);
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
	req->route = route_find(req->f, method, req->raw, segs, &nseg, allow, sizeof(allow));
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
	size_t cap;
	char *p;

	req->seen += n;
	if (req->too_big || req->len + n > req->h->body_max) {
		req->too_big = true;
		return 0;
	}
	if (req->len + n + 1 > req->cap) {
		cap = req->cap ? req->cap : 4096;
		while (cap < req->len + n + 1)
			cap *= 2;
		p = realloc(req->body, cap);
		if (!p)
			return ENOMEM;
		req->body = p;
		req->cap = cap;
	}
	memcpy(req->body + req->len, data, n);
	req->len += n;
	req->body[req->len] = '\0';
	return 0;
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
		conn_phase(req->c, CONN_HEADERS);
	}
	req_free(req);
}

/* ---- server ---- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss)
{
	struct addrinfo hints = {0}, *ai = NULL;
	char host[INET6_ADDRSTRLEN + 2];
	const char *port, *end;
	size_t n;
	int err;

	if (listen[0] == '[') {
		end = strchr(listen, ']');
		if (!end || end[1] != ':')
			return EINVAL;
		n = end - listen - 1;
		port = end + 2;
		listen++;
	} else {
		end = strrchr(listen, ':');
		if (!end)
			return EINVAL;
		n = end - listen;
		port = end + 1;
	}
	if (n >= sizeof(host) || !*port)
		return EINVAL;
	memcpy(host, listen, n);
	host[n] = '\0';
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	err = getaddrinfo(host, port, &hints, &ai);
	if (err)
		return EINVAL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	return 0;
}

/* Whether two listen addresses would take the same port (one wildcard takes it on all). */
static bool same_port(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	static const struct in6_addr any6 = IN6ADDR_ANY_INIT;
	const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
	const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;

	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return a4->sin_port && a4->sin_port == b4->sin_port &&
		       (a4->sin_addr.s_addr == b4->sin_addr.s_addr || !a4->sin_addr.s_addr ||
		        !b4->sin_addr.s_addr);
	return a6->sin6_port && a6->sin6_port == b6->sin6_port &&
	       (!memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) || !memcmp(&a6->sin6_addr, &any6, 16) ||
	        !memcmp(&b6->sin6_addr, &any6, 16));
}

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
	    flags, 0, on_accept, f, on_access, f, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, f->h,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)ss, MHD_OPTION_LISTENING_ADDRESS_REUSE,
	    (unsigned)1, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)(conf->conn_timeout_s ? conf->conn_timeout_s : DEFAULT_TIMEOUT_S),
	    MHD_OPTION_CONNECTION_LIMIT, conn_max, MHD_OPTION_URI_LOG_CALLBACK, on_uri, f,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, f, MHD_OPTION_NOTIFY_CONNECTION,
	    on_connection, f, MHD_OPTION_END);
	if (!f->d) {
		err = errno ? errno : EADDRINUSE;
		fprintf(stderr, "qrxfer: http: %s face: listen on %s: %s\n", f->name, listen,
		        strerror(err));
		return err;
	}
	di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
	f->port = di ? di->port : 0;
	di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!di) {
		log_err("start", "no epoll fd");
		return ENOTSUP;
	}
	f->timer = su_timer_create(su_root_task(root), 0);
	if (!f->timer || su_wait_create(w, di->epoll_fd, SU_WAIT_IN)) {
		log_err("start", "cannot make a timer or a wait");
		return ENOMEM;
	}
	f->widx = su_root_register(root, w, on_wait, f, 0);
	if (f->widx < 0) {
		su_wait_destroy(w);
		log_err("start", "cannot register with the loop");
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
	err = parse_listen(listen, &ss);
	if (err) {
		log_err("listen", "want IP:PORT or [IPv6]:PORT");
		goto out;
	}
	if (admin_listen) {
		err = parse_listen(admin_listen, &ass);
		if (err) {
			log_err("admin_listen", "want IP:PORT or [IPv6]:PORT");
			goto out;
		}
		if (same_port(&ss, &ass)) {
			log_err("admin_listen", "must not take the port of listen");
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
	struct route *r;
	unsigned i;

	if (!h)
		return;
	/* MHD refuses to stop with suspended connections: answer them first */
	while ((req = h->deferred)) {
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
	while ((r = h->routes)) {
		h->routes = r->next;
		route_free(r);
	}
	free(h->buckets);
	free(h);
}

/* ---- GET /metrics (admin) ---- */

static void on_metrics(struct mod_http_req *req, void *arg)
{
	size_t len;
	char *text;

	if (metrics_render(&text, &len)) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	mod_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

int mod_metrics_route(struct mod_http *h)
{
	return mod_http_route(h, "GET", "/metrics", MOD_HTTP_ADMIN, on_metrics, NULL);
}
