/* web/: the HTTP side: server and router, the JSON API, the pages, the webhooks and their forms. */
/*
 * web/http: the HTTP server (libmicrohttpd) on the su_root loop, one thread, never
 * blocking. Two faces (DESIGN.md, "Promises"): admin routes want a bearer token and, by
 * default, a loopback peer; public routes are rate limited per source address.
 *
 * A handler runs on the loop and answers with one of the mod_http_reply*() calls, or calls *
 * mod_http_defer() and answers later from the loop (a store completion, a timer). A request object
 * lives until its reply is sent; do not touch it after replying. A deferred request must be
 * answered eventually: MHD does not time out suspended connections.
 *
 * Public rate limiting and the per-address connection limit key on the TCP peer (an IPv6 /64
 * counts as one source); behind a reverse proxy every client shares the proxy's bucket.
 * A connection whose request headers or body are late (header_timeout_s, body_timeout_s) is
 * closed with one log line naming the peer (an idle keep-alive one without a word); a
 * handler's time and a deferred reply have no deadline.
 */
#ifndef QRXFER_WEB_HTTP_H
#define QRXFER_WEB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <jansson.h>

/* As in <sofia-sip/su_wait.h>, without fixing the includer's SU_ROOT_MAGIC_T. */
typedef struct su_root_s su_root_t;

struct mod_http;
struct mod_http_req;

/* Route flags: exactly one face. */
enum {
	MOD_HTTP_ADMIN = 1 << 0,  /* bearer token; loopback peer if admin_loopback_only */
	MOD_HTTP_PUBLIC = 1 << 1, /* anyone; token-bucket rate limit per source address */
};

/* Zero fields take the default in brackets. */
struct mod_http_conf {
	const char *listen;      /* "127.0.0.1:8080", "[::1]:8080", port 0 = any [127.0.0.1:8080] */
	const char *admin_token; /* NULL or "" refuses every admin request (401) */
	bool admin_loopback_only; /* 403 for admin routes from other peers */
	size_t body_max;          /* request body cap in bytes, 413 above [8 MiB] */
	double rate;              /* public requests per second per address [10] */
	unsigned burst;           /* bucket size [20] */
	unsigned conn_timeout_s;  /* idle connection timeout [30] */
	unsigned conn_max;        /* concurrent connections per face [512] */
	/* NULL or "": admin routes are served on listen; else only here, and listen serves the
	 * public routes only (404 for the others) [none] */
	const char *admin_listen;
	unsigned per_ip_limit;     /* connections per address (IPv6: per /64) per face [0: none] */
	unsigned header_timeout_s; /* request line and headers, from connect or last reply [10] */
	unsigned body_timeout_s;   /* request body, from the end of its headers [30] */
};

/* Handles one request; must reply or defer before returning. */
typedef void(mod_http_h)(struct mod_http_req *req, void *arg);
/* Told that a deferred request will never be answered (server freed); req is gone. */
typedef void(mod_http_cancel_h)(void *arg);

/* Starts listening on conf->listen, driven by root. */
int mod_http_alloc(struct mod_http **hp, su_root_t *root, const struct mod_http_conf *conf);
/* Cancels deferred requests, closes every connection and stops; NULL is fine. Not from a
 * handler. */
void mod_http_free(struct mod_http *h);
/* The bound port of listen (useful with port 0). */
unsigned mod_http_port(const struct mod_http *h);
/* The bound port of admin_listen; 0 without one. */
unsigned mod_http_admin_port(const struct mod_http *h);

/*
 * Adds a route; pattern segments "{name}" match one path segment, given to the handler by
 * mod_http_param(). Literal segments win over "{name}" ones; EEXIST for a duplicate.
 */
int mod_http_route(struct mod_http *h, const char *method, const char *pattern, unsigned flags,
                   mod_http_h *fn, void *arg);

/* Request method, e.g. "GET". */
const char *mod_http_method(const struct mod_http_req *req);
/* Request path, percent-decoded, without the query. */
const char *mod_http_path(const struct mod_http_req *req);
/* Value of path segment "{name}", or NULL. */
const char *mod_http_param(const struct mod_http_req *req, const char *name);
/* Value of query argument name (decoded), or NULL. */
const char *mod_http_query(const struct mod_http_req *req, const char *name);
/* Value of request header name (any case), or NULL. */
const char *mod_http_header(const struct mod_http_req *req, const char *name);
/* Request body (NUL-terminated for convenience; *lenp excludes the NUL). */
const char *mod_http_body(const struct mod_http_req *req, size_t *lenp);
/* The peer's address. */
const struct sockaddr *mod_http_peer(const struct mod_http_req *req);
/* The peer's address as text, "127.0.0.1" or "::1". */
const char *mod_http_peer_str(const struct mod_http_req *req);

/*
 * Parses the body as JSON into *jp (yours to json_decref). On failure it has already replied
 * 400 with jansson's text and position, and returns EBADMSG: just return.
 */
int mod_http_body_json(struct mod_http_req *req, json_t **jp);

/* Adds a response header to the reply to come (e.g. Location, Cache-Control). */
int mod_http_reply_header(struct mod_http_req *req, const char *name, const char *value);
/* Replies with a copy of data. */
int mod_http_reply(struct mod_http_req *req, unsigned status, const char *content_type,
                   const void *data, size_t len);
/* Replies with JSON; takes the reference to body (NULL replies 500). */
int mod_http_reply_json(struct mod_http_req *req, unsigned status, json_t *body);
/* Replies {"error": why} with status. */
int mod_http_reply_error(struct mod_http_req *req, unsigned status, const char *why);
/* printf-style mod_http_reply_error. */
int mod_http_reply_errorf(struct mod_http_req *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps req open after the handler returns; reply later from the loop. cancel may be NULL. */
int mod_http_defer(struct mod_http_req *req, mod_http_cancel_h *cancel, void *arg);

/*
 * mod_http_defer(), and while req waits its socket is watched: when the client closes it
 * (a long poll given up, a page closed), cancel runs at once and req is dropped, instead of
 * holding what it holds until it is answered. A client that vanishes without closing is not
 * seen: answer in bounded time anyway. cancel must not be NULL.
 */
int mod_http_defer_until_gone(struct mod_http_req *req, mod_http_cancel_h *cancel, void *arg);

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool mod_http_is_loopback(const struct sockaddr *sa);

/* Adds GET /metrics (admin): the Prometheus text of metrics/. */
int mod_metrics_route(struct mod_http *h);

#endif
