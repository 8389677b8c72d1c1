/*
 * web/http_int: what the server's files share (http.c: the loop, requests and replies;
 * router.c: routes; limits.c: addresses, the rate limit, per-address connection counts,
 * deadlines and deferred requests whose client goes). Internal to web/http.
 */
#ifndef QRXFER_WEB_HTTP_INT_H
#define QRXFER_WEB_HTTP_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <sofia-sip/su_wait.h>

#include "util/buf.h"
#include "web/http.h"

#define SEGS_MAX 16   /* path segments */
#define BUCKETS  4096 /* token buckets; a power of two */

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
	SLIST_ENTRY(hdr) link;
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
	bool kicked;  /* a reply was queued inside MHD_run: run again on the next turn */
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
	struct buf body;
	size_t seen; /* body bytes received, kept or not */
	bool too_big;
	SLIST_HEAD(, hdr) hdrs;
	struct MHD_Response *resp; /* deferred reply, queued when MHD calls back */
	unsigned status;
	mod_http_cancel_h *cancel;
	void *cancel_arg;
	int gone_idx; /* > 0: the root's wait on the socket for the client going (defer_until_gone)
	               */
	LIST_ENTRY(mod_http_req) dlink; /* in h->deferred while deferred (le_prev set) */
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
	LIST_HEAD(, mod_http_req) deferred;
};

/* router.c */

/*
 * The route for method and raw (still encoded) path among those face f serves, with the
 * parameter values in segs (the caller frees them); NULL without one, and then allow holds
 * the methods that would match (for 405).
 */
struct route *web_route_find(struct face *f, const char *method, const char *raw, char **segs,
                             unsigned *nseg, char *allow, size_t allowlen);
/* Frees every route of h. */
void web_routes_free(struct mod_http *h);

/* limits.c */

/* Parses "IP:PORT" or "[IPv6]:PORT" (numeric only) into ss: 0 or EINVAL. */
int web_parse_listen(const char *listen, struct sockaddr_storage *ss);
/* Whether two listen addresses would take the same port (one wildcard takes it on all). */
bool web_same_port(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* Takes one token from the bucket of sa's address; false when it is empty. */
bool web_rate_take(struct mod_http *h, const struct sockaddr *sa);
/* Moves c to phase and sets the deadline that goes with it. */
void web_conn_phase(struct conn *c, enum conn_phase phase);
/* MHD's accept policy: refuses an address over per_ip_limit on face cls. */
enum MHD_Result web_on_accept(void *cls, const struct sockaddr *sa, socklen_t len);
/* MHD's connection notices: tracks each connection of face cls (struct conn). */
void web_on_connection(void *cls, struct MHD_Connection *mc, void **ctx,
                       enum MHD_ConnectionNotificationCode what);

/* http.c */

/* Runs face f's daemon on the next loop turn. */
void web_kick(struct face *f);

#endif
