/*
 * web/api on a real web/http, a real store (SQLite in memory) and real codes/, with
 * sip/ replaced by a fake defined here: it answers on the loop, later, as sip/ does. The
 * test's thread runs the loop while a client thread talks HTTP over 127.0.0.1.
 */
#define SU_TIMER_ARG_T void

#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include "codes/code.h"
#include "move/context.h"
#include "move/react.h"
#include "web/api.h"
#include "web/http.h"
#include "tests/unit/leakcheck.h"
#include "sip/sip.h"
#include "move/own.h"
#include "sql/store.h"

#define ADMIN   "Bearer adm-token"
#define MOVE_ID "00112233aabbccdd"
#define SHOW    "Qx7_kP2-vZ9mN4rT8sW1yA" /* the move's show secret */
#define DOMAIN  "qrxfer.test"
#define TWILIO  "tok-abc"
#define HOOKURL "https://qrxfer.test/v1/sms/inbound"

/* ---- the fake sip/ ---- */

struct sip {
	int unused;
};

static struct sip fake_sip;
static su_root_t *root;
static su_timer_t *qtimer;

static struct {
	enum sip_move_state state;
	char token[CODE_TOKEN_LEN + 1], code[16], qr_uri[256], reason[128], taken_by[256];
	time_t created, expires;
	int gone;      /* sip/ no longer holds the move: only the store has it */
	int give_show; /* the next answer carries the show secret (a start does) */
} mv;

static struct {
	char source[128], token[128], target[512], who[8], sms_from[64], sms_body[64], sms_id[64];
	int starts, dials, refers, scans, sms;
} seen;

struct pend {
	sip_move_h *cb;
	void *arg;
	int err;
};
static struct pend q[16];
static unsigned nq;

static void fill(struct sip_move_info *i)
{
	memset(i, 0, sizeof(*i));
	i->id = MOVE_ID;
	i->call_id = "call-1";
	i->state = mv.state;
	i->token = mv.state == SIP_MOVE_OFFERED ? mv.token : NULL;
	i->code = mv.state == SIP_MOVE_OFFERED ? mv.code : NULL;
	i->qr_uri = mv.qr_uri;
	i->reason = *mv.reason ? mv.reason : NULL;
	i->taken_by = *mv.taken_by ? mv.taken_by : NULL;
	i->created = mv.created;
	i->expires = mv.expires;
	i->ms_redeem_to_reinvite = -1;
	i->ms_redeem_to_answer = -1;
	i->show = mv.give_show ? SHOW : NULL;
}

static void deliver(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	while (nq) {
		struct pend p = q[0];
		struct sip_move_info info;

		memmove(q, q + 1, --nq * sizeof(q[0]));
		fill(&info);
		p.cb(p.err, p.err ? NULL : &info, p.arg);
		mv.give_show = 0;
	}
}

static int later(sip_move_h *cb, void *arg, int err)
{
	cr_assert_lt(nq, 16);
	q[nq++] = (struct pend){cb, arg, err};
	su_timer_set_interval(qtimer, deliver, NULL, 1);
	return 0;
}

static int drained; /* times sip_drain was called */

void sip_drain(struct sip *s)
{
	drained++;
}

void sip_calls_foreach(struct sip *s, sip_call_h *fn, void *arg)
{
	struct sip_call_info a = {.id = "call-1",
	                          .state = SIP_CALL_ANSWERED,
	                          .near_call_id = "n1@x",
	                          .near_uri = "sip:alice@127.0.0.1",
	                          .far_call_id = "f1@x",
	                          .far_uri = "sip:carol@127.0.0.1",
	                          .near_is_caller = 1,
	                          .created = 1700000000,
	                          .answered = 1700000001};
	struct sip_call_info b = {.id = "call-2",
	                          .state = SIP_CALL_EARLY,
	                          .near_uri = "sip:x@y",
	                          .far_uri = "sip:z@y",
	                          .created = 1700000002};

	fn(&a, arg);
	fn(&b, arg);
}

/* The fake's one-call lookup: the same two calls as the listing. */
struct one {
	const char *id;
	sip_call_h *fn;
	void *arg;
	int found;
};

static void pick(const struct sip_call_info *c, void *arg)
{
	struct one *o = arg;

	if (!strcmp(c->id, o->id)) {
		o->found = 1;
		o->fn(c, o->arg);
	}
}

int sip_call_get(struct sip *s, const char *id, sip_call_h *fn, void *arg)
{
	struct one o = {id, fn, arg, 0};

	sip_calls_foreach(s, pick, &o);
	return o.found ? 0 : ENOENT;
}

const char *sip_call_state_name(enum sip_call_state st)
{
	return st == SIP_CALL_EARLY ? "early" : st == SIP_CALL_ANSWERED ? "answered" : "ending";
}

const char *sip_move_state_name(enum sip_move_state st)
{
	static const char *n[] = {"storing", "offered", "redeemed", "confirming",
	                          "moving",  "done",    "failed"};

	return n[st];
}

/* The meetings' part of move/ (move/context.h): none here. */
int move_meet(struct sip *s, const char *call_id, char *link, size_t len)
{
	return ENOENT;
}

/* Resume codes (move/context.h): none here. */
int move_resume_link(struct sip *s, const char *secret, const char *source, int use,
                     move_resume_h *cb, void *arg)
{
	return ENOTSUP;
}

int sip_move_start(struct sip *s, const char *call_id, const char *source, sip_move_h *cb,
                   void *arg)
{
	seen.starts++;
	snprintf(seen.source, sizeof(seen.source), "%s", source);
	if (strcmp(call_id, "call-1"))
		return ENOENT;
	mv.state = SIP_MOVE_OFFERED;
	mv.give_show = 1;
	return later(cb, arg, 0);
}

int sip_move_show(struct sip *s, const char *secret, sip_move_h *cb, void *arg)
{
	if (mv.gone || strcmp(secret, SHOW))
		return ENOENT;
	return later(cb, arg, 0);
}

int sip_move_get(struct sip *s, const char *move_id, sip_move_h *cb, void *arg)
{
	if (strcmp(move_id, MOVE_ID))
		return ENOENT;
	return later(cb, arg, 0);
}

int sip_move_dial(struct sip *s, const char *token, const char *target, const char *source,
                  sip_move_h *cb, void *arg)
{
	seen.dials++;
	snprintf(seen.token, sizeof(seen.token), "%s", token);
	snprintf(seen.target, sizeof(seen.target), "%s", target);
	snprintf(seen.source, sizeof(seen.source), "%s", source);
	if (strcasecmp(token, mv.token) || mv.state != SIP_MOVE_OFFERED)
		return later(cb, arg, ENOENT);
	mv.state = SIP_MOVE_REDEEMED;
	snprintf(mv.taken_by, sizeof(mv.taken_by), "%s", target);
	return later(cb, arg, 0);
}

/* Own devices (move/own.h): a push on call-1 rings, a hint is recorded. */
static struct {
	char aor[320], device[512];
	long long seen_at;
	int nears, pushes, no_device;
} own_seen;

int own_push(struct sip *s, const char *call_id, const char *source, sip_move_h *cb, void *arg)
{
	own_seen.pushes++;
	if (strcmp(call_id, "call-1"))
		return ENOENT;
	mv.state = SIP_MOVE_MOVING;
	return later(cb, arg, own_seen.no_device ? ENODEV : 0);
}

int own_near(struct sip *s, const char *aor, const char *device, int64_t seen_at)
{
	if (!aor[0] || !device[0])
		return EINVAL;
	own_seen.nears++;
	snprintf(own_seen.aor, sizeof(own_seen.aor), "%s", aor);
	snprintf(own_seen.device, sizeof(own_seen.device), "%s", device);
	own_seen.seen_at = seen_at;
	return 0;
}

int sip_move_refer(struct sip *s, const char *move_id, const char *target, sip_move_h *cb,
                   void *arg)
{
	seen.refers++;
	snprintf(seen.target, sizeof(seen.target), "%s", target);
	if (strcmp(move_id, MOVE_ID))
		return ENOENT;
	return later(cb, arg, 0);
}

/*
 * Refuses as sip/ does before decoding, then decodes for real with codes/. Its answer holds
 * the whole move (id, call, code, token), as a careless sip/ might: the reply must not.
 */
int sip_move_scan(struct sip *s, const void *image, size_t len, const char *who, const char *target,
                  const char *show, const struct sockaddr *peer, sip_move_h *cb, void *arg)
{
	struct code_scan_opts o;
	struct code_scan_result res;
	unsigned w, h;
	int err;

	seen.scans++;
	snprintf(seen.who, sizeof(seen.who), "%s", who);
	snprintf(seen.target, sizeof(seen.target), "%s", target ? target : "");
	cr_assert_not_null(peer);
	if (!strcmp(who, "near") && (!show || strcmp(show, SHOW)))
		return EPERM;
	if (mv.state != SIP_MOVE_OFFERED)
		return ENOENT;
	err = code_image_size(image, len, &w, &h);
	if (err)
		return err;
	code_scan_opts_default(&o);
	err = code_scan_buffer(image, len, &o, &res);
	if (!err)
		err = code_scan_match(&res, mv.token, mv.code);
	return later(cb, arg, err ? CODE_ENOCODE : 0);
}

int sip_sms_reply(struct sip *s, const char *number, const char *body, const char *message_id)
{
	seen.sms++;
	snprintf(seen.sms_id, sizeof(seen.sms_id), "%s", message_id ? message_id : "");
	snprintf(seen.sms_from, sizeof(seen.sms_from), "%s", number);
	snprintf(seen.sms_body, sizeof(seen.sms_body), "%s", body);
	return 0;
}

/* The fake's reactions (move/react.h): no watch pages; share knows only "c1". */
int react_share(struct sip *s, const char *call_id, const char *url, char *link, size_t linklen,
                char *why, size_t whylen)
{
	if (strcmp(call_id, "c1")) {
		snprintf(why, whylen, "no call %s", call_id);
		return ENOENT;
	}
	if (strncmp(url, "https://", 8)) {
		snprintf(why, whylen, "only https:// URLs can be shared");
		return EINVAL;
	}
	snprintf(link, linklen, "http://x/w/secret");
	return 0;
}

int react_watch_exists(struct sip *s, const char *secret)
{
	return ENOENT;
}

int react_watch_poll(struct sip *s, const char *secret, unsigned long since, const char *key,
                     react_watch_h *cb, void *arg, struct react_waiter **wp)
{
	*wp = NULL;
	return ENOENT;
}

void react_watch_cancel(struct react_waiter *w)
{
}

int react_watch_control(struct sip *s, const char *secret, const char *action, double pos,
                        char *why, size_t whylen)
{
	snprintf(why, whylen, "no such watch page");
	return ENOENT;
}

/* ---- fixture ---- */

static struct mod_http *srv;
static struct mod_api *api;
static struct store *store;
static struct code_keyring *keys;
static unsigned port;

static void make_token(time_t expires, char *out)
{
	cr_assert_eq(code_token_make(keys, 0x00112233aabbccddULL, expires, out, CODE_TOKEN_LEN + 1),
	             0);
}

static void setup(void)
{
	struct mod_http_conf hc = {.listen = "127.0.0.1:0",
	                           .admin_token = "adm-token",
	                           .admin_loopback_only = true,
	                           .rate = 10000,
	                           .burst = 10000};
	struct mod_api_conf ac = {.public_url = "https://qrxfer.test/",
	                          .sip_domain = DOMAIN,
	                          .twilio_auth_token = TWILIO,
	                          .webhook_secret = "shh",
	                          .webhook_url = HOOKURL};
	struct store_call call = {.id = "call-1", .state = STORE_CALL_ACTIVE};
	struct store_move m = {.id = MOVE_ID, .call_id = "call-1"};
	uint8_t key[32], show_hash[CODE_HASH_LEN];
	char err[256];

	cr_redirect_stderr();
	memset(&seen, 0, sizeof(seen));
	memset(key, 7, sizeof(key));
	cr_assert_eq(su_init(), 0);
	root = su_root_create(NULL);
	qtimer = su_timer_create(su_root_task(root), 0);
	cr_assert_eq(code_keyring_alloc(&keys), 0);
	cr_assert_eq(code_keyring_add(keys, 1, key, sizeof(key)), 0);
	ac.keys = keys;
	mv.state = SIP_MOVE_OFFERED;
	mv.created = time(NULL);
	mv.expires = mv.created + 120;
	make_token(mv.expires, mv.token);
	snprintf(mv.code, sizeof(mv.code), "48213570");
	cr_assert_eq(code_uri(CODE_URI_SIP, mv.token, DOMAIN, mv.qr_uri, sizeof(mv.qr_uri)), 0);
	mv.reason[0] = mv.taken_by[0] = '\0';

	cr_assert_eq(store_open(&store, "sqlite::memory:", err, sizeof(err)), 0, "%s", err);
	call.created_at = store_now();
	snprintf(call.near.uri, sizeof(call.near.uri), "sip:alice@127.0.0.1");
	cr_assert_eq(store_call_insert(store, &call), 0);
	m.created_at = store_now();
	m.expires_at = m.created_at + 120000;
	cr_assert_eq(store_move_insert(store, &m), 0);
	cr_assert_eq(code_secret_hash(SHOW, show_hash), 0);
	cr_assert_eq(store_move_show_set(store, MOVE_ID, show_hash), 0);
	cr_assert_eq(store_move_event_add(store, MOVE_ID, m.created_at + 5, "code-sent", "MESSAGE"),
	             0);
	cr_assert_eq(store_attach(store, root), 0);

	cr_assert_eq(mod_http_alloc(&srv, root, &hc), 0);
	port = mod_http_port(srv);
	cr_assert_eq(mod_api_alloc(&api, srv, &fake_sip, store, &ac), 0);
}

static void teardown(void)
{
	mod_http_free(srv);
	store_close(store);
	mod_api_free(api);
	code_keyring_free(keys);
	su_timer_destroy(qtimer);
	su_root_destroy(root);
	su_deinit();
	leakcheck();
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 60);

/* ---- the client ---- */

struct call {
	const char *method, *path, *auth, *ctype_out, *extra;
	const void *body;
	size_t len;
	long status;
	char *in;
	size_t in_len;
	char ctype[128], location[256];
	int done;
};

static size_t on_body(char *d, size_t s, size_t n, void *p)
{
	struct call *c = p;
	char *r = realloc(c->in, c->in_len + s * n + 1);

	if (!r)
		return 0;
	c->in = r;
	memcpy(c->in + c->in_len, d, s * n);
	c->in_len += s * n;
	c->in[c->in_len] = '\0';
	return s * n;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t olen)
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
	if (len >= olen)
		len = olen - 1;
	memcpy(out, line, len);
	out[len] = '\0';
}

static size_t on_header(char *d, size_t s, size_t n, void *p)
{
	struct call *c = p;

	header_value(d, s * n, "Content-Type", c->ctype, sizeof(c->ctype));
	header_value(d, s * n, "Location", c->location, sizeof(c->location));
	return s * n;
}

static void *client(void *p)
{
	struct call *c = p;
	struct curl_slist *h = NULL;
	char url[1024], line[512];
	CURL *e = curl_easy_init();

	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, c->path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
	if (c->auth) {
		snprintf(line, sizeof(line), "Authorization: %s", c->auth);
		h = curl_slist_append(h, line);
	}
	if (c->ctype_out) {
		snprintf(line, sizeof(line), "Content-Type: %s", c->ctype_out);
		h = curl_slist_append(h, line);
	}
	if (c->extra)
		h = curl_slist_append(h, c->extra);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	if (c->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)c->len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
	}
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
	curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void exchange(struct call *c)
{
	pthread_t t;
	time_t end = time(NULL) + 10;

	cr_assert_eq(pthread_create(&t, NULL, client, c), 0);
	while (!__atomic_load_n(&c->done, __ATOMIC_ACQUIRE) && time(NULL) < end)
		su_root_step(root, 5);
	pthread_join(t, NULL);
	if (!c->in)
		c->in = calloc(1, 1);
}

static void done_with(struct call *c)
{
	free(c->in);
	c->in = NULL;
}

static struct call req(const char *method, const char *path, const char *auth)
{
	struct call c = {.method = method, .path = path, .auth = auth};

	exchange(&c);
	return c;
}

static struct call post(const char *path, const char *auth, const char *ctype, const void *body,
                        size_t len, const char *extra)
{
	struct call c = {.method = "POST",
	                 .path = path,
	                 .auth = auth,
	                 .ctype_out = ctype,
	                 .body = body,
	                 .len = len,
	                 .extra = extra};

	exchange(&c);
	return c;
}

static json_t *json_of(const struct call *c)
{
	json_t *j = json_loads(c->in, 0, NULL);

	cr_assert_not_null(j, "not JSON: %s", c->in);
	return j;
}

static const char *str(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));

	return s ? s : "(none)";
}

/* ---- admin: calls and moves ---- */

Test(api, calls_need_the_token_and_list_live_calls)
{
	struct call c = req("GET", "/v1/calls", NULL);
	json_t *j, *calls;

	cr_assert_eq(c.status, 401);
	done_with(&c);
	c = req("GET", "/v1/calls", ADMIN);
	cr_assert_eq(c.status, 200);
	j = json_of(&c);
	calls = json_object_get(j, "calls");
	cr_assert_eq(json_array_size(calls), 2);
	cr_assert_str_eq(str(json_array_get(calls, 0), "id"), "call-1");
	cr_assert_str_eq(str(json_array_get(calls, 0), "state"), "answered");
	cr_assert_str_eq(str(json_array_get(calls, 1), "state"), "early");
	json_decref(j);
	done_with(&c);
}

/* Drain is the admin's: a stranger's POST drains nothing. */
Test(api, drain_needs_the_token)
{
	struct call c = post("/v1/drain", NULL, NULL, "", 0, NULL);
	json_t *j;

	cr_assert_eq(c.status, 401);
	cr_assert_eq(drained, 0, "no drain without the token");
	done_with(&c);
	c = req("GET", "/v1/drain", ADMIN);
	cr_assert_eq(c.status, 405, "GET does not drain (%ld)", c.status);
	cr_assert_eq(drained, 0);
	done_with(&c);
	c = post("/v1/drain", ADMIN, NULL, "", 0, NULL);
	cr_assert_eq(c.status, 200);
	cr_assert_eq(drained, 1, "the stack was told to drain");
	j = json_of(&c);
	cr_assert(json_is_true(json_object_get(j, "draining")), "%s", c.in);
	json_decref(j);
	done_with(&c);
}

Test(api, share_and_watch_routes)
{
	static const char ok[] = "{\"url\":\"https://v.example/a.mp4\"}";
	static const char http[] = "{\"url\":\"http://v.example/a.mp4\"}";
	struct call c = post("/v1/calls/c1/share", NULL, "application/json", ok, strlen(ok), NULL);
	json_t *j;

	cr_assert_eq(c.status, 401, "share is an admin route");
	done_with(&c);
	c = post("/v1/calls/c1/share", ADMIN, "application/json", ok, strlen(ok), NULL);
	cr_assert_eq(c.status, 201, "%s", c.in);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "link"), "http://x/w/secret");
	json_decref(j);
	done_with(&c);
	c = post("/v1/calls/c1/share", ADMIN, "application/json", http, strlen(http), NULL);
	cr_assert_eq(c.status, 400, "%s", c.in);
	done_with(&c);
	c = post("/v1/calls/nope/share", ADMIN, "application/json", ok, strlen(ok), NULL);
	cr_assert_eq(c.status, 404, "%s", c.in);
	done_with(&c);
	c = post("/v1/calls/c1/share", ADMIN, "application/json", "[1]", 3, NULL);
	cr_assert_eq(c.status, 400, "%s", c.in);
	done_with(&c);
	c = req("GET", "/w/AAAAAAAAAAAAAAAAAAAAAA", NULL);
	cr_assert_eq(c.status, 404);
	done_with(&c);
	c = req("GET", "/w/AAAAAAAAAAAAAAAAAAAAAA/events?since=0", NULL);
	cr_assert_eq(c.status, 404);
	done_with(&c);
	c = req("GET", "/w/AAAAAAAAAAAAAAAAAAAAAA/events?since=x", NULL);
	cr_assert_eq(c.status, 400, "a since that is no number");
	done_with(&c);
	c = post("/w/AAAAAAAAAAAAAAAAAAAAAA/control", NULL, "application/json", "{}", 2, NULL);
	cr_assert_eq(c.status, 404);
	done_with(&c);
}

Test(api, call_by_id_live_stored_and_unknown)
{
	struct call c = req("GET", "/v1/calls/call-2", ADMIN);
	json_t *j;

	cr_assert_eq(c.status, 200);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "near_uri"), "sip:x@y");
	json_decref(j);
	done_with(&c);
	c = req("GET", "/v1/calls/nope", ADMIN);
	cr_assert_eq(c.status, 404);
	j = json_of(&c);
	cr_assert(strstr(str(j, "error"), "nope"), "%s", c.in);
	json_decref(j);
	done_with(&c);
}

Test(api, start_move)
{
	struct call c = post("/v1/calls/call-1/moves", ADMIN, NULL, "", 0, NULL);
	json_t *j, *links;

	cr_assert_eq(c.status, 201, "%ld %s", c.status, c.in);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "id"), MOVE_ID);
	cr_assert_str_eq(str(j, "state"), "offered");
	cr_assert_str_eq(str(j, "code"), mv.code);
	cr_assert_str_eq(str(j, "qr_uri"), mv.qr_uri);
	cr_assert(json_integer_value(json_object_get(j, "expires_in")) > 100);
	cr_assert(json_is_string(json_object_get(j, "expires")));
	links = json_object_get(j, "links");
	cr_assert_str_eq(str(links, "qr_png"), "/v1/moves/" MOVE_ID "/qr.png");
	cr_assert_str_eq(str(links, "show"), "https://qrxfer.test/m/" SHOW "/show");
	cr_assert_str_eq(c.location, "/v1/moves/" MOVE_ID);
	cr_assert_str_eq(seen.source, "ip:127.0.0.1");
	json_decref(j);
	done_with(&c);
}

Test(api, start_move_refused)
{
	struct call c = post("/v1/calls/call-9/moves", ADMIN, NULL, "", 0, NULL);
	json_t *j;

	cr_assert_eq(c.status, 404);
	j = json_of(&c);
	cr_assert(strstr(str(j, "error"), "call-9"));
	json_decref(j);
	done_with(&c);
	c = post("/v1/calls/call-2/moves", ADMIN, NULL, "", 0, NULL);
	cr_assert_eq(c.status, 409);
	j = json_of(&c);
	cr_assert(strstr(str(j, "error"), "early"), "%s", c.in);
	json_decref(j);
	done_with(&c);
	cr_assert_eq(seen.starts, 0, "sip_move_start was asked for a call that cannot move");
}

Test(api, move_merges_store_and_live)
{
	struct call c;
	json_t *j, *ev;

	mv.state = SIP_MOVE_MOVING;
	c = req("GET", "/v1/moves/" MOVE_ID, ADMIN);
	cr_assert_eq(c.status, 200, "%s", c.in);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "state"), "moving", "the live state wins");
	cr_assert_eq(json_object_get(j, "live"), json_true());
	cr_assert_eq(json_object_get(j, "code"), NULL, "no code once not offered");
	cr_assert(json_is_integer(json_object_get(j, "failures")), "from the store");
	ev = json_object_get(j, "events");
	cr_assert(json_array_size(ev) >= 1);
	cr_assert_str_eq(str(json_array_get(ev, json_array_size(ev) - 1), "step"), "code-sent");
	cr_assert(json_is_integer(json_object_get(json_array_get(ev, 0), "ms")));
	json_decref(j);
	done_with(&c);

	c = req("GET", "/v1/moves/ffffffffffffffff", ADMIN);
	cr_assert_eq(c.status, 404);
	done_with(&c);
	c = req("GET", "/v1/moves", ADMIN);
	cr_assert_eq(c.status, 200);
	j = json_of(&c);
	cr_assert_eq(json_array_size(json_object_get(j, "moves")), 1);
	cr_assert_str_eq(str(json_array_get(json_object_get(j, "moves"), 0), "id"), MOVE_ID);
	json_decref(j);
	done_with(&c);
	c = req("GET", "/v1/moves?call=call-7", ADMIN);
	j = json_of(&c);
	cr_assert_eq(json_array_size(json_object_get(j, "moves")), 0);
	json_decref(j);
	done_with(&c);
}

/* ---- images ---- */

static void scan_expect(const struct call *c, enum code_sym_kind kind, const char *text)
{
	struct code_scan_opts o;
	struct code_scan_result r;

	code_scan_opts_default(&o);
	cr_assert_eq(code_scan_buffer(c->in, c->in_len, &o, &r), 0, "image does not scan");
	cr_assert_eq(r.sym[0].kind, kind);
	cr_assert_str_eq(r.sym[0].text, text);
}

Test(api, images_decode_to_the_code)
{
	struct call c = req("GET", "/v1/moves/" MOVE_ID "/qr.png", ADMIN);

	cr_assert_eq(c.status, 200);
	cr_assert_str_eq(c.ctype, "image/png");
	scan_expect(&c, CODE_SYM_QR, mv.qr_uri);
	done_with(&c);
	c = req("GET", "/v1/moves/" MOVE_ID "/barcode.png", ADMIN);
	cr_assert_eq(c.status, 200);
	scan_expect(&c, CODE_SYM_CODE128, mv.code);
	done_with(&c);
	c = req("GET", "/v1/moves/" MOVE_ID "/qr.svg", ADMIN);
	cr_assert_eq(c.status, 200);
	cr_assert_str_eq(c.ctype, "image/svg+xml");
	cr_assert(strstr(c.in, "<svg"));
	done_with(&c);
	c = req("GET", "/v1/moves/" MOVE_ID "/qr.txt", ADMIN);
	cr_assert_eq(c.status, 200);
	cr_assert(strstr(c.in, "\xe2\x96"), "half blocks expected");
	done_with(&c);
	c = req("GET", "/m/" SHOW "/qr.svg", NULL);
	cr_assert_eq(c.status, 200, "the public SVG for the show page");
	done_with(&c);
	c = req("GET", "/m/" MOVE_ID "/qr.svg", NULL);
	cr_assert_eq(c.status, 404, "the move id is no key to the public SVG");
	done_with(&c);
}

Test(api, images_gone_once_not_on_offer)
{
	struct call c;
	json_t *j;

	mv.state = SIP_MOVE_DONE;
	c = req("GET", "/v1/moves/" MOVE_ID "/qr.png", ADMIN);
	cr_assert_eq(c.status, 404);
	j = json_of(&c);
	cr_assert(strstr(str(j, "error"), "no longer on offer"), "%s", c.in);
	json_decref(j);
	done_with(&c);
	c = req("GET", "/v1/moves/0000000000000001/qr.png", ADMIN);
	cr_assert_eq(c.status, 404);
	done_with(&c);
}

/* ---- pages ---- */

Test(api, state_is_public_and_has_no_secret)
{
	struct call c = req("GET", "/m/" SHOW "/state", NULL);
	json_t *j;

	cr_assert_eq(c.status, 200);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "state"), "offered");
	cr_assert(json_integer_value(json_object_get(j, "expires_in")) > 100);
	cr_assert_null(strstr(c.in, mv.token));
	cr_assert_null(strstr(c.in, mv.code));
	json_decref(j);
	done_with(&c);
	mv.state = SIP_MOVE_FAILED;
	snprintf(mv.reason, sizeof(mv.reason), "C answered 488");
	c = req("GET", "/m/" SHOW "/state", NULL);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "state"), "failed");
	cr_assert_str_eq(str(j, "reason"), "C answered 488");
	json_decref(j);
	done_with(&c);
	c = req("GET", "/m/not-hex!/state", NULL);
	cr_assert_eq(c.status, 404);
	done_with(&c);
	c = req("GET", "/m/" MOVE_ID "/state", NULL);
	cr_assert_eq(c.status, 404, "the move id is no key to the state");
	done_with(&c);
}

Test(api, show_page_offered)
{
	struct call c = req("GET", "/m/" MOVE_ID "/show", NULL);

	cr_assert_eq(c.status, 404, "the move id is no key to the show page");
	done_with(&c);
	c = req("GET", "/m/Qx7_kP2-vZ9mN4rT8sW1yB/show", NULL);
	cr_assert_eq(c.status, 404, "another secret of the same shape");
	done_with(&c);
	c = req("GET", "/m/" SHOW "/show", NULL);
	cr_assert_eq(c.status, 200);
	cr_assert(!strncmp(c.ctype, "text/html", 9));
	cr_assert(strstr(c.in, "<svg"), "the QR is inline");
	cr_assert(strstr(c.in, mv.code), "the numeric code is shown");
	cr_assert(strstr(c.in, "fetch('state'"), "it polls the state");
	cr_assert_null(strstr(c.in, mv.token), "the token is only inside the QR drawing");
	done_with(&c);
}

Test(api, show_page_escapes_what_it_shows)
{
	struct call c;

	mv.state = SIP_MOVE_DONE;
	snprintf(mv.taken_by, sizeof(mv.taken_by), "<script>alert(\"x\")</script>&'");
	c = req("GET", "/m/" SHOW "/show", NULL);
	cr_assert_eq(c.status, 200);
	cr_assert(
	    strstr(c.in, "Moved to &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"),
	    "%s", c.in);
	cr_assert_null(strstr(c.in, "<script>alert"));
	done_with(&c);
}

Test(api, html_escape)
{
	char *s = mod_api_html_escape("<a href=\"x\">'&'</a> ok");

	cr_assert_str_eq(s, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt; ok");
	free(s);
	s = mod_api_html_escape("");
	cr_assert_str_eq(s, "");
	free(s);
}

Test(api, landing_page_checks_the_token)
{
	char path[128], old[CODE_TOKEN_LEN + 1];
	struct call c;

	snprintf(path, sizeof(path), "/m/%s", mv.token);
	c = req("GET", path, NULL);
	cr_assert_eq(c.status, 200);
	cr_assert(strstr(c.in, "<form method=\"post\""), "%s", c.in);
	cr_assert(strstr(c.in, "name=\"target\""));
	done_with(&c);
	make_token(time(NULL) - 10, old);
	snprintf(path, sizeof(path), "/m/%s", old);
	c = req("GET", path, NULL);
	cr_assert_eq(c.status, 410);
	done_with(&c);
	c = req("GET", "/m/AAAA", NULL);
	cr_assert_eq(c.status, 404);
	done_with(&c);
	memcpy(old, mv.token, sizeof(old));
	old[40] = old[40] == 'A' ? 'B' : 'A';
	snprintf(path, sizeof(path), "/m/%s", old);
	c = req("GET", path, NULL);
	cr_assert_eq(c.status, 404, "a forged token");
	done_with(&c);
}

Test(api, landing_post_dials)
{
	char path[128];
	const char *form = "target=sip%3Ab%40127.0.0.1%3A5064";
	struct call c;

	snprintf(path, sizeof(path), "/m/%s", mv.token);
	c = post(path, NULL, "application/x-www-form-urlencoded", form, strlen(form), NULL);
	cr_assert_eq(c.status, 200, "%s", c.in);
	cr_assert(strstr(c.in, "Calling sip:b@127.0.0.1:5064"), "%s", c.in);
	cr_assert_str_eq(seen.target, "sip:b@127.0.0.1:5064");
	cr_assert_str_eq(seen.token, mv.token);
	done_with(&c);
	/* used: the fake, like sip/, refuses it now */
	c = post(path, NULL, "application/x-www-form-urlencoded", form, strlen(form), NULL);
	cr_assert_eq(c.status, 404);
	cr_assert(strstr(c.in, "not valid, or has been used"), "%s", c.in);
	done_with(&c);
}

Test(api, landing_post_number_and_escaping)
{
	char path[128];
	const char *num = "target=%2B1+555-0100",
	           *bad = "target=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E";
	const char *odd = "target=sip%3Ao'neil%26co%40127.0.0.1";
	struct call c;

	snprintf(path, sizeof(path), "/m/%s", mv.token);
	c = post(path, NULL, "application/x-www-form-urlencoded", bad, strlen(bad), NULL);
	cr_assert_eq(c.status, 400);
	cr_assert(strstr(c.in, "&lt;img src=x onerror=alert(1)&gt;"), "%s", c.in);
	cr_assert_null(strstr(c.in, "<img"));
	cr_assert_eq(seen.dials, 0);
	done_with(&c);
	c = post(path, NULL, "application/x-www-form-urlencoded", odd, strlen(odd), NULL);
	cr_assert_eq(c.status, 200);
	cr_assert(strstr(c.in, "Calling sip:o&#39;neil&amp;co@127.0.0.1"), "%s", c.in);
	done_with(&c);
	mv.state = SIP_MOVE_OFFERED;
	c = post(path, NULL, "application/x-www-form-urlencoded", num, strlen(num), NULL);
	cr_assert_eq(c.status, 200);
	cr_assert_str_eq(seen.target, "sip:+15550100@" DOMAIN);
	done_with(&c);
}

/* ---- scans ---- */

/* Nothing of the move leaves in a scan's answer: not its code, token, id or call. */
static void reveals_nothing(const struct call *c)
{
	cr_assert_null(strstr(c->in, mv.code), "%s", c->in);
	cr_assert_null(strstr(c->in, mv.token), "%s", c->in);
	cr_assert_null(strstr(c->in, MOVE_ID), "%s", c->in);
	cr_assert_null(strstr(c->in, "call-1"), "%s", c->in);
	cr_assert_null(strstr(c->in, SHOW), "%s", c->in);
}

Test(api, scans)
{
	struct code_qr *qr;
	uint8_t *png, *blank, *bar;
	size_t len, blen, barlen;
	struct code_grey g = {.w = 64, .h = 64};
	struct call c;
	json_t *j;

	cr_assert_eq(code_qr_make(&qr, mv.qr_uri, CODE_ECC_M), 0);
	cr_assert_eq(code_qr_png(qr, 4, 4, &png, &len), 0);
	code_qr_free(qr);
	cr_assert_eq(code_barcode_png(mv.code, 3, 80, 10, &bar, &barlen), 0);
	g.px = malloc(64 * 64);
	memset(g.px, 255, 64 * 64);
	cr_assert_eq(code_grey_png(&g, &blank, &blen), 0);
	free(g.px);

	c = post("/v1/scans?who=new", NULL, "text/plain", png, len, NULL);
	cr_assert_eq(c.status, 415);
	done_with(&c);
	c = post("/v1/scans?who=them", NULL, "image/png", png, len, NULL);
	cr_assert_eq(c.status, 400);
	done_with(&c);
	c = post("/v1/scans?who=new&target=sip%3Ab%40127.0.0.1", NULL, "image/png", png, len, NULL);
	cr_assert_eq(c.status, 200, "%s", c.in);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "result"), "taken");
	cr_assert_eq(json_object_size(j), 1, "%s", c.in);
	json_decref(j);
	reveals_nothing(&c);
	cr_assert_str_eq(seen.who, "new");
	cr_assert_str_eq(seen.target, "sip:b@127.0.0.1");
	done_with(&c);
	/* A Code 128 of the live numeric code: taken, and still nothing told. */
	c = post("/v1/scans?who=new", NULL, "image/png", bar, barlen, NULL);
	cr_assert_eq(c.status, 200, "%s", c.in);
	cr_assert_str_eq(c.in, "{\"result\":\"taken\"}", "%s", c.in);
	reveals_nothing(&c);
	done_with(&c);
	c = post("/v1/scans?who=new", NULL, "image/png", blank, blen, NULL);
	cr_assert_eq(c.status, 404);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "error"), "no code", "%s", c.in);
	json_decref(j);
	reveals_nothing(&c);
	done_with(&c);
	c = post("/v1/scans?who=new", NULL, "image/jpeg", "hello", 5, NULL);
	cr_assert_eq(c.status, 422);
	done_with(&c);
	/* A's half needs the secret only A was sent. */
	c = post("/v1/scans?who=near", NULL, "image/png", png, len, NULL);
	cr_assert_eq(c.status, 403, "%s", c.in);
	reveals_nothing(&c);
	done_with(&c);
	c = post("/v1/scans?who=near&s=Qx7_kP2-vZ9mN4rT8sW1yB", NULL, "image/png", png, len, NULL);
	cr_assert_eq(c.status, 403, "%s", c.in);
	done_with(&c);
	c = post("/v1/scans?who=near&s=" SHOW, NULL, "image/png", png, len, NULL);
	cr_assert_eq(c.status, 200, "%s", c.in);
	cr_assert_str_eq(seen.who, "near");
	done_with(&c);
	c = post("/m/" SHOW "/scan", NULL, "image/png", png, len, NULL);
	cr_assert_eq(c.status, 200, "%s", c.in);
	cr_assert_str_eq(seen.who, "near");
	reveals_nothing(&c);
	done_with(&c);
	/* No code on offer: refused before any decoding. */
	mv.state = SIP_MOVE_DONE;
	c = post("/v1/scans?who=new", NULL, "image/png", png, len, NULL);
	cr_assert_eq(c.status, 409, "%s", c.in);
	done_with(&c);
	free(png);
	free(bar);
	free(blank);
}

/* A move sip/ let go of: its show page comes from the store, by the secret's hash only. */
Test(api, show_page_from_the_store)
{
	struct call c;
	json_t *j;

	mv.gone = 1;
	c = req("GET", "/m/" SHOW "/state", NULL);
	cr_assert_eq(c.status, 200, "%s", c.in);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "state"), "offered");
	json_decref(j);
	done_with(&c);
	c = req("GET", "/m/" MOVE_ID "/state", NULL);
	cr_assert_eq(c.status, 404);
	done_with(&c);
}

Test(api, refer)
{
	const char *ok = "{\"target\": \"sip:desk@127.0.0.1:5066\"}";
	struct call c;

	c = post("/v1/moves/" MOVE_ID "/refer", ADMIN, "application/json", "{", 1, NULL);
	cr_assert_eq(c.status, 400);
	done_with(&c);
	c = post("/v1/moves/" MOVE_ID "/refer", ADMIN, "application/json", "{\"target\": 3}", 13,
	         NULL);
	cr_assert_eq(c.status, 400);
	done_with(&c);
	c = post("/v1/moves/" MOVE_ID "/refer", ADMIN, "application/json", ok, strlen(ok), NULL);
	cr_assert_eq(c.status, 202, "%s", c.in);
	cr_assert_str_eq(seen.target, "sip:desk@127.0.0.1:5066");
	done_with(&c);
	c = post("/v1/moves/" MOVE_ID "/refer", NULL, "application/json", ok, strlen(ok), NULL);
	cr_assert_eq(c.status, 401);
	done_with(&c);
}

/* ---- the SMS webhook ---- */

Test(api, twilio_signature_documented_example)
{
	const char *form = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&"
	                   "From=%2B14158675309&To=%2B18005551212";
	char sig[64];

	cr_assert_eq(mod_api_twilio_signature("12345",
	                                      "https://mycompany.com/myapp.php?foo=1&bar=2", form,
	                                      strlen(form), sig, sizeof(sig)),
	             0);
	cr_assert_str_eq(sig, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
}

/* The signature by an independent implementation: python3's hmac. */
static void python_signature(const char *form, char *out, size_t len)
{
	char cmd[2048];
	FILE *p;

	snprintf(cmd, sizeof(cmd),
	         "python3 -c 'import sys,hmac,hashlib,base64,urllib.parse as u;"
	         "p=u.parse_qsl(sys.argv[3],keep_blank_values=True);"
	         "d=sys.argv[2]+\"\".join(k+v for k,v in sorted(p));"
	         "print(base64.b64encode(hmac.new(sys.argv[1].encode(),d.encode(),hashlib.sha1)"
	         ".digest()).decode())' '%s' '%s' '%s'",
	         TWILIO, HOOKURL, form);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	cr_assert_not_null(fgets(out, (int)len, p));
	pclose(p);
	out[strcspn(out, "\n")] = '\0';
}

Test(api, sms_inbound_signature)
{
	const char *form = "To=%2B15550001111&From=%2B15551234567&Body=Yes+please&MessageSid=SM1&"
	                   "AccountSid=AC123";
	const char *tampered = "To=%2B15550001111&From=%2B15551234567&Body=No&MessageSid=SM1&"
	                       "AccountSid=AC123";
	char sig[64], hdr[128], mine[64];
	struct call c;

	python_signature(form, sig, sizeof(sig));
	cr_assert_eq(
	    mod_api_twilio_signature(TWILIO, HOOKURL, form, strlen(form), mine, sizeof(mine)), 0);
	cr_assert_str_eq(mine, sig);
	snprintf(hdr, sizeof(hdr), "X-Twilio-Signature: %s", sig);

	c = post("/v1/sms/inbound", NULL, "application/x-www-form-urlencoded", form, strlen(form),
	         NULL);
	cr_assert_eq(c.status, 403, "unsigned");
	done_with(&c);
	c = post("/v1/sms/inbound", NULL, "application/x-www-form-urlencoded", tampered,
	         strlen(tampered), hdr);
	cr_assert_eq(c.status, 403, "tampered body");
	cr_assert_eq(seen.sms, 0);
	done_with(&c);
	c = post("/v1/sms/inbound", NULL, "application/x-www-form-urlencoded", form, strlen(form),
	         hdr);
	cr_assert_eq(c.status, 200, "%s", c.in);
	cr_assert_str_eq(c.ctype, "text/xml");
	cr_assert(strstr(c.in, "<Response/>"));
	cr_assert_eq(seen.sms, 1);
	cr_assert_str_eq(seen.sms_from, "+15551234567");
	cr_assert_str_eq(seen.sms_body, "Yes please");
	cr_assert_str_eq(seen.sms_id, "SM1",
	                 "the gateway's message id reaches the stack (replays)");
	done_with(&c);
}

Test(api, sms_inbound_shared_secret)
{
	const char *form = "From=%2B1555&Body=no";
	struct call c;

	c = post("/v1/sms/inbound", NULL, "application/x-www-form-urlencoded", form, strlen(form),
	         "X-Qrxfer-Secret: wrong");
	cr_assert_eq(c.status, 403);
	done_with(&c);
	c = post("/v1/sms/inbound", NULL, "application/x-www-form-urlencoded", form, strlen(form),
	         "X-Qrxfer-Secret: shh");
	cr_assert_eq(c.status, 200);
	cr_assert_str_eq(seen.sms_body, "no");
	done_with(&c);
}

Test(api, metrics_route)
{
	struct call c = req("GET", "/metrics", ADMIN);

	cr_assert_eq(c.status, 200);
	cr_assert(strstr(c.in, "qrxfer_"), "%s", c.in);
	done_with(&c);
}

/* A push (to=mine) rings the user's devices, no code made; any other "to" is refused. */
Test(api, push_to_mine)
{
	struct call c = post("/v1/calls/call-1/moves?to=mine", ADMIN, NULL, "", 0, NULL);
	json_t *j;

	cr_assert_eq(c.status, 201, "%ld %s", c.status, c.in);
	j = json_of(&c);
	cr_assert_str_eq(str(j, "state"), "moving");
	json_decref(j);
	done_with(&c);
	cr_assert_eq(own_seen.pushes, 1);
	cr_assert_eq(seen.starts, 0, "a push makes no code");
	c = post("/v1/calls/call-1/moves?to=elsewhere", ADMIN, NULL, "", 0, NULL);
	cr_assert_eq(c.status, 400, "%s", c.in);
	done_with(&c);
	c = post("/v1/calls/call-1/moves?to=mine", NULL, NULL, "", 0, NULL);
	cr_assert_eq(c.status, 401);
	done_with(&c);
	cr_assert_eq(own_seen.pushes, 1, "neither a bad 'to' nor a stranger pushed");
	own_seen.no_device = 1;
	c = post("/v1/calls/call-1/moves?to=mine", ADMIN, NULL, "", 0, NULL);
	cr_assert_eq(c.status, 409, "no other device: %ld %s", c.status, c.in);
	done_with(&c);
	own_seen.no_device = 0;
}

/* A proximity hint: JSON with aor and device (seen_at optional, never in the future). */
Test(api, devices_near)
{
	static const char good[] = "{\"aor\":\"alice@qrxfer.test\",\"device\":\"udp:192.0.2.1:"
	                           "5060\",\"seen_at\":1700000000}";
	static const char *const bad[] = {
	    "{\"aor\":\"alice@qrxfer.test\"",
	    "{\"aor\":\"alice@qrxfer.test\"}",
	    "{\"aor\":\"a@b\",\"device\":\"d\",\"seen_at\":\"now\"}",
	    "{\"aor\":\"a@b\",\"device\":\"d\",\"seen_at\":99999999999}",
	    "{\"aor\":\"\",\"device\":\"d\"}",
	};
	struct call c =
	    post("/v1/devices/near", NULL, "application/json", good, strlen(good), NULL);

	cr_assert_eq(c.status, 401);
	done_with(&c);
	c = post("/v1/devices/near", ADMIN, "application/json", good, strlen(good), NULL);
	cr_assert_eq(c.status, 200, "%ld %s", c.status, c.in);
	done_with(&c);
	cr_assert_eq(own_seen.nears, 1);
	cr_assert_str_eq(own_seen.aor, "alice@qrxfer.test");
	cr_assert_str_eq(own_seen.device, "udp:192.0.2.1:5060");
	cr_assert_eq(own_seen.seen_at, 1700000000);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = post("/v1/devices/near", ADMIN, "application/json", bad[i], strlen(bad[i]),
		         NULL);
		cr_assert_eq(c.status, 400, "%s: %ld %s", bad[i], c.status, c.in);
		done_with(&c);
	}
	cr_assert_eq(own_seen.nears, 1, "no bad hint was taken");
}
