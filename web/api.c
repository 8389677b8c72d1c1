/*
 * web/api: the JSON API, routes on web/http over sip/ (live calls and moves), sql/ (stored
 * moves) and codes/ (images), answered through jobs (jobs.c); and the one route table, with
 * the pages (pages.c) and the webhooks (webhooks.c).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "web/api_int.h"
#include "web/forms.h"
#include "move/own.h"

#define DEFAULT_QR_PX 8

/* Move ids are hex (with dashes for a uuid); anything else is not one of ours. */
static bool valid_id(const char *s)
{
	size_t n = 0;

	for (; s && s[n]; n++)
		if (!isxdigit((unsigned char)s[n]) && s[n] != '-')
			return false;
	return n > 0 && n < STORE_ID_MAX;
}

/* ---- admin: calls ---- */

struct call_find {
	const char *id;
	json_t *found, *all;
	enum sip_call_state state;
};

static void each_call(const struct sip_call_info *c, void *arg)
{
	struct call_find *f = arg;

	if (f->all)
		json_array_append_new(f->all, web_call_json(c));
	else if (!f->found && !strcmp(c->id, f->id)) {
		f->found = web_call_json(c);
		f->state = c->state;
	}
}

static void get_calls(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	struct call_find f = {.all = json_array()};

	if (!a->sip) {
		json_decref(f.all);
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	sip_calls_foreach(a->sip, each_call, &f);
	mod_http_reply_json(req, 200, json_pack("{s:o}", "calls", f.all));
}

/* Take no new calls: Kamailio's probes get 503, new INVITEs too; live calls go on. */
static void post_drain(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	sip_drain(a->sip);
	mod_http_reply_json(req, 200, json_pack("{s:b}", "draining", 1));
}

static void finish_call(struct job *j)
{
	if (j->store_err == ENOENT)
		mod_http_reply_errorf(j->req, 404, "no call %s", j->id);
	else if (j->store_err || !j->stored)
		mod_http_reply_errorf(j->req, 500, "call %s: store: %s", j->id,
		                      strerror(j->store_err > 0 ? j->store_err : EIO));
	else
		mod_http_reply_json(j->req, 200, json_incref(j->stored));
}

static void get_call(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *id = mod_http_param(req, "id");
	struct call_find f = {.id = id};
	struct job *j;

	if (a->sip)
		sip_call_get(a->sip, id, each_call, &f);
	if (f.found) {
		mod_http_reply_json(req, 200, f.found);
		return;
	}
	if (!a->store || strlen(id) >= STORE_ID_MAX) {
		mod_http_reply_errorf(req, 404, "no live call %s", id);
		return;
	}
	/* not live here: it may have ended, or live on another node */
	j = web_job_new(a, req, finish_call);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	if (web_submit(j, STORE_OP_CALL_GET, id))
		j->store_err = EIO;
	web_job_go(j);
}

static void finish_move_start(struct job *j)
{
	char loc[STORE_ID_MAX + 16];

	if (j->live_err) {
		mod_http_reply_errorf(j->req, web_err_status(j->live_err),
		                      "call %s: cannot start a move: %s", j->id,
		                      code_strerror(j->live_err));
		return;
	}
	snprintf(loc, sizeof(loc), "/v1/moves/%s",
	         json_string_value(json_object_get(j->live, "id")));
	mod_http_reply_header(j->req, "Location", loc);
	mod_http_reply_json(j->req, 201, json_incref(j->live));
}

static void post_move(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *id = mod_http_param(req, "id");
	struct call_find f = {.id = id};
	char source[STORE_SOURCE_MAX];
	const char *to = mod_http_query(req, "to");
	struct job *j;
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	if (to && strcmp(to, "mine")) {
		mod_http_reply_error(req, 400, "query to must be mine (or absent: a code)");
		return;
	}
	sip_call_get(a->sip, id, each_call, &f);
	if (!f.found) {
		mod_http_reply_errorf(req, 404, "no live call %s", id);
		return;
	}
	json_decref(f.found);
	if (f.state != SIP_CALL_ANSWERED) {
		mod_http_reply_errorf(req, 409, "call %s cannot move: it is %s", id,
		                      sip_call_state_name(f.state));
		return;
	}
	j = web_job_new(a, req, finish_move_start);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	web_source_of(req, source, sizeof(source));
	j->pending++;
	/* to=mine: ring the user's other devices (own devices), no code */
	err = to ? own_push(a->sip, id, source, web_on_live, j)
	         : sip_move_start(a->sip, id, source, web_on_live, j);
	if (err) {
		j->pending--;
		j->live_err = err;
	}
	web_job_go(j);
}

/* A proximity hint from a presence, badge or Wi-Fi app: {"aor", "device", "seen_at"}. */
static void post_devices_near(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	json_t *j = NULL, *seen;
	const char *aor, *device;
	json_int_t at = 0;
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	if (mod_http_body_json(req, &j))
		return; /* answered 400 */
	aor = json_string_value(json_object_get(j, "aor"));
	device = json_string_value(json_object_get(j, "device"));
	seen = json_object_get(j, "seen_at");
	if (seen && !json_is_integer(seen)) {
		json_decref(j);
		mod_http_reply_error(req, 400,
		                     "\"seen_at\" must be an integer (seconds since 1970)");
		return;
	}
	at = seen ? json_integer_value(seen) : 0;
	if (at < 0 || at > (json_int_t)time(NULL) + 60) {
		json_decref(j);
		mod_http_reply_error(req, 400, "\"seen_at\" must not be in the future");
		return;
	}
	err = aor && device ? own_near(a->sip, aor, device, (int64_t)at) : EINVAL;
	json_decref(j);
	if (err == EINVAL) {
		mod_http_reply_error(
		    req, 400,
		    "\"aor\" (user@host or a sip: URI) and \"device\" (a registered "
		    "contact or flow) are needed, each under 320 characters");
		return;
	}
	if (err) {
		mod_http_reply_errorf(req, 503, "own devices: %s", strerror(err));
		return;
	}
	mod_http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* ---- admin: moves ---- */

static void finish_moves(struct job *j)
{
	if (j->store_err)
		mod_http_reply_errorf(j->req, 500, "list moves: store: %s",
		                      strerror(j->store_err > 0 ? j->store_err : EIO));
	else
		mod_http_reply_json(j->req, 200, json_pack("{s:O}", "moves", j->list));
}

static void get_moves(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *call = mod_http_query(req, "call"), *lim = mod_http_query(req, "limit");
	long limit = 100;
	char *end;
	struct job *j;

	if (!a->store) {
		mod_http_reply_error(req, 503, "no store");
		return;
	}
	if (lim) {
		limit = strtol(lim, &end, 10);
		if (*end || limit < 1 || limit > 10000) {
			mod_http_reply_error(req, 400, "limit must be 1..10000");
			return;
		}
	}
	if (call && strlen(call) >= STORE_ID_MAX) {
		mod_http_reply_error(req, 400, "call id too long");
		return;
	}
	j = web_job_new(a, req, finish_moves);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	j->kind = (int)limit;
	if (web_submit(j, STORE_OP_MOVE_LIST, call ? call : ""))
		j->store_err = EIO;
	web_job_go(j);
}

static void finish_move_get(struct job *j)
{
	json_t *o;
	const char *k;
	json_t *v;

	if (j->live_err && j->store_err) {
		if ((j->live_err == ENOENT || j->live_err == ESRCH || j->live_err == -1) &&
		    (j->store_err == ENOENT || j->store_err == -1))
			mod_http_reply_errorf(j->req, 404, "no move %s", j->id);
		else
			mod_http_reply_errorf(j->req, 500, "move %s: %s", j->id,
			                      code_strerror(j->store_err > 0 ? j->store_err : EIO));
		return;
	}
	/* the stored record, with this node's live view on top */
	o = j->stored ? json_deep_copy(j->stored) : json_object();
	if (!j->live_err && j->live)
		json_object_foreach(j->live, k, v) json_object_set(o, k, v);
	else
		web_add_links(j->api, o, j->id, NULL);
	json_object_set_new(o, "live", json_boolean(!j->live_err));
	if (j->events)
		json_object_set(o, "events", j->events);
	mod_http_reply_json(j->req, 200, o);
}

static void get_move(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *id = mod_http_param(req, "id");
	struct job *j;

	if (!valid_id(id)) {
		mod_http_reply_errorf(req, 404, "no move %s", id);
		return;
	}
	j = web_job_new(a, req, finish_move_get);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	if (a->sip)
		web_live_get(j, id);
	if (a->store) {
		web_submit(j, STORE_OP_MOVE_GET, id);
		web_submit(j, STORE_OP_MOVE_EVENTS, id);
	}
	web_job_go(j);
}

/* ---- images ---- */

void web_reply_image(struct job *j)
{
	struct mod_api *a = j->api;
	struct code_qr *qr = NULL;
	uint8_t *png = NULL;
	char *txt = NULL;
	size_t len = 0;
	int err;

	if (j->live_err) {
		if (j->live_err == ENOENT)
			mod_http_reply_errorf(j->req, 404, "move %s is not live on this node",
			                      j->id);
		else
			mod_http_reply_errorf(j->req, web_err_status(j->live_err), "move %s: %s",
			                      j->id, code_strerror(j->live_err));
		return;
	}
	if (j->live_state != SIP_MOVE_OFFERED || !j->qr_uri ||
	    (j->kind == IMG_BARCODE_PNG && !j->code)) {
		mod_http_reply_errorf(j->req, 404, "move %s: the code is no longer on offer (%s)",
		                      j->id, sip_move_state_name(j->live_state));
		return;
	}
	mod_http_reply_header(j->req, "Cache-Control", "no-store");
	if (j->kind == IMG_BARCODE_PNG) {
		err = code_barcode_png(j->code, 3, 80, 10, &png, &len);
		if (!err)
			mod_http_reply(j->req, 200, "image/png", png, len);
		goto out;
	}
	err = code_qr_make(&qr, j->qr_uri, CODE_ECC_M);
	if (err)
		goto out;
	switch (j->kind) {
	case IMG_QR_PNG:
		err = code_qr_png(qr, a->qr_px, 4, &png, &len);
		if (!err)
			mod_http_reply(j->req, 200, "image/png", png, len);
		break;
	case IMG_QR_SVG:
		err = code_qr_svg(qr, a->qr_px, 4, &txt);
		if (!err)
			mod_http_reply(j->req, 200, "image/svg+xml", txt, strlen(txt));
		break;
	default:
		err = code_qr_text(qr, 2, &txt);
		if (!err)
			mod_http_reply(j->req, 200, "text/plain; charset=utf-8", txt, strlen(txt));
		break;
	}
out:
	if (err) {
		LOG_ERR("api", "move %s: render: %s", j->id, code_strerror(err));
		mod_http_reply_errorf(j->req, 500, "move %s: cannot render the code: %s", j->id,
		                      code_strerror(err));
	}
	code_qr_free(qr);
	free(png);
	free(txt);
}

static void get_image(struct mod_http_req *req, struct mod_api *a, enum image_kind kind)
{
	const char *id = mod_http_param(req, "id");
	struct job *j;

	if (!valid_id(id)) {
		mod_http_reply_errorf(req, 404, "no move %s", id);
		return;
	}
	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	j = web_job_new(a, req, web_reply_image);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->kind = (int)kind;
	web_live_get(j, id);
	web_job_go(j);
}

static void get_qr_png(struct mod_http_req *req, void *arg)
{
	get_image(req, arg, IMG_QR_PNG);
}

static void get_qr_svg(struct mod_http_req *req, void *arg)
{
	get_image(req, arg, IMG_QR_SVG);
}

static void get_qr_txt(struct mod_http_req *req, void *arg)
{
	get_image(req, arg, IMG_QR_TXT);
}

static void get_barcode_png(struct mod_http_req *req, void *arg)
{
	get_image(req, arg, IMG_BARCODE_PNG);
}

/* ---- refer and scans ---- */

static void finish_live(struct job *j)
{
	if (j->live_err)
		mod_http_reply_errorf(j->req, web_err_status(j->live_err), "%s: %s", j->text,
		                      code_strerror(j->live_err));
	else
		mod_http_reply_json(j->req, (unsigned)j->kind, json_incref(j->live));
}

static void post_refer(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *id = mod_http_param(req, "id"), *body;
	struct mod_api_refer r;
	char why[256];
	struct job *j;
	size_t len = 0;
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	body = mod_http_body(req, &len);
	if (mod_api_refer_parse(body, len, &r, why, sizeof(why))) {
		mod_http_reply_error(req, 400, why);
		return;
	}
	if (!valid_id(id)) {
		mod_http_reply_errorf(req, 404, "no move %s", id);
		return;
	}
	j = web_job_new(a, req, finish_live);
	if (!j || !(j->text = malloc(STORE_ID_MAX + MOD_API_TARGET_MAX + 32))) {
		if (j)
			web_job_free(j);
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->text, STORE_ID_MAX + MOD_API_TARGET_MAX + 32, "move %s: REFER to %s", id,
	         r.target);
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->kind = 202;
	j->pending++;
	err = sip_move_refer(a->sip, id, r.target, web_on_live, j);
	if (err) {
		j->pending--;
		j->live_err = err;
	}
	web_job_go(j);
}

/* A scan answers only "taken" or "no code": nothing of the move, its call or its code. */
static void finish_scan(struct job *j)
{
	if (!j->live_err) {
		mod_http_reply_json(j->req, 200, json_pack("{s:s}", "result", "taken"));
	} else if (j->live_err == EAGAIN) {
		web_retry_after(j);
		mod_http_reply_error(j->req, 429, "too many attempts: wait");
	} else {
		mod_http_reply_error(j->req, 404, "no code");
	}
}

/* Refused before decoding (sip_move_scan's own errors). */
static void scan_refused(struct mod_http_req *req, int err)
{
	switch (err) {
	case ENOENT:
		mod_http_reply_error(req, 409, "no code on offer");
		break;
	case EPERM:
		mod_http_reply_error(req, 403, "who=near needs the show link's secret");
		break;
	case EAGAIN:
		mod_http_reply_header(req, "Retry-After", "1");
		mod_http_reply_error(req, 429, "too many images: wait");
		break;
	case ENOSPC:
		mod_http_reply_header(req, "Retry-After", "1");
		mod_http_reply_error(req, 503, "busy decoding images: try again");
		break;
	case CODE_ETOOLARGE:
		mod_http_reply_error(req, 413, "image over the size or pixel caps");
		break;
	case CODE_ENOTIMAGE:
	case CODE_ETRUNCATED:
		mod_http_reply_error(req, 422, "not a PNG or JPEG image");
		break;
	case EINVAL:
		mod_http_reply_error(req, 400, "bad scan request");
		break;
	case ENOTSUP:
		mod_http_reply_error(req, 503, "cannot read images here");
		break;
	default:
		mod_http_reply_error(req, 500, "cannot take the image");
		break;
	}
}

/* One camera image from who; show is the secret that makes a "near" image A's. */
static void scan_request(struct mod_http_req *req, struct mod_api *a, const char *who,
                         const char *target, const char *show)
{
	const char *ct = mod_http_header(req, "Content-Type"), *body;
	size_t len = 0;
	struct job *j;
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	if (!ct || (strncasecmp(ct, "image/png", 9) && strncasecmp(ct, "image/jpeg", 10))) {
		mod_http_reply_error(req, 415, "Content-Type must be image/png or image/jpeg");
		return;
	}
	if (target && (!strcmp(who, "near") || !mod_api_valid_uri(target))) {
		mod_http_reply_error(
		    req, 400, "target must be a sip:, sips: or tel: URI, and only with who=new");
		return;
	}
	body = mod_http_body(req, &len);
	if (!len) {
		mod_http_reply_error(req, 400, "no image in the body");
		return;
	}
	j = web_job_new(a, req, finish_scan);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	j->pending++;
	err =
	    sip_move_scan(a->sip, body, len, who, target, show, mod_http_peer(req), web_on_live, j);
	if (err) {
		j->pending--;
		web_job_free(j);
		scan_refused(req, err);
		return;
	}
	web_job_go(j);
}

static void post_scan(struct mod_http_req *req, void *arg)
{
	const char *who = mod_http_query(req, "who");

	if (!who || (strcmp(who, "near") && strcmp(who, "new"))) {
		mod_http_reply_error(req, 400, "query who must be near or new");
		return;
	}
	scan_request(req, arg, who, mod_http_query(req, "target"), mod_http_query(req, "s"));
}

/* A's image through the show link's secret: /m/<secret>/scan. */
static void post_show_scan(struct mod_http_req *req, void *arg)
{
	scan_request(req, arg, "near", NULL, mod_http_param(req, "secret"));
}

/* ---- setup ---- */

struct route {
	const char *method, *pattern;
	unsigned flags;
	mod_http_h *fn;
};

static const struct route routes[] = {
    {"GET", "/v1/calls", MOD_HTTP_ADMIN, get_calls},
    {"POST", "/v1/drain", MOD_HTTP_ADMIN, post_drain},
    {"GET", "/v1/calls/{id}", MOD_HTTP_ADMIN, get_call},
    {"POST", "/v1/calls/{id}/moves", MOD_HTTP_ADMIN, post_move},
    {"POST", "/v1/devices/near", MOD_HTTP_ADMIN, post_devices_near},
    {"GET", "/v1/moves", MOD_HTTP_ADMIN, get_moves},
    {"GET", "/v1/moves/{id}", MOD_HTTP_ADMIN, get_move},
    {"GET", "/v1/moves/{id}/qr.png", MOD_HTTP_ADMIN, get_qr_png},
    {"GET", "/v1/moves/{id}/qr.svg", MOD_HTTP_ADMIN, get_qr_svg},
    {"GET", "/v1/moves/{id}/qr.txt", MOD_HTTP_ADMIN, get_qr_txt},
    {"GET", "/v1/moves/{id}/barcode.png", MOD_HTTP_ADMIN, get_barcode_png},
    {"POST", "/v1/moves/{id}/refer", MOD_HTTP_ADMIN, post_refer},
    {"POST", "/v1/scans", MOD_HTTP_PUBLIC, post_scan},
    {"POST", "/v1/sms/inbound", MOD_HTTP_PUBLIC, web_post_sms_inbound},
    {"GET", "/m/{secret}/show", MOD_HTTP_PUBLIC, web_get_show},
    {"GET", "/m/{secret}/state", MOD_HTTP_PUBLIC, web_get_state},
    {"GET", "/m/{secret}/qr.svg", MOD_HTTP_PUBLIC, web_get_public_qr_svg},
    {"GET", "/m/{secret}/barcode.png", MOD_HTTP_PUBLIC, web_get_public_barcode_png},
    {"POST", "/m/{secret}/scan", MOD_HTTP_PUBLIC, post_show_scan},
    {"POST", "/v1/calls/{id}/share", MOD_HTTP_ADMIN, web_post_share},
    {"GET", "/w/{secret}", MOD_HTTP_PUBLIC, web_get_watch},
    {"GET", "/w/{secret}/events", MOD_HTTP_PUBLIC, web_get_watch_events},
    {"POST", "/w/{secret}/control", MOD_HTTP_PUBLIC, web_post_watch_control},
    {"GET", "/m/{token}", MOD_HTTP_PUBLIC, web_get_landing},
    {"POST", "/m/{token}", MOD_HTTP_PUBLIC, web_post_landing},
    {"POST", "/v1/calls/{id}/notes", MOD_HTTP_ADMIN, web_post_note},
    {"POST", "/v1/calls/{id}/meeting", MOD_HTTP_ADMIN, web_post_meeting},
    {"GET", "/c/{secret}", MOD_HTTP_PUBLIC, web_get_context},
    {"GET", "/r/{secret}", MOD_HTTP_PUBLIC, web_get_resume},
    {"POST", "/r/{secret}", MOD_HTTP_PUBLIC, web_post_resume},
};

int mod_api_alloc(struct mod_api **ap, struct mod_http *http, struct sip *sip, struct store *store,
                  const struct mod_api_conf *conf)
{
	static const struct mod_api_conf none = {0};
	struct mod_api *a;
	char url[1024];
	size_t i, n;
	int err = 0;

	if (!ap || !http)
		return EINVAL;
	if (!conf)
		conf = &none;
	a = calloc(1, sizeof(*a));
	if (!a)
		return ENOMEM;
	a->http = http;
	a->sip = sip;
	a->store = store;
	a->keys = conf->keys;
	a->qr_px = conf->qr_px ? conf->qr_px : DEFAULT_QR_PX;
	a->public_url = strdup(conf->public_url ? conf->public_url : "");
	if (a->public_url) {
		/* links are public_url + "/..." */
		n = strlen(a->public_url);
		while (n && a->public_url[n - 1] == '/')
			a->public_url[--n] = '\0';
	}
	a->sip_domain = web_dup_or_null(conf->sip_domain);
	a->twilio_token = web_dup_or_null(conf->twilio_auth_token);
	a->webhook_secret = web_dup_or_null(conf->webhook_secret);
	snprintf(url, sizeof(url), "%s/v1/sms/inbound", a->public_url ? a->public_url : "");
	a->webhook_url = strdup(conf->webhook_url && *conf->webhook_url ? conf->webhook_url : url);
	if (!a->public_url || !a->webhook_url || (conf->sip_domain && !a->sip_domain) ||
	    (conf->twilio_auth_token && *conf->twilio_auth_token && !a->twilio_token) ||
	    (conf->webhook_secret && *conf->webhook_secret && !a->webhook_secret)) {
		err = ENOMEM;
		goto out;
	}
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		err = mod_http_route(http, routes[i].method, routes[i].pattern, routes[i].flags,
		                     routes[i].fn, a);
		if (err) {
			LOG_ERR("api", "route %s %s: %s", routes[i].method, routes[i].pattern,
			        strerror(err));
			goto out;
		}
	}
	err = mod_metrics_route(http);
	/* someone may have added it already */
	if (err == EEXIST)
		err = 0;
out:
	if (err) {
		mod_api_free(a);
		return err;
	}
	*ap = a;
	return 0;
}

void mod_api_free(struct mod_api *a)
{
	if (!a)
		return;
	while (!LIST_EMPTY(&a->jobs)) {
		struct job *j = LIST_FIRST(&a->jobs);

		if (j->req)
			mod_http_reply_error(j->req, 503, "shutting down");
		web_job_free(j);
	}
	free(a->public_url);
	free(a->sip_domain);
	free(a->twilio_token);
	free(a->webhook_secret);
	free(a->webhook_url);
	free(a);
}
