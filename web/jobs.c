/*
 * web/jobs: a request that waits on sip/ or the store is a struct job: it counts the
 * completions it still expects and answers when the count reaches zero. The completions put
 * what they learn into the job as the JSON the API answers with.
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

char *web_dup_or_null(const char *s)
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

bool web_valid_token(const char *s)
{
	size_t n;

	for (n = 0; s && s[n]; n++) {
		int c = toupper((unsigned char)s[n]);

		if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7')))
			return false;
	}
	return n == CODE_TOKEN_LEN;
}

unsigned web_err_status(int err)
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
	case ENODEV: /* a push: the user has no other live device */
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

void web_source_of(struct mod_http_req *req, char *out, size_t len)
{
	if (store_source_key(mod_http_peer(req), out, len))
		snprintf(out, len, "ip:%s", mod_http_peer_str(req));
}

/* ---- jobs ---- */

struct job *web_job_new(struct mod_api *a, struct mod_http_req *req, void (*finish)(struct job *))
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
	LIST_INSERT_HEAD(&a->jobs, j, link);
	return j;
}

void web_job_free(struct job *j)
{
	LIST_REMOVE(j, link);
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
	web_job_free(j);
}

static void job_cancel(void *arg)
{
	struct job *j = arg;

	j->req = NULL;
}

void web_job_go(struct job *j)
{
	j->hold = false;
	if (j->pending && mod_http_defer(j->req, job_cancel, j)) {
		mod_http_reply_error(j->req, 500, "cannot defer the request");
		j->req = NULL;
	}
	job_check(j);
}

/* ---- JSON of calls and moves ---- */

json_t *web_call_json(const struct sip_call_info *c)
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

void web_add_links(struct mod_api *a, json_t *o, const char *id, const char *show)
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
	web_add_links(a, o, m->id, m->show);
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

void web_on_live(int err, const struct sip_move_info *info, void *arg)
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
			j->qr_uri = web_dup_or_null(info->qr_uri);
			j->code = web_dup_or_null(info->code);
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

int web_submit(struct job *j, enum store_op op, const char *id)
{
	struct store_job sj = {.op = op};
	int err;

	snprintf(sj.id, sizeof(sj.id), "%s", id);
	j->pending++;
	err = store_submit(j->api->store, &sj, on_stored, j);
	if (err) {
		j->pending--;
		LOG_ERR("api", "store job %d for %s: %s", (int)op, id, strerror(err));
	}
	return err;
}

int web_submit_show(struct job *j)
{
	struct store_job sj = {.op = STORE_OP_MOVE_BY_SHOW};
	int err;

	memcpy(sj.hash, j->show_hash, sizeof(sj.hash));
	j->pending++;
	err = store_submit(j->api->store, &sj, on_stored, j);
	if (err) {
		j->pending--;
		LOG_ERR("api", "store: find a move by its show secret: %s", strerror(err));
	}
	return err;
}

int web_live_get(struct job *j, const char *id)
{
	int err;

	j->pending++;
	err = sip_move_get(j->api->sip, id, web_on_live, j);
	if (err) {
		j->pending--;
		j->live_err = err;
	}
	return err;
}

void web_retry_after(struct job *j)
{
	char v[16];

	snprintf(v, sizeof(v), "%u", j->retry_after ? j->retry_after : 1);
	mod_http_reply_header(j->req, "Retry-After", v);
}
