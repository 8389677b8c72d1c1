/*
 * client/sms against gateways on 127.0.0.1: an in-process one (web/http on the test's
 * su_root, answering statuses the test scripts) and tests/sms/receiver.py (Twilio's shape).
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include "web/http.h"
#include "tests/unit/leakcheck.h"
#include "client/sms.h"

#define AUTH "Authorization: Basic QUMxMjM6c2VjcmV0"
#define PATH "/2010-04-01/Accounts/AC123/Messages.json"

static su_root_t *root;
static struct mod_http *gw;
static char url[256], auth_file[64];

/* The gateway's script and what it saw. */
static unsigned statuses[8], nstatuses, hits;
static char last_body[4096], last_auth[256], last_ctype[128];

/* Outcomes. */
static int outcomes, out_err;
static long out_status;
static unsigned long out_ref;
static char out_body[256];

static void gw_handler(struct mod_http_req *req, void *arg)
{
	const char *a = mod_http_header(req, "Authorization"),
	           *ct = mod_http_header(req, "Content-Type");
	unsigned st = hits < nstatuses ? statuses[hits] : statuses[nstatuses - 1];
	size_t len;
	const char *body = mod_http_body(req, &len);

	hits++;
	snprintf(last_body, sizeof(last_body), "%s", body);
	snprintf(last_auth, sizeof(last_auth), "Authorization: %s", a ? a : "");
	snprintf(last_ctype, sizeof(last_ctype), "%s", ct ? ct : "");
	if (st == 201)
		mod_http_reply_json(req, 201, json_pack("{s:s}", "sid", "SM0123456789"));
	else
		mod_http_reply_errorf(req, st, "scripted %u", st);
}

static void done(void *arg, unsigned long ref, int err, long status, const char *body)
{
	outcomes++;
	out_ref = ref;
	out_err = err;
	out_status = status;
	snprintf(out_body, sizeof(out_body), "%s", body);
}

static void setup(void)
{
	struct mod_http_conf hc = {.listen = "127.0.0.1:0", .rate = 1000, .burst = 1000};
	int fd;
	FILE *f;

	cr_assert_eq(su_init(), 0);
	root = su_root_create(NULL);
	cr_assert_not_null(root);
	cr_assert_eq(mod_http_alloc(&gw, root, &hc), 0);
	cr_assert_eq(mod_http_route(gw, "POST", "/2010-04-01/Accounts/{sid}/Messages.json",
	                            MOD_HTTP_PUBLIC, gw_handler, NULL),
	             0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u" PATH, mod_http_port(gw));
	snprintf(auth_file, sizeof(auth_file), "/tmp/qrx-sms-auth.XXXXXX");
	fd = mkstemp(auth_file);
	cr_assert(fd >= 0);
	f = fdopen(fd, "w");
	fprintf(f, "%s\n", AUTH);
	fclose(f);
	hits = nstatuses = 0;
	outcomes = 0;
}

static void teardown(void)
{
	mod_http_free(gw);
	su_root_destroy(root);
	su_deinit();
	unlink(auth_file);
	leakcheck();
}

TestSuite(sms, .init = setup, .fini = teardown, .timeout = 30);

static void run_until_outcome(int n)
{
	time_t end = time(NULL) + 10;

	while (outcomes < n && time(NULL) < end)
		su_root_step(root, 10);
	cr_assert_eq(outcomes, n, "no outcome in time");
}

static struct mod_sms *client(int retries)
{
	struct mod_sms_conf c = {.url = url,
	                         .auth_header_file = auth_file,
	                         .from = "+15550001111",
	                         .retries = retries,
	                         .backoff_ms = 10,
	                         .backoff_max_ms = 40,
	                         .timeout_ms = 3000};
	struct mod_sms *sm = NULL;

	cr_assert_eq(mod_sms_alloc(&sm, root, &c, done, NULL), 0);
	return sm;
}

/* Decodes one form field (independent of client/sms's encoder). */
static bool form_field(const char *form, const char *name, char *out, size_t len)
{
	size_t n = strlen(name), o = 0;
	const char *p = form;

	while (p && *p) {
		if (!strncmp(p, name, n) && p[n] == '=') {
			for (p += n + 1; *p && *p != '&' && o + 1 < len; p++) {
				unsigned v;

				if (*p == '%' && sscanf(p + 1, "%2x", &v) == 1) {
					out[o++] = (char)v;
					p += 2;
				} else {
					out[o++] = *p == '+' ? ' ' : *p;
				}
			}
			out[o] = '\0';
			return true;
		}
		p = strchr(p, '&');
		if (p)
			p++;
	}
	return false;
}

Test(sms, success_twilio_shape)
{
	struct mod_sms *sm = client(3);
	char v[256];

	statuses[0] = 201;
	nstatuses = 1;
	cr_assert_eq(mod_sms_send(sm, "+15552223333", "Move code 12345678: reply yes", 42), 0);
	cr_assert_eq(outcomes, 0, "the outcome came from inside send");
	run_until_outcome(1);
	cr_assert_eq(out_err, 0);
	cr_assert_eq(out_status, 201);
	cr_assert_eq(out_ref, 42);
	cr_assert(strstr(out_body, "SM0123456789"), "body: %s", out_body);
	cr_assert_eq(hits, 1);
	cr_assert_str_eq(last_auth, AUTH);
	cr_assert_str_eq(last_ctype, "application/x-www-form-urlencoded");
	cr_assert(form_field(last_body, "To", v, sizeof(v)));
	cr_assert_str_eq(v, "+15552223333");
	cr_assert(form_field(last_body, "From", v, sizeof(v)));
	cr_assert_str_eq(v, "+15550001111");
	cr_assert(form_field(last_body, "Body", v, sizeof(v)));
	cr_assert_str_eq(v, "Move code 12345678: reply yes");
	cr_assert_eq(mod_sms_pending(sm), 0);
	mod_sms_free(sm);
}

Test(sms, retries_503_then_succeeds)
{
	struct mod_sms *sm = client(3);

	statuses[0] = 503;
	statuses[1] = 429;
	statuses[2] = 201;
	nstatuses = 3;
	cr_assert_eq(mod_sms_send(sm, "+15552223333", "hi", 7), 0);
	run_until_outcome(1);
	cr_assert_eq(out_err, 0);
	cr_assert_eq(out_status, 201);
	cr_assert_eq(hits, 3);
	mod_sms_free(sm);
}

Test(sms, gives_up_after_retries)
{
	struct mod_sms *sm = client(2);

	statuses[0] = 503;
	nstatuses = 1;
	cr_assert_eq(mod_sms_send(sm, "+15552223333", "hi", 8), 0);
	run_until_outcome(1);
	cr_assert_eq(out_err, EPROTO);
	cr_assert_eq(out_status, 503);
	cr_assert_eq(hits, 3, "one try and two retries, got %u", hits);
	mod_sms_free(sm);
}

Test(sms, no_retry_on_400)
{
	struct mod_sms *sm = client(3);

	statuses[0] = 400;
	statuses[1] = 201;
	nstatuses = 2;
	cr_assert_eq(mod_sms_send(sm, "+15552223333", "hi", 9), 0);
	run_until_outcome(1);
	cr_assert_eq(out_err, EPROTO);
	cr_assert_eq(out_status, 400);
	cr_assert_eq(hits, 1);
	mod_sms_free(sm);
}

Test(sms, transport_error_retried_then_reported)
{
	struct mod_sms_conf c = {.url = "http://127.0.0.1:1/x",
	                         .from = "+1555",
	                         .retries = 2,
	                         .backoff_ms = 5,
	                         .backoff_max_ms = 10,
	                         .timeout_ms = 2000};
	struct mod_sms *sm = NULL;

	cr_assert_eq(mod_sms_alloc(&sm, root, &c, done, NULL), 0);
	cr_assert_eq(mod_sms_send(sm, "+1666", "hi", 10), 0);
	run_until_outcome(1);
	cr_assert_eq(out_err, ECONNREFUSED, "err %d", out_err);
	cr_assert_eq(out_status, 0);
	mod_sms_free(sm);
}

Test(sms, free_with_pending_drops_silently)
{
	struct mod_sms *sm = client(3);

	statuses[0] = 503;
	nstatuses = 1;
	cr_assert_eq(mod_sms_send(sm, "+15552223333", "hi", 11), 0);
	cr_assert_eq(mod_sms_pending(sm), 1);
	mod_sms_free(sm);
	for (int i = 0; i < 20; i++)
		su_root_step(root, 5);
	cr_assert_eq(outcomes, 0);
}

Test(sms, template_substitution_and_encoding)
{
	char *out = NULL;

	cr_assert_eq(mod_sms_render("to={to}&f={from}&msg={text}&x={nope}", "+1 555", "me@x",
	                            "a b&c=d/\xc3\xa9+~", &out),
	             0);
	cr_assert_str_eq(out, "to=%2B1%20555&f=me%40x&msg=a%20b%26c%3Dd%2F%C3%A9%2B~&x={nope}");
	free(out);
	cr_assert_eq(mod_sms_render("{text}{text}", "", "", "%", &out), 0);
	cr_assert_str_eq(out, "%25%25");
	free(out);
}

Test(sms, custom_template_reaches_gateway)
{
	struct mod_sms_conf c = {.url = url,
	                         .from = "QRXFER",
	                         .body_template = "dst={to}&src={from}&text={text}&kind=plain",
	                         .backoff_ms = 10};
	struct mod_sms *sm = NULL;
	char v[256];

	statuses[0] = 201;
	nstatuses = 1;
	cr_assert_eq(mod_sms_alloc(&sm, root, &c, done, NULL), 0);
	cr_assert_eq(mod_sms_send(sm, "+4470", "yes & no = 100%", 12), 0);
	run_until_outcome(1);
	cr_assert_eq(out_err, 0);
	cr_assert(form_field(last_body, "text", v, sizeof(v)));
	cr_assert_str_eq(v, "yes & no = 100%");
	cr_assert(form_field(last_body, "kind", v, sizeof(v)));
	cr_assert_str_eq(v, "plain");
	cr_assert_str_eq(last_auth, "Authorization: ", "no auth header was configured");
	mod_sms_free(sm);
}

Test(sms, bad_config_refused)
{
	struct mod_sms_conf c = {.url = url, .from = "+1", .auth_header_file = "/nonexistent/x"};
	struct mod_sms *sm = NULL;
	FILE *f;

	cr_assert_eq(mod_sms_alloc(&sm, root, &c, done, NULL), ENOENT);
	cr_assert_null(sm);
	f = fopen(auth_file, "w");
	fprintf(f, "no colon here\n");
	fclose(f);
	c.auth_header_file = auth_file;
	cr_assert_eq(mod_sms_alloc(&sm, root, &c, done, NULL), EINVAL);
	c.auth_header_file = NULL;
	c.url = NULL;
	cr_assert_eq(mod_sms_alloc(&sm, root, &c, done, NULL), EINVAL);
}

/* The receiver the end-to-end tests use: a real Twilio-shaped exchange with it. */
Test(sms, python_receiver)
{
	char dir[] = "/tmp/qrx-sms-rx.XXXXXX", portf[128], log[128], script[512], rurl[256];
	char line[4096];
	const char *srcdir = getenv("top_srcdir");
	struct mod_sms_conf c = {
	    .url = rurl, .auth_header_file = auth_file, .from = "+15550001111", .backoff_ms = 10};
	struct mod_sms *sm = NULL;
	unsigned rport = 0;
	json_t *j;
	pid_t pid;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(portf, sizeof(portf), "%s/port", dir);
	snprintf(log, sizeof(log), "%s/log.jsonl", dir);
	snprintf(script, sizeof(script), "%s/tests/sms/receiver.py", srcdir ? srcdir : "..");
	pid = fork();
	cr_assert(pid >= 0);
	if (!pid) {
		execlp("python3", "python3", script, "--port", "0", "--port-file", portf, "--log",
		       log, "--account", "AC123", "--auth", "AC123:secret", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && !rport; i++) {
		f = fopen(portf, "r");
		if (f) {
			if (fscanf(f, "%u", &rport) != 1)
				rport = 0;
			fclose(f);
		}
		if (!rport)
			usleep(10000);
	}
	cr_assert_neq(rport, 0, "receiver did not start");
	snprintf(rurl, sizeof(rurl), "http://127.0.0.1:%u" PATH, rport);
	cr_assert_eq(mod_sms_alloc(&sm, root, &c, done, NULL), 0);
	cr_assert_eq(mod_sms_send(sm, "+15552223333", "Reply YES to move the call", 77), 0);
	run_until_outcome(1);
	cr_assert_eq(out_err, 0, "err %d status %ld", out_err, out_status);
	cr_assert_eq(out_status, 201);
	j = json_loads(out_body, 0, NULL);
	cr_assert(json_is_string(json_object_get(j, "sid")), "body: %s", out_body);
	json_decref(j);
	f = fopen(log, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(line, sizeof(line), f));
	fclose(f);
	j = json_loads(line, 0, NULL);
	cr_assert_str_eq(json_string_value(json_object_get(j, "To")), "+15552223333");
	cr_assert_str_eq(json_string_value(json_object_get(j, "Body")),
	                 "Reply YES to move the call");
	json_decref(j);
	mod_sms_free(sm);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(portf);
	unlink(log);
	rmdir(dir);
}
