/*
 * web/limits: what the server knows of addresses. The public face's token buckets and the
 * per-address connection counts key on addr_key() (an IPv6 /64 is one source). Every
 * connection carries a deadline for its request headers and one for its body; one su_timer
 * sweeps the late ones and shuts their sockets down, which MHD then sees as the peer closing
 * (it still owns and closes the descriptor). A deferred request may have its socket watched
 * for its client closing it (mod_http_defer_until_gone).
 */
#define SU_WAKEUP_ARG_T void
#define SU_TIMER_ARG_T  void

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics/metrics.h"
#include "util/hash.h"
#include "util/log.h"
#include "web/http_int.h"

#define BUCKET_PROBE  8
#define REFUSED_LOG_S 10   /* at most one line per face this often about refused connections */
#define SWEEP_SLACK_S 0.25 /* a deadline may be met this late: sweeps come in batches */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- addresses ---- */

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

int web_parse_listen(const char *listen, struct sockaddr_storage *ss)
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

bool web_same_port(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
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
 * The table is fixed:
 * an address without a slot takes the stalest one near its hash, which can only make the
 * limit laxer for that address, never stricter for another.
 */
bool web_rate_take(struct mod_http *h, const struct sockaddr *sa)
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
enum MHD_Result web_on_accept(void *cls, const struct sockaddr *sa, socklen_t len)
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
	LOG_WARN("http",
	         "%s: %s face: over per_ip_limit %u: connection refused (and %u unlogged since the "
	         "last such line; one line per %d s)",
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

void web_conn_phase(struct conn *c, enum conn_phase phase)
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
		LOG_WARN("http",
		         "%s: %s face: request body not complete %g s after its headers: "
		         "connection closed",
		         c->peer, c->f->name, h->body_s);
		metric_inc(METRIC_HTTP_CONNECTIONS_CUT_TOTAL);
	} else if (!c->requests || c->line) {
		LOG_WARN(
		    "http",
		    "%s: %s face: no complete request headers %g s after %s: connection closed",
		    c->peer, c->f->name, h->header_s,
		    c->requests ? "the last reply" : "connecting");
		metric_inc(METRIC_HTTP_CONNECTIONS_CUT_TOTAL);
	}
	ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		shutdown(ci->connect_fd, SHUT_RDWR);
	web_kick(c->f);
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

void web_on_connection(void *cls, struct MHD_Connection *mc, void **ctx,
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
	web_conn_phase(c, CONN_HEADERS);
}

/* ---- deferred requests whose client goes ---- */

/* A deferred request's socket is readable: the client closed it (EOF or reset), or sent more. */
static int on_client_gone(su_root_magic_t *magic, su_wait_t *w, void *arg)
{
	struct mod_http_req *req = arg;
	mod_http_cancel_h *cancel = req->cancel;
	char c;
	ssize_t n = recv(w->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	/* stop watching either way: more bytes (a pipelined request) are MHD's once it resumes */
	su_root_deregister(req->h->root, req->gone_idx);
	req->gone_idx = 0;
	if (n > 0)
		return 0;
	req->cancel = NULL;
	if (cancel)
		cancel(req->cancel_arg);
	/* resumed with an answer nobody reads: MHD meets the closed socket and frees req */
	mod_http_reply_error(req, 499, "the client closed the connection");
	return 0;
}

int mod_http_defer_until_gone(struct mod_http_req *req, mod_http_cancel_h *cancel, void *arg)
{
	const union MHD_ConnectionInfo *ci;
	su_wait_t w[1];
	int err, idx;

	if (!cancel)
		return EINVAL;
	ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci || su_wait_create(w, ci->connect_fd, SU_WAIT_IN | SU_WAIT_HUP))
		return EIO;
	err = mod_http_defer(req, cancel, arg);
	if (err) {
		su_wait_destroy(w);
		return err;
	}
	idx = su_root_register(req->h->root, w, on_client_gone, req, 0);
	if (idx <= 0) {
		su_wait_destroy(w);
		return 0; /* deferred all the same: answered in bounded time by its owner */
	}
	req->gone_idx = idx;
	return 0;
}
