/*
 * client/curlm on a real su_root: requests to web/http on the same loop, to a socket
 * that accepts but never answers, and to a closed port. One thread throughout.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include "client/curlm.h"
#include "web/http.h"
#include "tests/unit/leakcheck.h"

static su_root_t *root;
static struct mod_http *srv;
static struct mod_curlm *cm;
static char base[64];

/* What a callback saw. */
struct got {
	int calls;
	int err;
	long status;
	char why[256];
	char *body;
	size_t len;
};

static void on_done(const struct mod_curlm_res *res, void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->err = res->err;
	g->status = res->status;
	snprintf(g->why, sizeof(g->why), "%s", res->why);
	free(g->body);
	g->body = malloc(res->len + 1);
	memcpy(g->body, res->body, res->len + 1);
	g->len = res->len;
}

/* Runs the loop until g has its answer (or 10 s pass). */
static void wait_for(struct got *g)
{
	time_t end = time(NULL) + 10;

	while (!g->calls && time(NULL) < end)
		su_root_step(root, 10);
	cr_assert_eq(g->calls, 1, "no completion");
}

static void h_echo(struct mod_http_req *req, void *arg)
{
	const char *ct = mod_http_header(req, "Content-Type");
	size_t len;
	const char *body = mod_http_body(req, &len);

	mod_http_reply(req, 201, ct ? ct : "application/octet-stream", body, len);
}

static void h_hundred(struct mod_http_req *req, void *arg)
{
	char buf[100];

	memset(buf, 'z', sizeof(buf));
	mod_http_reply(req, 200, "text/plain", buf, sizeof(buf));
}

static void setup(void)
{
	struct mod_http_conf conf = {.listen = "127.0.0.1:0", .admin_token = "t"};

	su_init();
	root = su_root_create(NULL);
	cr_assert_not_null(root);
	cr_assert_eq(mod_http_alloc(&srv, root, &conf), 0);
	cr_assert_eq(mod_http_route(srv, "POST", "/echo", MOD_HTTP_PUBLIC, h_echo, NULL), 0);
	cr_assert_eq(mod_http_route(srv, "GET", "/hundred", MOD_HTTP_PUBLIC, h_hundred, NULL), 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", mod_http_port(srv));
	cr_assert_eq(mod_curlm_alloc(&cm, root), 0);
}

static void teardown(void)
{
	mod_curlm_free(cm);
	mod_http_free(srv);
	su_root_destroy(root);
	su_deinit();
	leakcheck();
}

TestSuite(curlm, .init = setup, .fini = teardown);

/* A listening loopback socket that nobody accepts from; *portp gets its port. */
/* A loopback TCP port held by this process: listening (connects are
 * accepted by the kernel and never answered) or bound only (connects are
 * refused, and no other process can take the port meanwhile). */
static int held_port(unsigned *portp, int listening)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t n = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (listening)
		cr_assert_eq(listen(fd, 8), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &n), 0);
	*portp = ntohs(sa.sin_port);
	return fd;
}

static int silent_listener(unsigned *portp)
{
	return held_port(portp, 1);
}

static char *url(const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", base, path);
	return buf;
}

Test(curlm, post_to_the_local_server_returns_the_body)
{
	static const char *const hdrs[] = {"Content-Type: application/json", NULL};
	static const char body[] = "{\"to\":\"+15550100\",\"text\":\"move?\"}";
	struct got g = {0};
	char u[128];

	cr_assert_eq(mod_curlm_post(cm, url("/echo", u, sizeof(u)), hdrs, body, sizeof(body) - 1,
	                            5000, on_done, &g),
	             0);
	cr_assert_eq(g.calls, 0, "done must not run inside the call");
	cr_assert_eq(mod_curlm_pending(cm), 1);
	wait_for(&g);
	cr_assert_eq(g.err, 0, "%s", g.why);
	cr_assert_eq(g.status, 201);
	cr_assert_eq(g.len, sizeof(body) - 1);
	cr_assert_str_eq(g.body, body);
	cr_assert_eq(mod_curlm_pending(cm), 0);
	free(g.body);
}

Test(curlm, large_body_both_ways)
{
	size_t n = 300 * 1024, i;
	char *body = malloc(n);
	struct got g = {0};
	char u[128];

	for (i = 0; i < n; i++)
		body[i] = 'a' + i % 26;
	cr_assert_eq(
	    mod_curlm_post(cm, url("/echo", u, sizeof(u)), NULL, body, n, 5000, on_done, &g), 0);
	free(body); /* copied by the call */
	wait_for(&g);
	cr_assert_eq(g.err, 0, "%s", g.why);
	cr_assert_eq(g.len, n);
	for (i = 0; i < n; i++)
		cr_assert_eq(g.body[i], 'a' + i % 26, "byte %zu", i);
	free(g.body);
}

Test(curlm, several_at_once)
{
	struct got g[5] = {0};
	char u[128], body[16];
	time_t end = time(NULL) + 10;
	int i, done;

	for (i = 0; i < 5; i++) {
		snprintf(body, sizeof(body), "n%d", i);
		cr_assert_eq(mod_curlm_post(cm, url("/echo", u, sizeof(u)), NULL, body,
		                            strlen(body), 5000, on_done, &g[i]),
		             0);
	}
	do {
		su_root_step(root, 10);
		for (done = 0, i = 0; i < 5; i++)
			done += g[i].calls;
	} while (done < 5 && time(NULL) < end);
	for (i = 0; i < 5; i++) {
		snprintf(body, sizeof(body), "n%d", i);
		cr_assert_eq(g[i].calls, 1);
		cr_assert_eq(g[i].err, 0, "%s", g[i].why);
		cr_assert_str_eq(g[i].body, body);
		free(g[i].body);
	}
}

Test(curlm, silent_server_times_out)
{
	struct got g = {0};
	unsigned port;
	int fd = silent_listener(&port);
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%u/sms", port);
	cr_assert_eq(mod_curlm_post(cm, u, NULL, "x", 1, 300, on_done, &g), 0);
	wait_for(&g);
	cr_assert_eq(g.err, ETIMEDOUT, "err %d: %s", g.err, g.why);
	cr_assert_eq(g.status, 0);
	cr_assert_neq(g.why[0], '\0');
	close(fd);
	free(g.body);
}

Test(curlm, closed_port_is_refused)
{
	struct got g = {0};
	unsigned port;
	int fd = held_port(&port, 0); /* bound, never listening */
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%u/sms", port);
	cr_assert_eq(mod_curlm_post(cm, u, NULL, "x", 1, 5000, on_done, &g), 0);
	wait_for(&g);
	close(fd);
	cr_assert_eq(g.err, ECONNREFUSED, "err %d: %s", g.err, g.why);
	cr_assert_eq(g.status, 0);
	free(g.body);
}

Test(curlm, body_over_the_cap_fails)
{
	struct got g = {0};
	char u[128];

	mod_curlm_set_body_max(cm, 10);
	cr_assert_eq(mod_curlm_request(cm, "GET", url("/hundred", u, sizeof(u)), NULL, NULL, 0,
	                               5000, on_done, &g),
	             0);
	wait_for(&g);
	cr_assert_eq(g.err, EMSGSIZE, "err %d: %s", g.err, g.why);
	free(g.body);
}

Test(curlm, cancel_drops_without_callback)
{
	struct got g = {0}, other = {0};
	unsigned port;
	int fd = silent_listener(&port), i;
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%u/sms", port);
	cr_assert_eq(mod_curlm_post(cm, u, NULL, "x", 1, 5000, on_done, &g), 0);
	cr_assert_eq(mod_curlm_post(cm, u, NULL, "x", 1, 5000, on_done, &g), 0);
	cr_assert_eq(
	    mod_curlm_post(cm, url("/echo", u, sizeof(u)), NULL, "y", 1, 5000, on_done, &other), 0);
	for (i = 0; i < 5; i++)
		su_root_step(root, 10);
	cr_assert_eq(mod_curlm_cancel(cm, &g), 2);
	wait_for(&other);
	for (i = 0; i < 5; i++)
		su_root_step(root, 10);
	cr_assert_eq(g.calls, 0);
	cr_assert_eq(mod_curlm_pending(cm), 0);
	close(fd);
	free(other.body);
}

Test(curlm, free_tells_pending_requests)
{
	struct got g = {0};
	unsigned port;
	int fd = silent_listener(&port), i;
	char u[128];

	snprintf(u, sizeof(u), "http://127.0.0.1:%u/sms", port);
	cr_assert_eq(mod_curlm_post(cm, u, NULL, "x", 1, 5000, on_done, &g), 0);
	for (i = 0; i < 5; i++)
		su_root_step(root, 10);
	mod_curlm_free(cm);
	cm = NULL;
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.err, ECANCELED);
	close(fd);
	free(g.body);
}
