/*
 * web/api: routes on web/http over sip/ (live calls and moves), sql/ (stored moves)
 * and codes/ (images). A request that waits on sip/ or the store is a struct job: it counts
 * the completions it still expects and answers when the count reaches zero.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "codes/code.h"
#include "web/api.h"
#include "web/forms.h"
#include "web/http.h"
#include "metrics/metrics.h"
#include "sip/sip.h"
#include "sql/store.h"

#define DEFAULT_QR_PX 8

/* The routes' state; owned by whoever called mod_api_alloc. */
struct mod_api {
	struct mod_http *http;
	struct sip *sip;
	struct store *store;
	const struct code_keyring *keys;
	char *public_url, *sip_domain, *twilio_token, *webhook_secret, *webhook_url;
	unsigned qr_px;
	struct job *jobs;
};

enum image_kind { IMG_QR_PNG, IMG_QR_SVG, IMG_QR_TXT, IMG_BARCODE_PNG };

/*
 * One deferred request; on the api's list from its handler until its last completion.
 * req is NULL once answered or cancelled.
 */
struct job {
	struct job *next, **prevp;
	struct mod_api *api;
	struct mod_http_req *req;
	void (*finish)(struct job *j);
	unsigned pending; /* completions still to come from sip/ or the store */
	bool hold;        /* inside the handler: do not finish yet */
	char id[STORE_ID_MAX];
	int kind;
	int live_err;         /* from sip/; -1 until it answered */
	unsigned retry_after; /* with live_err EAGAIN or EBUSY: what sip/ said to wait */
	json_t *live;         /* the move as sip/ told it */
	char *qr_uri, *code;
	enum sip_move_state live_state;
	int store_err, events_err;
	json_t *stored, *events, *list;
	char *text;
	uint8_t show_hash[CODE_HASH_LEN]; /* public pages: the move's show secret, hashed */
};

/* ---- small helpers ---- */

static void api_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void api_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("qrxfer: api: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static json_t *iso_time_ms(int64_t ms)
{
	char buf[40], frac[8];
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || !gmtime_r(&t, &tm))
		return json_null();
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(frac, sizeof(frac), ".%03dZ", (int)(ms % 1000));
	strncat(buf, frac, sizeof(buf) - strlen(buf) - 1);
	return json_string(buf);
}

static json_t *iso_time(time_t t)
{
	return iso_time_ms(t > 0 ? (int64_t)t * 1000 : 0);
}

/* Move ids are hex (with dashes for a uuid); anything else is not one of ours. */
static bool valid_id(const char *s)
{
	size_t n = 0;

	for (; s && s[n]; n++)
		if (!isxdigit((unsigned char)s[n]) && s[n] != '-')
			return false;
	return n > 0 && n < STORE_ID_MAX;
}

/* A token is CODE_TOKEN_LEN characters of the base32 alphabet (any case). */
static bool valid_token(const char *s)
{
	size_t n;

	for (n = 0; s && s[n]; n++) {
		int c = toupper((unsigned char)s[n]);

		if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7')))
			return false;
	}
	return n == CODE_TOKEN_LEN;
}

/* HTTP status for a value from sip/ or codes/. */
static unsigned err_status(int err)
{
	switch (err) {
	case ENOENT:
		return 404;
	case CODE_EEXPIRED:
		return 410;
	case CODE_EBADTOKEN:
	case CODE_EBADSIG:
	case CODE_EUNKNOWNKEY:
		return 404;
	case EAGAIN:
		return 429;
	case EPERM:
		return 403;
	case EALREADY:
	case EBUSY:
	case ENOTCONN:
	case EINPROGRESS:
	case EEXIST:
		return 409;
	case EINVAL:
		return 400;
	case CODE_ENOTIMAGE:
	case CODE_ETRUNCATED:
	case CODE_ETOOLARGE:
	case CODE_ENOCODE:
	case CODE_ENOTOURS:
		return 422;
	case ECANCELED:
	case ESHUTDOWN:
		return 503;
	default:
		return 500;
	}
}

/* The peer as guesses are counted: the same key as over SIP (an address, an IPv6 /64). */
static void source_of(struct mod_http_req *req, char *out, size_t len)
{
	if (store_source_key(mod_http_peer(req), out, len))
		snprintf(out, len, "ip:%s", mod_http_peer_str(req));
}

/* ---- jobs ---- */

static struct job *job_new(struct mod_api *a, struct mod_http_req *req,
                           void (*finish)(struct job *))
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->api = a;
	j->req = req;
	j->finish = finish;
	j->live_err = -1;
	j->store_err = -1;
	j->events_err = -1;
	j->hold = true;
	j->next = a->jobs;
	if (j->next)
		j->next->prevp = &j->next;
	j->prevp = &a->jobs;
	a->jobs = j;
	return j;
}

static void job_free(struct job *j)
{
	*j->prevp = j->next;
	if (j->next)
		j->next->prevp = j->prevp;
	json_decref(j->live);
	json_decref(j->stored);
	json_decref(j->events);
	json_decref(j->list);
	free(j->qr_uri);
	free(j->code);
	free(j->text);
	free(j);
}

/* Answers once nothing is pending, then forgets the job. */
static void job_check(struct job *j)
{
	if (j->hold || j->pending)
		return;
	if (j->req)
		j->finish(j);
	job_free(j);
}

static void job_cancel(void *arg)
{
	struct job *j = arg;

	j->req = NULL;
}

/* Ends the handler's part: defers the request if completions are still to come. */
static void job_go(struct job *j)
{
	j->hold = false;
	if (j->pending && mod_http_defer(j->req, job_cancel, j)) {
		mod_http_reply_error(j->req, 500, "cannot defer the request");
		j->req = NULL;
	}
	job_check(j);
}

/* ---- JSON of calls and moves ---- */

static json_t *call_json(const struct sip_call_info *c)
{
	return json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s, s:o, s:o}", "id", c->id, "state",
	                 sip_call_state_name(c->state), "near_uri", c->near_uri, "far_uri",
	                 c->far_uri, "near_call_id", c->near_call_id, "far_call_id", c->far_call_id,
	                 "near", c->near_is_caller ? "caller" : "callee", "created",
	                 iso_time(c->created), "answered", iso_time(c->answered));
}

static json_t *stored_call_json(const struct store_call *c)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "id", c->id, "state",
	                 store_call_state_name(c->state), "near_uri", c->near.uri, "far_uri",
	                 c->far.uri, "near_call_id", c->near.call_id, "far_call_id", c->far.call_id,
	                 "created", iso_time_ms(c->created_at), "answered",
	                 iso_time_ms(c->answered_at), "ended", iso_time_ms(c->ended_at));
}

/* Links to a move; the show page's only with its secret, which is told once. */
static void add_links(struct mod_api *a, json_t *o, const char *id, const char *show)
{
	char buf[1024];
	json_t *l = json_object();

	snprintf(buf, sizeof(buf), "/v1/moves/%s", id);
	json_object_set_new(l, "self", json_string(buf));
	snprintf(buf, sizeof(buf), "/v1/moves/%s/qr.png", id);
	json_object_set_new(l, "qr_png", json_string(buf));
	snprintf(buf, sizeof(buf), "/v1/moves/%s/qr.svg", id);
	json_object_set_new(l, "qr_svg", json_string(buf));
	snprintf(buf, sizeof(buf), "/v1/moves/%s/qr.txt", id);
	json_object_set_new(l, "qr_txt", json_string(buf));
	snprintf(buf, sizeof(buf), "/v1/moves/%s/barcode.png", id);
	json_object_set_new(l, "barcode_png", json_string(buf));
	if (show) {
		snprintf(buf, sizeof(buf), "%s/m/%s/show", a->public_url ? a->public_url : "",
		         show);
		json_object_set_new(l, "show", json_string(buf));
	}
	json_object_set_new(o, "links", l);
}

/* The live move; code and QR only while they are on offer. */
static json_t *live_json(struct mod_api *a, const struct sip_move_info *m)
{
	bool offered = m->state == SIP_MOVE_OFFERED;
	time_t now = time(NULL);
	json_t *o = json_pack("{s:s, s:s?, s:s, s:o, s:o}", "id", m->id, "call_id", m->call_id,
	                      "state", sip_move_state_name(m->state), "created",
	                      iso_time(m->created), "expires", iso_time(m->expires));

	if (!o)
		return NULL;
	if (offered && m->code)
		json_object_set_new(o, "code", json_string(m->code));
	if (offered && m->qr_uri)
		json_object_set_new(o, "qr_uri", json_string(m->qr_uri));
	if (offered)
		json_object_set_new(
		    o, "expires_in",
		    json_integer(m->expires > now ? (json_int_t)(m->expires - now) : 0));
	if (m->reason && *m->reason)
		json_object_set_new(o, "reason", json_string(m->reason));
	if (m->taken_by && *m->taken_by)
		json_object_set_new(o, "taken_by", json_string(m->taken_by));
	if (m->ms_redeem_to_reinvite >= 0)
		json_object_set_new(o, "ms_redeem_to_reinvite",
		                    json_integer(m->ms_redeem_to_reinvite));
	if (m->ms_redeem_to_answer >= 0)
		json_object_set_new(o, "ms_redeem_to_answer", json_integer(m->ms_redeem_to_answer));
	add_links(a, o, m->id, m->show);
	return o;
}

static json_t *stored_move_json(const struct store_move *m)
{
	json_t *o = json_pack(
	    "{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:i, s:b}", "id", m->id, "call_id",
	    m->call_id, "state", store_move_state_name(m->state), "created",
	    iso_time_ms(m->created_at), "expires", iso_time_ms(m->expires_at), "redeemed",
	    iso_time_ms(m->redeemed_at), "updated", iso_time_ms(m->updated_at), "finished",
	    iso_time_ms(m->finished_at), "failures", m->failures, "locked", m->locked);

	if (o && *m->redeemed_by)
		json_object_set_new(o, "redeemed_by", json_string(m->redeemed_by));
	if (o && *m->reason)
		json_object_set_new(o, "reason", json_string(m->reason));
	if (o && m->finished_at > 0 && m->created_at > 0)
		json_object_set_new(o, "ms_total", json_integer(m->finished_at - m->created_at));
	return o;
}

/* ---- sip/ and store completions ---- */

static void on_live(int err, const struct sip_move_info *info, void *arg)
{
	struct job *j = arg;

	j->live_err = err;
	if (err && info)
		j->retry_after = info->retry_after;
	if (!err && info) {
		json_decref(j->live);
		j->live = live_json(j->api, info);
		j->live_state = info->state;
		if (info->state == SIP_MOVE_OFFERED) {
			free(j->qr_uri);
			free(j->code);
			j->qr_uri = dup_or_null(info->qr_uri);
			j->code = dup_or_null(info->code);
		}
		if (!*j->id && info->id)
			snprintf(j->id, sizeof(j->id), "%s", info->id);
	} else if (!err) {
		j->live_err = EIO;
	}
	j->pending--;
	job_check(j);
}

static void on_stored(struct store_job *sj, void *arg)
{
	struct job *j = arg;
	size_t i;

	switch (sj->op) {
	case STORE_OP_MOVE_GET:
	case STORE_OP_MOVE_BY_SHOW:
		j->store_err = sj->err;
		if (!sj->err)
			j->stored = stored_move_json(&sj->move);
		if (!sj->err && !*j->id)
			snprintf(j->id, sizeof(j->id), "%s", sj->move.id);
		break;
	case STORE_OP_CALL_GET:
		j->store_err = sj->err;
		if (!sj->err)
			j->stored = stored_call_json(&sj->call);
		break;
	case STORE_OP_MOVE_EVENTS:
		j->events_err = sj->err;
		if (sj->err)
			break;
		j->events = json_array();
		for (i = 0; i < sj->n; i++) {
			const struct store_move_event *e = &sj->events[i];
			json_t *o =
			    json_pack("{s:i, s:o, s:s, s:s}", "seq", e->seq, "at",
			              iso_time_ms(e->at), "step", e->step, "detail", e->detail);

			/* timings: since the first event, and since the one before */
			if (o && i) {
				json_object_set_new(o, "ms",
				                    json_integer(e->at - sj->events[0].at));
				json_object_set_new(o, "ms_step",
				                    json_integer(e->at - sj->events[i - 1].at));
			} else if (o) {
				json_object_set_new(o, "ms", json_integer(0));
				json_object_set_new(o, "ms_step", json_integer(0));
			}
			json_array_append_new(j->events, o);
		}
		break;
	case STORE_OP_MOVE_LIST: {
		size_t from = 0, limit = (size_t)j->kind;

		j->store_err = sj->err;
		if (sj->err)
			break;
		j->list = json_array();
		/* the newest ones: the store lists oldest first */
		if (limit && sj->n > limit)
			from = sj->n - limit;
		for (i = from; i < sj->n; i++)
			json_array_append_new(j->list, stored_move_json(&sj->moves[i]));
		break;
	}
	default:
		break;
	}
	j->pending--;
	job_check(j);
}

static int submit(struct job *j, enum store_op op, const char *id)
{
	struct store_job sj = {.op = op};
	int err;

	snprintf(sj.id, sizeof(sj.id), "%s", id);
	j->pending++;
	err = store_submit(j->api->store, &sj, on_stored, j);
	if (err) {
		j->pending--;
		api_log("store job %d for %s: %s", (int)op, id, strerror(err));
	}
	return err;
}

/* The stored move whose show secret hashes to j->show_hash. */
static int submit_show(struct job *j)
{
	struct store_job sj = {.op = STORE_OP_MOVE_BY_SHOW};
	int err;

	memcpy(sj.hash, j->show_hash, sizeof(sj.hash));
	j->pending++;
	err = store_submit(j->api->store, &sj, on_stored, j);
	if (err) {
		j->pending--;
		api_log("store: find a move by its show secret: %s", strerror(err));
	}
	return err;
}

static int live_get(struct job *j, const char *id)
{
	int err;

	j->pending++;
	err = sip_move_get(j->api->sip, id, on_live, j);
	if (err) {
		j->pending--;
		j->live_err = err;
	}
	return err;
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
		json_array_append_new(f->all, call_json(c));
	else if (!f->found && !strcmp(c->id, f->id)) {
		f->found = call_json(c);
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
	j = job_new(a, req, finish_call);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	if (submit(j, STORE_OP_CALL_GET, id))
		j->store_err = EIO;
	job_go(j);
}

static void finish_move_start(struct job *j)
{
	char loc[STORE_ID_MAX + 16];

	if (j->live_err) {
		mod_http_reply_errorf(j->req, err_status(j->live_err),
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
	struct job *j;
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
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
	j = job_new(a, req, finish_move_start);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	source_of(req, source, sizeof(source));
	j->pending++;
	err = sip_move_start(a->sip, id, source, on_live, j);
	if (err) {
		j->pending--;
		j->live_err = err;
	}
	job_go(j);
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
	j = job_new(a, req, finish_moves);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	j->kind = (int)limit;
	if (submit(j, STORE_OP_MOVE_LIST, call ? call : ""))
		j->store_err = EIO;
	job_go(j);
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
		add_links(j->api, o, j->id, NULL);
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
	j = job_new(a, req, finish_move_get);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	if (a->sip)
		live_get(j, id);
	if (a->store) {
		submit(j, STORE_OP_MOVE_GET, id);
		submit(j, STORE_OP_MOVE_EVENTS, id);
	}
	job_go(j);
}

/* ---- images ---- */

static void reply_image(struct job *j)
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
			mod_http_reply_errorf(j->req, err_status(j->live_err), "move %s: %s", j->id,
			                      code_strerror(j->live_err));
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
		api_log("move %s: render: %s", j->id, code_strerror(err));
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
	j = job_new(a, req, reply_image);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->kind = (int)kind;
	live_get(j, id);
	job_go(j);
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
		mod_http_reply_errorf(j->req, err_status(j->live_err), "%s: %s", j->text,
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
	j = job_new(a, req, finish_live);
	if (!j || !(j->text = malloc(STORE_ID_MAX + MOD_API_TARGET_MAX + 32))) {
		if (j)
			job_free(j);
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	snprintf(j->text, STORE_ID_MAX + MOD_API_TARGET_MAX + 32, "move %s: REFER to %s", id,
	         r.target);
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->kind = 202;
	j->pending++;
	err = sip_move_refer(a->sip, id, r.target, on_live, j);
	if (err) {
		j->pending--;
		j->live_err = err;
	}
	job_go(j);
}

/* Retry-After for a source told to wait: the lock's own end when sip/ said it, else 1 s. */
static void retry_after(struct job *j)
{
	char v[16];

	snprintf(v, sizeof(v), "%u", j->retry_after ? j->retry_after : 1);
	mod_http_reply_header(j->req, "Retry-After", v);
}

/* A scan answers only "taken" or "no code": nothing of the move, its call or its code. */
static void finish_scan(struct job *j)
{
	if (!j->live_err) {
		mod_http_reply_json(j->req, 200, json_pack("{s:s}", "result", "taken"));
	} else if (j->live_err == EAGAIN) {
		retry_after(j);
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
	j = job_new(a, req, finish_scan);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	j->pending++;
	err = sip_move_scan(a->sip, body, len, who, target, show, mod_http_peer(req), on_live, j);
	if (err) {
		j->pending--;
		job_free(j);
		scan_refused(req, err);
		return;
	}
	job_go(j);
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

/* ---- SMS webhook ---- */

static void post_sms_inbound(struct mod_http_req *req, void *arg)
{
	static const char twiml[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";
	struct mod_api *a = arg;
	const struct mod_api_webhook_auth auth = {a->webhook_secret, a->twilio_token,
	                                          a->webhook_url};
	const char *sig = mod_http_header(req, "X-Twilio-Signature");
	const char *secret = mod_http_header(req, "X-Qrxfer-Secret"), *body, *why;
	struct mod_api_sms sms;
	size_t len = 0;
	int err;

	body = mod_http_body(req, &len);
	err = mod_api_webhook_check(&auth, secret, sig, body, len);
	if (err) {
		api_log("sms inbound from %s: %s", mod_http_peer_str(req),
		        err == EPERM ? "no webhook secret configured" : "bad or missing signature");
		mod_http_reply_error(req, 403,
		                     err == EPERM
		                         ? "no webhook secret or Twilio auth token configured"
		                         : "bad or missing X-Twilio-Signature or X-Qrxfer-Secret");
		return;
	}
	if (mod_api_sms_parse(body, len, &sms, &why)) {
		mod_http_reply_error(req, 400, why);
		goto out;
	}
	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		goto out;
	}
	/* A gateway may deliver a message twice: its id makes the replay answer nothing. */
	err = sip_sms_reply(a->sip, sms.from, sms.text, sms.message_id);
	if (err)
		api_log("sms inbound from %s: %s", sms.from,
		        err == ENOENT     ? "nobody asked this number"
		        : err == EALREADY ? "the same message again (ignored)"
		        : err == EINVAL   ? "reply is neither yes nor no"
		                          : strerror(err));
	/* the gateway only needs to know we took it */
	mod_http_reply(req, 200, "text/xml", twiml, strlen(twiml));
out:
	mod_api_form_release(&sms.form);
}

/* ---- pages ---- */

/* A growing text buffer; on allocation failure it stays failed and the page answers 500. */
struct buf {
	char *s;
	size_t len, cap;
	bool failed;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 4096) + n;
		char *p = realloc(b->s, cap);

		if (!p) {
			b->failed = true;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* Appends s with & < > " ' as entities: safe in text and in quoted attributes. */
static void buf_esc(struct buf *b, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&':
			buf_puts(b, "&amp;");
			break;
		case '<':
			buf_puts(b, "&lt;");
			break;
		case '>':
			buf_puts(b, "&gt;");
			break;
		case '"':
			buf_puts(b, "&quot;");
			break;
		case '\'':
			buf_puts(b, "&#39;");
			break;
		default:
			buf_add(b, s, 1);
		}
	}
}

char *mod_api_html_escape(const char *s)
{
	struct buf b = {0};

	buf_puts(&b, "");
	buf_esc(&b, s);
	if (b.failed) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

static const char page_style[] =
    "<style>body{font-family:system-ui,sans-serif;margin:0;padding:24px;background:#f6f7f9;"
    "color:#1b1f24;text-align:center}main{max-width:560px;margin:0 auto;background:#fff;"
    "border-radius:12px;padding:24px;box-shadow:0 1px 4px rgba(0,0,0,.12)}h1{font-size:1.4em;"
    "margin:0 0 16px}#qr svg{width:400px;max-width:90vw;height:auto;display:block;margin:0 "
    "auto}.code{font:600 2em ui-monospace,monospace;letter-spacing:.12em;margin:12px 0}"
    ".muted{color:#5b6570}.ok{color:#146c2e}.bad{color:#a4161a}input{font-size:1.1em;"
    "padding:8px;width:90%;margin:8px 0;box-sizing:border-box}button{font-size:1.1em;"
    "padding:8px 24px;border-radius:6px;border:0;background:#1f6feb;color:#fff}</style>";

static void page_head(struct buf *b, const char *title)
{
	buf_puts(b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
	            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
	            "<meta name=\"robots\" content=\"noindex\"><title>");
	buf_esc(b, title);
	buf_puts(b, "</title>");
	buf_puts(b, page_style);
	buf_puts(b, "</head><body><main>");
}

static void page_reply(struct mod_http_req *req, unsigned status, struct buf *b)
{
	buf_puts(b, "</main></body></html>\n");
	if (b->failed) {
		mod_http_reply_error(req, 500, "out of memory");
	} else {
		mod_http_reply_header(req, "Cache-Control", "no-store");
		mod_http_reply_header(req, "X-Content-Type-Options", "nosniff");
		mod_http_reply_header(req, "Referrer-Policy", "no-referrer");
		mod_http_reply_header(
		    req, "Content-Security-Policy",
		    "default-src 'none'; style-src 'unsafe-inline'; "
		    "script-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; "
		    "form-action 'self'; frame-ancestors 'none'");
		mod_http_reply(req, status, "text/html; charset=utf-8", b->s, b->len);
	}
	free(b->s);
}

/* A page with a title and one message (escaped). */
static void page_message(struct mod_http_req *req, unsigned status, const char *title,
                         const char *cls, const char *msg)
{
	struct buf b = {0};

	page_head(&b, title);
	buf_puts(&b, "<h1>");
	buf_esc(&b, title);
	buf_puts(&b, "</h1><p class=\"");
	buf_esc(&b, cls);
	buf_puts(&b, "\">");
	buf_esc(&b, msg);
	buf_puts(&b, "</p>");
	page_reply(req, status, &b);
}

/* What the show page and /state say of a move's state. */
static const char *state_words(const char *state)
{
	if (!strcmp(state, "offered"))
		return "Waiting for a device to scan the code";
	if (!strcmp(state, "done"))
		return "Moved";
	if (!strcmp(state, "failed"))
		return "Move failed";
	return "Moving the call…";
}

/* The show page's script: polls state every second, counts down, says how it ended. */
static const char show_script[] =
    "<script>(function(){var left=+document.body.dataset.left,st=document.getElementById"
    "('status'),tl=document.getElementById('left'),qr=document.getElementById('qr'),code="
    "document.getElementById('code'),over=false;function hide(){qr.style.display='none';"
    "code.style.display='none';tl.textContent=''}function show(s){if(s.state==='offered'){"
    "if(typeof s.expires_in==='number')left=s.expires_in;return}if(s.state==='done'){over="
    "true;hide();st.className='ok';st.textContent='Moved to '+(s.taken_by||'the new device');"
    "return}if(s.state==='failed'){over=true;hide();st.className='bad';st.textContent="
    "'Move failed: '+(s.reason||'unknown reason');return}hide();st.className='muted';"
    "st.textContent='Code used, moving the call…'}function tick(){if(over)return;if(left>0)"
    "left--;if(tl.textContent!==''||left>0)tl.textContent=left>0?('Time left: '+Math.floor("
    "left/60)+':'+('0'+left%60).slice(-2)):'The code has expired';fetch('state',{cache:"
    "'no-store'}).then(function(r){return r.json()}).then(show).catch(function(){})}"
    "tick();setInterval(tick,1000)})();</script>";

static void finish_show(struct job *j)
{
	const char *state = NULL, *reason = NULL, *taken = NULL;
	json_t *src = !j->live_err ? j->live : j->stored;
	struct code_qr *qr = NULL;
	char *svg = NULL, left[32];
	struct buf b = {0};
	json_int_t secs = 0;
	int err;

	if (!src) {
		page_message(j->req, j->live_err == ENOENT || j->store_err == ENOENT ? 404 : 500,
		             "No such move", "bad",
		             "This move does not exist, or is not on this server.");
		return;
	}
	state = json_string_value(json_object_get(src, "state"));
	reason = json_string_value(json_object_get(src, "reason"));
	taken = json_string_value(json_object_get(src, "taken_by"));
	if (!taken)
		taken = json_string_value(json_object_get(src, "redeemed_by"));
	secs = json_integer_value(json_object_get(src, "expires_in"));
	snprintf(left, sizeof(left), "%lld", (long long)secs);
	page_head(&b, "Move this call");
	buf_puts(&b, "<h1>Move this call</h1>");
	if (!j->live_err && j->live_state == SIP_MOVE_OFFERED && j->qr_uri) {
		err = code_qr_make(&qr, j->qr_uri, CODE_ECC_M);
		if (!err)
			err = code_qr_svg(qr, j->api->qr_px, 4, &svg);
		if (err) {
			api_log("move %s: show page: %s", j->id, code_strerror(err));
			free(b.s);
			page_message(j->req, 500, "Move this call", "bad", "Cannot draw the code.");
			goto out;
		}
		buf_puts(&b, "<p class=\"muted\">Scan the code with the phone that should take the "
		             "call, or dial the number below.</p><div id=\"qr\">");
		/* codes/ makes the SVG from module runs only: no text of ours inside */
		buf_puts(&b, strstr(svg, "<svg") ? strstr(svg, "<svg") : svg);
		buf_puts(&b, "</div><div id=\"code\" class=\"code\">");
		buf_esc(&b, j->code ? j->code : "");
		buf_puts(&b, "</div><p id=\"left\" class=\"muted\"></p><p id=\"status\" "
		             "class=\"muted\">");
		buf_esc(&b, state_words("offered"));
		buf_puts(&b, "</p>");
	} else {
		bool done = state && !strcmp(state, "done"),
		     failed = state && !strcmp(state, "failed");

		buf_puts(&b, "<div id=\"qr\"></div><div id=\"code\"></div><p id=\"left\"></p>"
		             "<p id=\"status\" class=\"");
		buf_puts(&b, done ? "ok" : failed ? "bad" : "muted");
		buf_puts(&b, "\">");
		if (done) {
			buf_puts(&b, "Moved to ");
			buf_esc(&b, taken ? taken : "the new device");
		} else if (failed) {
			buf_puts(&b, "Move failed: ");
			buf_esc(&b, reason ? reason : "unknown reason");
		} else if (state && !strcmp(state, "offered")) {
			buf_puts(&b, "The code is not shown on this server.");
		} else {
			buf_esc(&b, state_words(state ? state : ""));
		}
		buf_puts(&b, "</p>");
		snprintf(left, sizeof(left), "0");
	}
	/* the script reads the seconds left from the body's data attribute */
	{
		struct buf page = {0};
		const char *at = b.failed ? NULL : strstr(b.s, "<body>");

		if (!at) {
			free(b.s);
			mod_http_reply_error(j->req, 500, "out of memory");
			goto out;
		}
		buf_add(&page, b.s, (size_t)(at - b.s));
		buf_puts(&page, "<body data-left=\"");
		buf_esc(&page, left);
		buf_puts(&page, "\">");
		buf_puts(&page, at + strlen("<body>"));
		buf_puts(&page, show_script);
		free(b.s);
		page_reply(j->req, 200, &page);
	}
out:
	code_qr_free(qr);
	free(svg);
}

static void finish_state(struct job *j)
{
	json_t *src = !j->live_err ? j->live : j->stored, *o;
	const char *state, *v;

	if (!src) {
		if (j->live_err == ENOENT || j->store_err == ENOENT || j->store_err == -1)
			mod_http_reply_errorf(j->req, 404, "no move %s", j->id);
		else
			mod_http_reply_errorf(j->req, 500, "move %s: state unknown", j->id);
		return;
	}
	state = json_string_value(json_object_get(src, "state"));
	o = json_pack("{s:s}", "state", state ? state : "unknown");
	if (state && !strcmp(state, "offered") && json_object_get(src, "expires_in"))
		json_object_set(o, "expires_in", json_object_get(src, "expires_in"));
	if (state && !strcmp(state, "done")) {
		v = json_string_value(json_object_get(src, "taken_by"));
		if (!v)
			v = json_string_value(json_object_get(src, "redeemed_by"));
		if (v)
			json_object_set_new(o, "taken_by", json_string(v));
	}
	if (state && !strcmp(state, "failed") &&
	    (v = json_string_value(json_object_get(src, "reason"))))
		json_object_set_new(o, "reason", json_string(v));
	mod_http_reply_header(j->req, "Cache-Control", "no-store");
	mod_http_reply_json(j->req, 200, o);
}

/* After sip/ answered: a move not live here may still be in the store. */
static void on_live_then_store(int err, const struct sip_move_info *info, void *arg)
{
	struct job *j = arg;

	if (err && j->api->store)
		submit_show(j);
	on_live(err, info, arg);
}

/* The public pages of a move are keyed by its show secret, never by its id. */
static void public_move(struct mod_http_req *req, struct mod_api *a, void (*finish)(struct job *),
                        enum image_kind kind)
{
	const char *secret = mod_http_param(req, "secret");
	uint8_t hash[CODE_HASH_LEN];
	struct job *j;
	int err = ENOENT;

	if (code_secret_hash(secret, hash)) {
		if (finish == finish_show)
			page_message(req, 404, "No such move", "bad",
			             "This is not a move's address.");
		else
			mod_http_reply_error(req, 404, "no such move");
		return;
	}
	j = job_new(a, req, finish);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	memcpy(j->show_hash, hash, sizeof(hash));
	j->kind = (int)kind;
	if (a->sip) {
		j->pending++;
		err = sip_move_show(a->sip, secret,
		                    finish == reply_image ? on_live : on_live_then_store, j);
		if (err)
			j->pending--;
	}
	if (err) {
		j->live_err = err;
		if (a->store && finish != reply_image)
			submit_show(j);
	}
	job_go(j);
}

static void get_show(struct mod_http_req *req, void *arg)
{
	public_move(req, arg, finish_show, 0);
}

static void get_state(struct mod_http_req *req, void *arg)
{
	public_move(req, arg, finish_state, 0);
}

static void get_public_qr_svg(struct mod_http_req *req, void *arg)
{
	public_move(req, arg, reply_image, IMG_QR_SVG);
}

static void landing_form(struct buf *b, const char *token, const char *value)
{
	buf_puts(b, "<form method=\"post\" action=\"/m/");
	buf_esc(b, token);
	buf_puts(
	    b, "\"><label for=\"target\">Your phone number or SIP address</label><br>"
	       "<input id=\"target\" name=\"target\" autocomplete=\"tel\" required "
	       "maxlength=\"256\" placeholder=\"+44 20 7946 0000 or sip:me@example.net\" value=\"");
	buf_esc(b, value ? value : "");
	buf_puts(b, "\"><br><button type=\"submit\">Call me</button></form>");
}

static void get_landing(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *token = mod_http_param(req, "token");
	struct buf b = {0};
	int err = 0;

	if (!valid_token(token)) {
		page_message(req, 404, "No such code", "bad",
		             "This link does not hold a move code.");
		return;
	}
	if (a->keys)
		err = code_token_verify(a->keys, token, time(NULL), NULL, NULL);
	if (err == CODE_EEXPIRED) {
		page_message(req, 410, "Code expired", "bad",
		             "This code has expired. Ask for a new one on the phone you hold.");
		return;
	}
	if (err) {
		page_message(req, 404, "No such code", "bad",
		             "This link does not hold a valid code.");
		return;
	}
	page_head(&b, "Take this call");
	buf_puts(&b, "<h1>Take this call</h1><p class=\"muted\">Enter the number or SIP address of "
	             "the phone that should take the call. It will ring; answer it and the call "
	             "moves there.</p>");
	landing_form(&b, token, NULL);
	page_reply(req, 200, &b);
}

static void finish_dial(struct job *j)
{
	struct buf b = {0};
	unsigned status = j->live_err ? err_status(j->live_err) : 200;
	const char *why;

	if (!j->live_err) {
		page_head(&b, "Calling");
		buf_puts(&b, "<h1>Calling ");
		buf_esc(&b, j->text);
		buf_puts(&b, "…</h1><p class=\"ok\">Answer that phone: the call moves there.</p>");
		page_reply(j->req, 200, &b);
		return;
	}
	switch (j->live_err) {
	case ENOENT:
	case CODE_EBADTOKEN:
	case CODE_EBADSIG:
	case CODE_EUNKNOWNKEY:
		why = "This code is not valid, or has been used already.";
		break;
	case CODE_EEXPIRED:
		why = "This code has expired.";
		break;
	case EAGAIN:
		why = "Too many attempts: wait a little and try again.";
		retry_after(j);
		break;
	case EINVAL:
		why = "qrxfer cannot call that address.";
		break;
	case EPERM:
		why = "qrxfer may not call that address: give a number, or a user of this service.";
		break;
	default:
		why = code_strerror(j->live_err);
	}
	page_head(&b, "Cannot call");
	buf_puts(&b, "<h1>Cannot call ");
	buf_esc(&b, j->text);
	buf_puts(&b, "</h1><p class=\"bad\">");
	buf_esc(&b, why);
	buf_puts(&b, "</p>");
	page_reply(j->req, status, &b);
}

static void post_landing(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *token = mod_http_param(req, "token"), *body;
	struct mod_api_landing l;
	char source[STORE_SOURCE_MAX];
	size_t len = 0;
	struct buf b = {0};
	struct job *j;
	int err;

	if (!valid_token(token)) {
		page_message(req, 404, "No such code", "bad",
		             "This link does not hold a move code.");
		return;
	}
	body = mod_http_body(req, &len);
	err = mod_api_landing_parse(body, len, a->sip_domain, &l);
	if (err == EBADMSG) {
		page_message(req, 400, "Cannot call", "bad", "The form could not be read.");
		return;
	}
	if (err) {
		page_head(&b, "Cannot call");
		buf_puts(
		    &b, "<h1>Cannot call</h1><p class=\"bad\">Not a phone number or SIP address: ");
		buf_esc(&b, l.target ? l.target : "(empty)");
		buf_puts(&b, "</p>");
		landing_form(&b, token, l.target);
		page_reply(req, 400, &b);
		goto out;
	}
	if (!a->sip) {
		page_message(req, 503, "Cannot call", "bad", "The service is not ready.");
		goto out;
	}
	j = job_new(a, req, finish_dial);
	if (!j || !(j->text = strdup(l.uri))) {
		if (j)
			job_free(j);
		page_message(req, 500, "Cannot call", "bad", "Out of memory.");
		goto out;
	}
	source_of(req, source, sizeof(source));
	j->pending++;
	err = sip_move_dial(a->sip, token, l.uri, source, on_live, j);
	if (err) {
		j->pending--;
		j->live_err = err;
	}
	job_go(j);
out:
	mod_api_form_release(&l.form);
}

/* ---- setup ---- */

struct route {
	const char *method, *pattern;
	unsigned flags;
	mod_http_h *fn;
};

static const struct route routes[] = {
    {"GET", "/v1/calls", MOD_HTTP_ADMIN, get_calls},
    {"GET", "/v1/calls/{id}", MOD_HTTP_ADMIN, get_call},
    {"POST", "/v1/calls/{id}/moves", MOD_HTTP_ADMIN, post_move},
    {"GET", "/v1/moves", MOD_HTTP_ADMIN, get_moves},
    {"GET", "/v1/moves/{id}", MOD_HTTP_ADMIN, get_move},
    {"GET", "/v1/moves/{id}/qr.png", MOD_HTTP_ADMIN, get_qr_png},
    {"GET", "/v1/moves/{id}/qr.svg", MOD_HTTP_ADMIN, get_qr_svg},
    {"GET", "/v1/moves/{id}/qr.txt", MOD_HTTP_ADMIN, get_qr_txt},
    {"GET", "/v1/moves/{id}/barcode.png", MOD_HTTP_ADMIN, get_barcode_png},
    {"POST", "/v1/moves/{id}/refer", MOD_HTTP_ADMIN, post_refer},
    {"POST", "/v1/scans", MOD_HTTP_PUBLIC, post_scan},
    {"POST", "/v1/sms/inbound", MOD_HTTP_PUBLIC, post_sms_inbound},
    {"GET", "/m/{secret}/show", MOD_HTTP_PUBLIC, get_show},
    {"GET", "/m/{secret}/state", MOD_HTTP_PUBLIC, get_state},
    {"GET", "/m/{secret}/qr.svg", MOD_HTTP_PUBLIC, get_public_qr_svg},
    {"POST", "/m/{secret}/scan", MOD_HTTP_PUBLIC, post_show_scan},
    {"GET", "/m/{token}", MOD_HTTP_PUBLIC, get_landing},
    {"POST", "/m/{token}", MOD_HTTP_PUBLIC, post_landing},
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
	a->sip_domain = dup_or_null(conf->sip_domain);
	a->twilio_token = dup_or_null(conf->twilio_auth_token);
	a->webhook_secret = dup_or_null(conf->webhook_secret);
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
			api_log("route %s %s: %s", routes[i].method, routes[i].pattern,
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
	while (a->jobs) {
		struct job *j = a->jobs;

		if (j->req)
			mod_http_reply_error(j->req, 503, "shutting down");
		job_free(j);
	}
	free(a->public_url);
	free(a->sip_domain);
	free(a->twilio_token);
	free(a->webhook_secret);
	free(a->webhook_url);
	free(a);
}
