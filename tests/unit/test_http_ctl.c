/*
 * qrxferctl against web/http: the test serves a fake admin API on 127.0.0.1 from its
 * su_root loop and runs the built qrxferctl as a child process.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include "codes/code.h"
#include "web/http.h"
#include "tests/unit/leakcheck.h"

#define TOKEN "ctl-token-1"

static su_root_t *root;
static struct mod_http *srv;
static char dir[] = "/tmp/qrxferctl-test-XXXXXX";
static char token_file[256], url[64];

/* What the child printed and how it ended. */
struct run {
	char out[16384], err[4096];
	size_t nout, nerr;
	int status;
};

static void drain(int fd, char *buf, size_t *n, size_t cap, bool *open)
{
	ssize_t r;

	while (*open) {
		r = read(fd, buf + *n, cap - 1 - *n);
		if (r > 0) {
			*n += r;
			buf[*n] = '\0';
			if (*n == cap - 1)
				*n = 0; /* overflow: keep reading, keep the tail */
		} else {
			if (r == 0 || (errno != EAGAIN && errno != EINTR))
				*open = false;
			return;
		}
	}
}

/* Runs qrxferctl with argv (NULL-terminated) while the loop serves it. */
static void ctl(struct run *r, const char *const *args)
{
	const char *top = getenv("top_builddir");
	char prog[1024];
	const char *argv[32];
	int out[2], err[2], i = 0;
	bool oo = true, eo = true;
	time_t end = time(NULL) + 20;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	snprintf(prog, sizeof(prog), "%s/ctl/qrxferctl", top ? top : ".");
	argv[i++] = prog;
	while (*args && i < 31)
		argv[i++] = *args++;
	argv[i] = NULL;
	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(err), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]);
		close(err[0]);
		unsetenv("QRXFER_ADMIN_TOKEN");
		execv(prog, (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	while ((oo || eo) && time(NULL) < end) {
		su_root_step(root, 5);
		drain(out[0], r->out, &r->nout, sizeof(r->out), &oo);
		drain(err[0], r->err, &r->nerr, sizeof(r->err), &eo);
	}
	if (oo || eo)
		kill(pid, SIGKILL);
	waitpid(pid, &r->status, 0);
	close(out[0]);
	close(err[0]);
	cr_assert(WIFEXITED(r->status), "qrxferctl did not exit (%s)", prog);
	cr_assert_neq(WEXITSTATUS(r->status), 127, "cannot run %s", prog);
}

static void h_calls(struct mod_http_req *req, void *arg)
{
	mod_http_reply_json(req, 200,
	                    json_pack("{s:[{s:s,s:s,s:s},{s:s,s:s,s:s}]}", "calls", "id", "c1",
	                              "state", "up", "near", "sip:a@x", "id", "c2", "state",
	                              "early", "far", "sip:c@y"));
}

static void h_moves_empty(struct mod_http_req *req, void *arg)
{
	mod_http_reply_json(req, 200, json_pack("{s:[]}", "moves"));
}

static void h_start_move(struct mod_http_req *req, void *arg)
{
	mod_http_reply_json(
	    req, 201,
	    json_pack("{s:s,s:s,s:i}", "id", "m9", "call", mod_http_param(req, "id"), "ttl", 120));
}

static void h_qr_txt(struct mod_http_req *req, void *arg)
{
	char buf[128];

	snprintf(buf, sizeof(buf), "QR for <%s>\n", mod_http_param(req, "id"));
	mod_http_reply(req, 200, "text/plain; charset=utf-8", buf, strlen(buf));
}

static const char png[] = "\x89PNG\r\n\x1a\n-not-really-but-the-magic-is-right";

static void h_qr_png(struct mod_http_req *req, void *arg)
{
	mod_http_reply(req, 200, "image/png", png, sizeof(png) - 1);
}

static void setup(void)
{
	struct mod_http_conf conf = {.listen = "127.0.0.1:0", .admin_token = TOKEN};
	FILE *f;

	su_init();
	root = su_root_create(NULL);
	cr_assert_not_null(root);
	cr_assert_eq(mod_http_alloc(&srv, root, &conf), 0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/calls", MOD_HTTP_ADMIN, h_calls, NULL), 0);
	cr_assert_eq(mod_http_route(srv, "GET", "/v1/moves", MOD_HTTP_ADMIN, h_moves_empty, NULL),
	             0);
	cr_assert_eq(
	    mod_http_route(srv, "POST", "/v1/calls/{id}/moves", MOD_HTTP_ADMIN, h_start_move, NULL),
	    0);
	cr_assert_eq(
	    mod_http_route(srv, "GET", "/v1/moves/{id}/qr.txt", MOD_HTTP_ADMIN, h_qr_txt, NULL), 0);
	cr_assert_eq(
	    mod_http_route(srv, "GET", "/v1/moves/{id}/qr.png", MOD_HTTP_ADMIN, h_qr_png, NULL), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", mod_http_port(srv));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(token_file, sizeof(token_file), "%s/admin.token", dir);
	f = fopen(token_file, "w");
	cr_assert_not_null(f);
	fprintf(f, "%s\n", TOKEN);
	fclose(f);
}

static void teardown(void)
{
	char cmd[512];

	mod_http_free(srv);
	su_root_destroy(root);
	su_deinit();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", dir);
	leakcheck();
}

TestSuite(ctl, .init = setup, .fini = teardown);

Test(ctl, calls_prints_a_table)
{
	struct run r;

	ctl(&r, (const char *const[]){"-u", url, "-t", token_file, "calls", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 0, "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "id  state  near     far\n"
	                        "c1  up     sip:a@x  -\n"
	                        "c2  early  -        sip:c@y\n");
}

Test(ctl, empty_list)
{
	struct run r;

	ctl(&r, (const char *const[]){"-u", url, "-t", token_file, "moves", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 0, "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "no moves\n");
}

Test(ctl, wrong_token_says_401)
{
	struct run r;
	char bad[300];
	FILE *f;

	snprintf(bad, sizeof(bad), "%s/bad.token", dir);
	f = fopen(bad, "w");
	fputs("not-it\n", f);
	fclose(f);
	ctl(&r, (const char *const[]){"-u", url, "-t", bad, "calls", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 1);
	cr_assert(
	    strstr(r.err, "401 unauthorized (check the token): missing or wrong bearer token"),
	    "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "");
}

Test(ctl, refused_connection_is_named)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t n = sizeof(sa);
	char closed[64];
	struct run r;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &n), 0);
	/* The port stays bound and never listens while the CLI runs, so the
	 * connect is refused and no other process can take the port (closing
	 * it first let a parallel test's listener land on it). */
	snprintf(closed, sizeof(closed), "http://127.0.0.1:%u", ntohs(sa.sin_port));
	ctl(&r, (const char *const[]){"-u", closed, "-t", token_file, "calls", NULL});
	close(fd);
	cr_assert_eq(WEXITSTATUS(r.status), 1, "stderr: %s", r.err);
	cr_assert(strstr(r.err, "connection refused"), "stderr: %s", r.err);
}

Test(ctl, missing_token_file_is_named)
{
	struct run r;

	ctl(&r, (const char *const[]){"-u", url, "-t", "/nonexistent/t", "calls", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 1);
	cr_assert(strstr(r.err, "token file /nonexistent/t: No such file or directory"), "%s",
	          r.err);
}

Test(ctl, move_starts_one_on_the_call)
{
	struct run r;

	ctl(&r, (const char *const[]){"-u", url, "-t", token_file, "move", "call 7", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 0, "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "id: m9\ncall: call 7\nttl: 120\n");
}

Test(ctl, code_show_and_png)
{
	struct run r;
	char file[300], got[128];
	size_t n;
	FILE *f;

	ctl(&r, (const char *const[]){"-u", url, "-t", token_file, "code", "show", "m/1", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 0, "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "QR for <m/1>\n");

	snprintf(file, sizeof(file), "%s/qr.png", dir);
	ctl(&r,
	    (const char *const[]){"-u", url, "-t", token_file, "code", "png", "m1", file, NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 0, "stderr: %s", r.err);
	f = fopen(file, "rb");
	cr_assert_not_null(f);
	n = fread(got, 1, sizeof(got), f);
	fclose(f);
	cr_assert_eq(n, sizeof(png) - 1);
	cr_assert_arr_eq(got, png, n);
}

Test(ctl, config_gives_url_and_token_file)
{
	char conf[300];
	struct run r;
	FILE *f;

	snprintf(conf, sizeof(conf), "%s/qrxfer.conf", dir);
	f = fopen(conf, "w");
	fprintf(f,
	        "[sip]\nlisten = sip:127.0.0.1:5060\n\n[http]\nlisten = 127.0.0.1:%u ; here\n"
	        "admin_token_file = %s\n",
	        mod_http_port(srv), token_file);
	fclose(f);
	ctl(&r, (const char *const[]){"-c", conf, "moves", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 0, "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "no moves\n");
}

Test(ctl, config_admin_listen_wins_over_listen)
{
	char conf[300];
	struct run r;
	FILE *f;

	snprintf(conf, sizeof(conf), "%s/qrxfer.conf", dir);
	f = fopen(conf, "w");
	/* listen after admin_listen, on a port nobody serves: it must not be used */
	fprintf(f,
	        "[http]\nadmin_listen = 127.0.0.1:%u\nlisten = 127.0.0.1:1\n"
	        "admin_token_file = %s\n",
	        mod_http_port(srv), token_file);
	fclose(f);
	ctl(&r, (const char *const[]){"-c", conf, "moves", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 0, "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "no moves\n");
}

Test(ctl, bad_command_is_usage)
{
	struct run r;

	ctl(&r, (const char *const[]){"-u", url, "-t", token_file, "code", "show", NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 2);
	cr_assert(strstr(r.err, "usage: qrxferctl"), "%s", r.err);
}

Test(ctl, scan_reads_a_qr_image)
{
	struct code_qr *q = NULL;
	char file[300], want[400];
	uint8_t *buf = NULL;
	size_t len = 0;
	struct run r;
	FILE *f;

	cr_assert_eq(code_qr_make(&q, "hello from a test", CODE_ECC_M), 0);
	cr_assert_eq(code_qr_png(q, 8, 4, &buf, &len), 0);
	snprintf(file, sizeof(file), "%s/code.png", dir);
	f = fopen(file, "wb");
	cr_assert_eq(fwrite(buf, 1, len, f), len);
	fclose(f);
	free(buf);
	code_qr_free(q);
	ctl(&r, (const char *const[]){"scan", file, NULL});
	cr_assert_eq(WEXITSTATUS(r.status), 0, "stderr: %s", r.err);
	snprintf(want, sizeof(want), "%s: qr hello from a test [not ours]\n", file);
	cr_assert_str_eq(r.out, want);
}
