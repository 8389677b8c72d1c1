/*
 * web/http on a real su_root: the test's thread runs the loop while a client thread
 * talks HTTP to it with libcurl easy over 127.0.0.1.
 */
#define SU_TIMER_ARG_T void

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include "web/http.h"
#include "metrics/metrics.h"
#include "tests/unit/leakcheck.h"

#define TOKEN    "s3cret-token"
#define BODY_MAX 1024

static su_root_t *root;
static struct mod_http *srv;
static unsigned port;

/* What the client sends and gets back. */
struct call {
	const char *method;
	const char *path;
	const char *auth; /* full Authorization value, or NULL */
	const char *body;
	size_t len;
	bool chunked;
	unsigned port;     /* 0: the server's (public) port */
	const char *iface; /* source address, or NULL */
	/* results */
	CURLcode rc;
	long status;
	char body_in[65536];
	size_t body_in_len;
	char allow[128];
	char www_auth[128];
	char ctype[128];
	int done;
};

static size_t on_body(char *d, size_t s, size_t n, void *p)
{
	struct call *c = p;
	size_t len = s * n, room = sizeof(c->body_in) - 1 - c->body_in_len;

	if (len > room)
		len = room;
	memcpy(c->body_in + c->body_in_len, d, len);
	c->body_in_len += len;
	c->body_in[c->body_in_len] = '\0';
	return s * n;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);

	if (len <= n + 1 || strncasecmp(line, name, n) || line[n] != ':')
		return;
	line += n + 1;
	len -= n + 1;
	while (len && *line == ' ')
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len >= outlen)
		len = outlen - 1;
	memcpy(out, line, len);
	out[len] = '\0';
}

static size_t on_header(char *d, size_t s, size_t n, void *p)
{
	struct call *c = p;

	header_value(d, s * n, "Allow", c->allow, sizeof(c->allow));
	header_value(d, s * n, "WWW-Authenticate", c->www_auth, sizeof(c->www_auth));
	header_value(d, s * n, "Content-Type", c->ctype, sizeof(c->ctype));
	return s * n;
}

static void *client(void *p)
{
	struct call *c = p;
	struct curl_slist *h = NULL;
	char url[512], auth[256];
	CURL *e = curl_easy_init();

	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", c->port ? c->port : port, c->path);
	if (c->iface)
		curl_easy_setopt(e, CURLOPT_INTERFACE, c->iface);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
	if (c->auth) {
		snprintf(auth, sizeof(auth), "Authorization: %s", c->auth);
		h = curl_slist_append(h, auth);
	}
	if (c->chunked)
		h = curl_slist_append(h, "Transfer-Encoding: chunked");
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	if (c->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)c->len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
	}
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
	c->rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Runs the loop until the client thread is done (or 10 s pass). */
static void exchange(struct call *c)
{
	pthread_t t;
	time_t end = time(NULL) + 10;

	cr_assert_eq(pthread_create(&t, NULL, client, c), 0);
	while (!__atomic_load_n(&c->done, __ATOMIC_ACQUIRE) && time(NULL) < end)
		su_root_step(root, 5);
	pthread_join(t, NULL);
}

static struct call *get(const char *path, const char *auth)
{
	struct call *c = calloc(1, sizeof(*c));

	c->method = "GET";
	c->path = path;
	c->auth = auth;
	exchange(c);
	return c;
}

static struct call *post(const char *path, const char *auth, const char *body, size_t len,
                         bool chunked)
{
	struct call *c = calloc(1, sizeof(*c));

	c->method = "POST";
	c->path = path;
	c->auth = auth;
	c->body = body;
	c->len = len;
	c->chunked = chunked;
	exchange(c);
	return c;
}

/* The error text of a {"error": ...} reply. */
static const char *error_of(struct call *c, char *buf, size_t len)
{
	json_t *j = json_loads(c->body_in, 0, NULL);
	const char *s = j ? json_string_value(json_object_get(j, "error")) : NULL;

	snprintf(buf, len, "%s", s ? s : "(none)");
	json_decref(j);
	return buf;
}

/* ---- handlers ---- */

static void h_echo_params(struct mod_http_req *req, void *arg)
{
	const char *q = mod_http_query(req, "q");

	mod_http_reply_json(req, 200,
	                    json_pack("{s:s?, s:s?, s:s?, s:s}", "id", mod_http_param(req, "id"),
	                              "move", mod_http_param(req, "move"), "q", q, "route",
	                              (const char *)arg));
}

static void h_json_echo(struct mod_http_req *req, void *arg)
{
	json_t *j;

	if (mod_http_body_json(req, &j))
		return;
	mod_http_reply_json(req, 200, j);
}

static void h_body_len(struct mod_http_req *req, void *arg)
{
	size_t len;
	char buf[32];

	mod_http_body(req, &len);
	snprintf(buf, sizeof(buf), "%zu%s", len,
	         mod_http_header(req, "Transfer-Encoding") ? " chunked" : "");
	mod_http_reply(req, 200, "text/plain", buf, strlen(buf));
}

static bool later_handler_returned;
static bool later_timer_fired;

static void on_later(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	struct mod_http_req *req = arg;

	later_timer_fired = later_handler_returned;
	mod_http_reply(req, 202, "text/plain", "later", 5);
	su_timer_destroy(t);
}

static void h_later(struct mod_http_req *req, void *arg)
{
	su_timer_t *t = su_timer_create(su_root_task(root), 50);

	cr_assert_eq(mod_http_defer(req, NULL, NULL), 0);
	su_timer_set(t, on_later, req);
	later_handler_returned = true;
}

static int never_cancelled;
static bool never_deferred;

static void on_never_cancel(void *arg)
{
	never_cancelled++;
}

static void h_never(struct mod_http_req *req, void *arg)
{
	mod_http_defer(req, on_never_cancel, NULL);
	never_deferred = true;
}

static void h_noreply(struct mod_http_req *req, void *arg)
{
}

static void setup(void)
{
	struct mod_http_conf conf = {
	    .listen = "127.0.0.1:0",
	    .admin_token = TOKEN,
	    .admin_loopback_only = true,
	    .body_max = BODY_MAX,
	    .rate = 0.001, /* no refill within a test */
	    .burst = 3,
	};

	su_init();
	root = su_root_create(NULL);
	cr_assert_not_null(root);
	cr_assert_eq(mod_http_alloc(&srv, root, &conf), 0);
	port = mod_http_port(srv);
	cr_assert_neq(port, 0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/calls/{id}/moves/{move}", MOD_HTTP_ADMIN,
	                            h_echo_params, "calls"),
	             0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/things/{id}", MOD_HTTP_ADMIN, h_echo_params,
	                            "thing-param"),
	             0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/things/special", MOD_HTTP_ADMIN, h_echo_params,
	                            "thing-literal"),
	             0);
	cr_assert_eq(mod_http_route(srv, "DELETE", "/v1/things/{id}", MOD_HTTP_ADMIN, h_echo_params,
	                            "thing-delete"),
	             0);
	cr_assert_eq(mod_http_route(srv, "GET", "/m/{id}", MOD_HTTP_PUBLIC, h_echo_params, "page"),
	             0);
	cr_assert_eq(mod_http_route(srv, "POST", "/v1/echo", MOD_HTTP_ADMIN, h_json_echo, NULL), 0);
	cr_assert_eq(mod_http_route(srv, "POST", "/v1/scans", MOD_HTTP_PUBLIC, h_body_len, NULL),
	             0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/later", MOD_HTTP_ADMIN, h_later, NULL), 0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/never", MOD_HTTP_ADMIN, h_never, NULL), 0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/noreply", MOD_HTTP_ADMIN, h_noreply, NULL), 0);
	cr_assert_eq(mod_metrics_route(srv), 0);
}

static void teardown(void)
{
	mod_http_free(srv);
	srv = NULL;
	su_root_destroy(root);
	su_deinit();
	leakcheck();
}

TestSuite(http, .init = setup, .fini = teardown);

#define AUTH "Bearer " TOKEN

Test(http, path_params_and_query)
{
	struct call *c = get("/v1/calls/c-42/moves/m%207?q=hello%20there", AUTH);
	json_t *j;

	cr_assert_eq(c->rc, CURLE_OK);
	cr_assert_eq(c->status, 200);
	cr_assert_str_eq(c->ctype, "application/json");
	j = json_loads(c->body_in, 0, NULL);
	cr_assert_not_null(j, "body: %s", c->body_in);
	cr_assert_str_eq(json_string_value(json_object_get(j, "id")), "c-42");
	cr_assert_str_eq(json_string_value(json_object_get(j, "move")), "m 7");
	cr_assert_str_eq(json_string_value(json_object_get(j, "q")), "hello there");
	cr_assert_str_eq(json_string_value(json_object_get(j, "route")), "calls");
	json_decref(j);
	free(c);
}

Test(http, literal_segment_wins_over_param)
{
	struct call *a = get("/v1/things/special", AUTH);
	struct call *b = get("/v1/things/other", AUTH);

	cr_assert_eq(a->status, 200);
	cr_assert(strstr(a->body_in, "\"route\":\"thing-literal\""), "%s", a->body_in);
	cr_assert(strstr(b->body_in, "\"route\":\"thing-param\""), "%s", b->body_in);
	cr_assert(strstr(b->body_in, "\"id\":\"other\""), "%s", b->body_in);
	free(a);
	free(b);
}

Test(http, unknown_path_is_404_json)
{
	struct call *c = get("/v1/nothing/here", AUTH);
	struct call *d = get("/v1/things", AUTH); /* fewer segments than any route */
	char buf[256];

	cr_assert_eq(c->status, 404);
	cr_assert_str_eq(c->ctype, "application/json");
	cr_assert_str_eq(error_of(c, buf, sizeof(buf)), "no such resource: /v1/nothing/here");
	cr_assert_eq(d->status, 404);
	free(c);
	free(d);
}

Test(http, wrong_method_is_405_with_allow)
{
	struct call c = {.method = "PUT", .path = "/v1/things/7", .auth = AUTH};

	exchange(&c);
	cr_assert_eq(c.status, 405);
	cr_assert(strstr(c.allow, "GET"), "Allow: %s", c.allow);
	cr_assert(strstr(c.allow, "DELETE"), "Allow: %s", c.allow);
	cr_assert_null(strstr(c.allow, "POST"), "Allow: %s", c.allow);
}

Test(http, admin_needs_the_bearer_token)
{
	struct call *none = get("/v1/things/1", NULL);
	struct call *wrong = get("/v1/things/1", "Bearer s3cret-toke");
	struct call *longer = get("/v1/things/1", "Bearer " TOKEN "x");
	struct call *basic = get("/v1/things/1", "Basic " TOKEN);
	struct call *ok = get("/v1/things/1", AUTH);
	char buf[256];

	cr_assert_eq(none->status, 401);
	cr_assert(strstr(none->www_auth, "Bearer"), "%s", none->www_auth);
	cr_assert_str_eq(error_of(none, buf, sizeof(buf)), "missing or wrong bearer token");
	cr_assert_eq(wrong->status, 401);
	cr_assert_eq(longer->status, 401);
	cr_assert_eq(basic->status, 401);
	cr_assert_eq(ok->status, 200);
	free(none);
	free(wrong);
	free(longer);
	free(basic);
	free(ok);
}

Test(http, admin_routes_are_not_rate_limited)
{
	int i;

	for (i = 0; i < 6; i++) {
		struct call *c = get("/v1/things/1", AUTH);

		cr_assert_eq(c->status, 200, "request %d", i);
		free(c);
	}
}

Test(http, public_routes_are_rate_limited)
{
	char buf[256];
	int i;

	/* burst 3, refill 0.001/s: three pass, the fourth is refused */
	for (i = 0; i < 3; i++) {
		struct call *c = get("/m/abc", NULL);

		cr_assert_eq(c->status, 200, "request %d", i);
		free(c);
	}
	struct call *c = get("/m/abc", NULL);
	cr_assert_eq(c->status, 429);
	cr_assert_str_eq(error_of(c, buf, sizeof(buf)), "too many requests");
	cr_assert_geq(metric_get(METRIC_HTTP_RATE_LIMITED_TOTAL), 1);
	free(c);
}

Test(http, bad_json_is_400_with_the_reason)
{
	static const char bad[] = "{\"a\": }";
	static const char good[] = "{\"a\":[1,2]}";
	struct call *c = post("/v1/echo", AUTH, bad, sizeof(bad) - 1, false);
	struct call *d = post("/v1/echo", AUTH, good, sizeof(good) - 1, false);
	char buf[256];

	cr_assert_eq(c->status, 400);
	error_of(c, buf, sizeof(buf));
	cr_assert(!strncmp(buf, "invalid JSON body: line 1 column 7: ", 36), "%s", buf);
	cr_assert_eq(d->status, 200);
	cr_assert_str_eq(d->body_in, good);
	free(c);
	free(d);
}

Test(http, body_over_the_cap_is_413)
{
	char *big = calloc(1, BODY_MAX + 2);
	struct call *c, *d, *e;
	char buf[256];

	memset(big, 'x', BODY_MAX + 1);
	c = post("/v1/scans", NULL, big, BODY_MAX + 1, false);
	cr_assert_eq(c->status, 413);
	cr_assert_str_eq(error_of(c, buf, sizeof(buf)), "body over 1024 bytes");
	/* without Content-Length the body is read, dropped, then refused */
	d = post("/v1/scans", NULL, big, BODY_MAX + 1, true);
	cr_assert_eq(d->status, 413);
	/* exactly the cap is fine */
	e = post("/v1/scans", NULL, big, BODY_MAX, false);
	cr_assert_eq(e->status, 200);
	cr_assert_str_eq(e->body_in, "1024");
	free(big);
	free(c);
	free(d);
	free(e);
}

Test(http, chunked_body_is_assembled)
{
	char *big = calloc(1, BODY_MAX + 1);
	struct call *c;

	memset(big, 'y', BODY_MAX);
	c = post("/v1/scans", NULL, big, BODY_MAX, true);
	cr_assert_eq(c->status, 200);
	cr_assert_str_eq(c->body_in, "1024 chunked");
	free(big);
	free(c);
}

Test(http, deferred_reply_comes_from_the_loop)
{
	struct call *c = get("/v1/later", AUTH);

	cr_assert_eq(c->status, 202);
	cr_assert_str_eq(c->body_in, "later");
	cr_assert(later_timer_fired, "reply was not sent after the handler returned");
	free(c);
}

Test(http, handler_without_reply_is_500)
{
	struct call *c;

	cr_redirect_stderr();
	c = get("/v1/noreply", AUTH);

	cr_assert_eq(c->status, 500);
	free(c);
}

Test(http, free_cancels_deferred_requests)
{
	struct call c = {.method = "GET", .path = "/v1/never", .auth = AUTH};
	time_t end = time(NULL) + 10;
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, client, &c), 0);
	while (!never_deferred && time(NULL) < end)
		su_root_step(root, 5);
	cr_assert(never_deferred);
	mod_http_free(srv);
	srv = NULL;
	cr_assert_eq(never_cancelled, 1);
	pthread_join(t, NULL);
	/* the client got the 503 or saw the connection close; never a success */
	cr_assert(c.rc != CURLE_OK || c.status == 503, "rc %d status %ld", c.rc, c.status);
}

Test(http, metrics_route_is_admin_and_text)
{
	struct call *no = get("/metrics", NULL);
	struct call *c = get("/metrics", AUTH);

	cr_assert_eq(no->status, 401);
	cr_assert_eq(c->status, 200);
	cr_assert(!strncmp(c->ctype, "text/plain; version=0.0.4", 25), "%s", c->ctype);
	cr_assert(strstr(c->body_in, "# TYPE qrxfer_http_requests_total counter\n"), "%s",
	          c->body_in);
	cr_assert(strstr(c->body_in, "qrxfer_http_responses_total{code=\"4xx\"} 1\n"), "%s",
	          c->body_in);
	free(no);
	free(c);
}

Test(http, loopback_predicate)
{
	struct sockaddr_in a4 = {.sin_family = AF_INET};
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};

	inet_pton(AF_INET, "127.3.2.1", &a4.sin_addr);
	cr_assert(mod_http_is_loopback((struct sockaddr *)&a4));
	inet_pton(AF_INET, "10.0.0.1", &a4.sin_addr);
	cr_assert_not(mod_http_is_loopback((struct sockaddr *)&a4));
	inet_pton(AF_INET6, "::1", &a6.sin6_addr);
	cr_assert(mod_http_is_loopback((struct sockaddr *)&a6));
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &a6.sin6_addr);
	cr_assert(mod_http_is_loopback((struct sockaddr *)&a6));
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &a6.sin6_addr);
	cr_assert_not(mod_http_is_loopback((struct sockaddr *)&a6));
	inet_pton(AF_INET6, "2001:db8::1", &a6.sin6_addr);
	cr_assert_not(mod_http_is_loopback((struct sockaddr *)&a6));
}

Test(http, routes_are_checked)
{
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/things/{id}", MOD_HTTP_ADMIN, h_noreply, NULL),
	             EEXIST);
	cr_assert_eq(mod_http_route(srv, "GET", "no-slash", MOD_HTTP_ADMIN, h_noreply, NULL),
	             EINVAL);
	cr_assert_eq(mod_http_route(srv, "GET", "/a{b}", MOD_HTTP_ADMIN, h_noreply, NULL), EINVAL);
	cr_assert_eq(
	    mod_http_route(srv, "GET", "/x", MOD_HTTP_ADMIN | MOD_HTTP_PUBLIC, h_noreply, NULL),
	    EINVAL);
}

Test(http, ipv6_loopback_listen)
{
	struct mod_http_conf conf = {.listen = "[::1]:0", .admin_token = TOKEN};
	struct mod_http *h6 = NULL;

	cr_assert_eq(mod_http_alloc(&h6, root, &conf), 0);
	cr_assert_neq(mod_http_port(h6), 0);
	mod_http_free(h6);
}

Test(http, bad_listen_is_refused)
{
	struct mod_http_conf conf = {.listen = "localhost"};
	struct mod_http *h = NULL;

	cr_redirect_stderr();
	cr_assert_eq(mod_http_alloc(&h, root, &conf), EINVAL);
	cr_assert_null(h);
}

Test(http, encoded_slash_stays_inside_a_param)
{
	struct call *c = get("/v1/things/a%2Fb", AUTH);
	struct call *d = get("/v1/things/a%00b", AUTH);

	cr_assert_eq(c->status, 200);
	cr_assert(strstr(c->body_in, "\"id\":\"a/b\""), "%s", c->body_in);
	cr_assert(strstr(c->body_in, "\"route\":\"thing-param\""), "%s", c->body_in);
	/* a NUL cannot be a parameter */
	cr_assert_eq(d->status, 404);
	free(c);
	free(d);
}

/* ---- faces and connection limits: admin_listen, per_ip_limit, header and body deadlines ---- */

static unsigned admin_port;

static void setup_faces(void)
{
	struct mod_http_conf conf = {
	    .listen = "127.0.0.1:0",
	    .admin_listen = "127.0.0.1:0",
	    .admin_token = TOKEN,
	    .admin_loopback_only = true,
	    .per_ip_limit = 2,
	    .header_timeout_s = 1,
	    .body_timeout_s = 1,
	};

	su_init();
	metrics_reset();
	root = su_root_create(NULL);
	cr_assert_not_null(root);
	cr_assert_eq(mod_http_alloc(&srv, root, &conf), 0);
	port = mod_http_port(srv);
	admin_port = mod_http_admin_port(srv);
	cr_assert_neq(port, 0);
	cr_assert_neq(admin_port, 0);
	cr_assert_neq(admin_port, port);
	cr_assert_eq(mod_http_route(srv, "GET", "/m/{id}", MOD_HTTP_PUBLIC, h_echo_params, "page"),
	             0);
	cr_assert_eq(mod_http_route(srv, "POST", "/v1/scans", MOD_HTTP_PUBLIC, h_body_len, NULL),
	             0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/later", MOD_HTTP_ADMIN, h_later, NULL), 0);
	cr_assert_eq(mod_metrics_route(srv), 0);
}

TestSuite(faces, .init = setup_faces, .fini = teardown);

/* Raw connections from one source: each sends first, then (if trickle) one byte a tick. */
struct raw {
	unsigned port;
	const char *src;
	const char *first;
	int n;
	bool trickle;
	int want_closed; /* stop waiting once this many were closed by the server */
	int release;     /* set by the test: close the rest and end */
	/* results */
	int closed;
	double secs; /* until want_closed was reached */
	int ready;
	int done;
};

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int raw_connect(unsigned p, const char *src)
{
	struct sockaddr_in a = {.sin_family = AF_INET}, b = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, src, &b.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	a.sin_port = htons(p);
	if (fd < 0 || bind(fd, (struct sockaddr *)&b, sizeof(b)) ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void *raw_client(void *p)
{
	struct raw *r = p;
	struct pollfd pf[8];
	double start = mono(), tick = start;
	char buf[512];
	int i;

	for (i = 0; i < r->n; i++) {
		pf[i].fd = raw_connect(r->port, r->src);
		pf[i].events = POLLIN;
		if (pf[i].fd >= 0)
			send(pf[i].fd, r->first, strlen(r->first), MSG_NOSIGNAL);
	}
	while (mono() - start < 10 && !__atomic_load_n(&r->release, __ATOMIC_ACQUIRE)) {
		if (poll(pf, r->n, 50) > 0)
			for (i = 0; i < r->n; i++)
				if (pf[i].fd >= 0 &&
				    (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
				    recv(pf[i].fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0) {
					close(pf[i].fd);
					pf[i].fd = -1;
					r->closed++;
				}
		if (r->closed >= r->want_closed && !r->ready) {
			r->secs = mono() - start;
			__atomic_store_n(&r->ready, 1, __ATOMIC_RELEASE);
		}
		if (r->trickle && mono() - tick >= 0.2) {
			tick = mono();
			for (i = 0; i < r->n; i++)
				if (pf[i].fd >= 0)
					send(pf[i].fd, "a", 1, MSG_NOSIGNAL);
		}
	}
	for (i = 0; i < r->n; i++)
		if (pf[i].fd >= 0)
			close(pf[i].fd);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Runs the loop until *flag is set or 15 s pass. */
static void loop_until(int *flag)
{
	time_t end = time(NULL) + 15;

	while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE) && time(NULL) < end)
		su_root_step(root, 5);
}

Test(faces, each_face_serves_its_own_routes)
{
	struct call pub_admin = {.method = "GET", .path = "/metrics", .auth = AUTH};
	struct call adm_admin = {.method = "GET", .path = "/metrics", .auth = AUTH};
	struct call adm_public = {.method = "GET", .path = "/m/abc", .auth = AUTH};
	struct call adm_noauth = {.method = "GET", .path = "/metrics"};
	struct call pub_public = {.method = "GET", .path = "/m/abc"};
	char buf[256];

	adm_admin.port = adm_public.port = adm_noauth.port = admin_port;
	exchange(&pub_admin);
	exchange(&adm_admin);
	exchange(&adm_public);
	exchange(&adm_noauth);
	exchange(&pub_public);
	cr_assert_eq(pub_admin.status, 404);
	cr_assert_str_eq(error_of(&pub_admin, buf, sizeof(buf)), "no such resource: /metrics");
	cr_assert_eq(adm_admin.status, 200);
	cr_assert_eq(adm_public.status, 404);
	cr_assert_eq(adm_noauth.status, 401);
	cr_assert_eq(pub_public.status, 200);
}

Test(faces, connections_over_per_ip_limit_are_closed)
{
	struct raw r = {.src = "127.0.0.1", .first = "GET /m/a HTTP/1.1\r\n", .n = 3};
	struct call other = {.method = "GET", .path = "/m/abc", .iface = "127.0.0.2"};
	struct call same = {.method = "GET", .path = "/m/abc", .iface = "127.0.0.1"};
	pthread_t t;

	cr_redirect_stderr();
	r.port = port;
	r.want_closed = 1;
	cr_assert_eq(pthread_create(&t, NULL, raw_client, &r), 0);
	loop_until(&r.ready);
	cr_assert(r.ready, "none of 3 connections was closed with per_ip_limit 2");
	exchange(&same);  /* a fourth from the same address: closed too */
	exchange(&other); /* another address is served meanwhile */
	cr_assert_neq(same.rc, CURLE_OK, "status %ld", same.status);
	cr_assert_eq(other.rc, CURLE_OK);
	cr_assert_eq(other.status, 200);
	cr_assert_eq(r.closed, 1, "closed %d of 3", r.closed);
	cr_assert_eq(metric_get(METRIC_HTTP_CONNECTIONS_REFUSED_TOTAL), 2);
	__atomic_store_n(&r.release, 1, __ATOMIC_RELEASE);
	loop_until(&r.done);
	pthread_join(t, NULL);
}

Test(faces, trickled_headers_are_cut_at_the_deadline)
{
	struct raw r = {.src = "127.0.0.3", .first = "GET /m/a HTTP/1.1\r\nX-Slow: ", .n = 1};
	pthread_t t;

	cr_redirect_stderr();
	r.port = port;
	r.trickle = true;
	r.want_closed = 1;
	cr_assert_eq(pthread_create(&t, NULL, raw_client, &r), 0);
	loop_until(&r.ready);
	__atomic_store_n(&r.release, 1, __ATOMIC_RELEASE);
	loop_until(&r.done);
	pthread_join(t, NULL);
	cr_assert_eq(r.closed, 1, "a header trickle was not cut in 10 s");
	cr_assert_geq(r.secs, 0.5, "cut after %.2f s, header_timeout is 1 s", r.secs);
	cr_assert_eq(metric_get(METRIC_HTTP_CONNECTIONS_CUT_TOTAL), 1);
}

Test(faces, trickled_body_is_cut_at_the_deadline)
{
	struct raw r = {.src = "127.0.0.4",
	                .first = "POST /v1/scans HTTP/1.1\r\nContent-Length: 500\r\n\r\n",
	                .n = 1};
	pthread_t t;

	cr_redirect_stderr();
	r.port = port;
	r.trickle = true;
	r.want_closed = 1;
	cr_assert_eq(pthread_create(&t, NULL, raw_client, &r), 0);
	loop_until(&r.ready);
	__atomic_store_n(&r.release, 1, __ATOMIC_RELEASE);
	loop_until(&r.done);
	pthread_join(t, NULL);
	cr_assert_eq(r.closed, 1, "a body trickle was not cut in 10 s");
	cr_assert_eq(metric_get(METRIC_HTTP_CONNECTIONS_CUT_TOTAL), 1);
}

Test(faces, an_idle_keep_alive_connection_closes_quietly)
{
	struct raw r = {
	    .src = "127.0.0.5", .first = "GET /m/a HTTP/1.1\r\nHost: x\r\n\r\n", .n = 1};
	pthread_t t;

	cr_redirect_stderr();
	r.port = port;
	r.want_closed = 1;
	cr_assert_eq(pthread_create(&t, NULL, raw_client, &r), 0);
	loop_until(&r.ready);
	__atomic_store_n(&r.release, 1, __ATOMIC_RELEASE);
	loop_until(&r.done);
	pthread_join(t, NULL);
	cr_assert_eq(r.closed, 1, "an idle keep-alive connection stayed open 10 s");
	cr_assert_eq(metric_get(METRIC_HTTP_REQUESTS_TOTAL), 1);
	cr_assert_eq(metric_get(METRIC_HTTP_CONNECTIONS_CUT_TOTAL), 0);
	fflush(stderr);
	cr_assert_stderr_eq_str("");
}

Test(faces, a_slow_second_request_is_cut)
{
	struct raw r = {.src = "127.0.0.6",
	                .first =
	                    "GET /m/a HTTP/1.1\r\nHost: x\r\n\r\nGET /m/b HTTP/1.1\r\nX-Slow: ",
	                .n = 1};
	pthread_t t;

	cr_redirect_stderr();
	r.port = port;
	r.trickle = true;
	r.want_closed = 1;
	cr_assert_eq(pthread_create(&t, NULL, raw_client, &r), 0);
	loop_until(&r.ready);
	__atomic_store_n(&r.release, 1, __ATOMIC_RELEASE);
	loop_until(&r.done);
	pthread_join(t, NULL);
	cr_assert_eq(r.closed, 1, "a slow second request was not cut in 10 s");
	cr_assert_eq(metric_get(METRIC_HTTP_CONNECTIONS_CUT_TOTAL), 1);
}

static void on_much_later(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	mod_http_reply(arg, 202, "text/plain", "later", 5);
	su_timer_destroy(t);
}

static void h_much_later(struct mod_http_req *req, void *arg)
{
	su_timer_t *t = su_timer_create(su_root_task(root), 2500);

	mod_http_defer(req, NULL, NULL);
	su_timer_set(t, on_much_later, req);
}

Test(faces, a_deferred_reply_has_no_deadline)
{
	struct call c = {.method = "GET", .path = "/v1/much-later", .auth = AUTH};

	cr_assert_eq(
	    mod_http_route(srv, "GET", "/v1/much-later", MOD_HTTP_ADMIN, h_much_later, NULL), 0);
	c.port = admin_port;
	exchange(&c); /* 2.5 s, past both 1 s deadlines */
	cr_assert_eq(c.rc, CURLE_OK);
	cr_assert_eq(c.status, 202);
	cr_assert_eq(metric_get(METRIC_HTTP_CONNECTIONS_CUT_TOTAL), 0);
}

Test(faces, admin_listen_is_checked)
{
	struct mod_http_conf same = {.listen = "127.0.0.1:1", .admin_listen = "0.0.0.0:1"};
	struct mod_http_conf bad = {.listen = "127.0.0.1:0", .admin_listen = "localhost:1"};
	struct mod_http *h = NULL;

	cr_redirect_stderr();
	cr_assert_eq(mod_http_alloc(&h, root, &same), EINVAL);
	cr_assert_eq(mod_http_alloc(&h, root, &bad), EINVAL);
	cr_assert_null(h);
	cr_assert_eq(mod_http_admin_port(srv), admin_port);
}
