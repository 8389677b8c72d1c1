/*
 * web/context: a call's context over HTTP. Admin: add a note (POST /v1/calls/{id}/notes),
 * make the call a meeting (POST /v1/calls/{id}/meeting). Public: the context page
 * (GET /c/{secret}), keyed by its own 128-bit secret, whose text (the far party's identity,
 * notes: what strangers may have written) goes in HTML-escaped.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "move/context.h"
#include "util/buf.h"
#include "web/api_int.h"

/* A request waiting on the store; req is NULL once the client went away. */
struct ctx_req {
	struct mod_http_req *req;
	struct mod_api *a;
	struct store_context *ctx, *earlier;
	char text[STORE_NOTE_MAX];
};

static void ctx_cancel(void *arg)
{
	struct ctx_req *r = arg;

	r->req = NULL;
}

static void ctx_req_free(struct ctx_req *r)
{
	free(r->ctx);
	free(r->earlier);
	free(r);
}

/* ---- POST /v1/calls/{id}/notes ---- */

static void note_added(struct store_job *job, void *arg)
{
	struct ctx_req *r = arg;

	if (r->req) {
		switch (job->err) {
		case 0:
			mod_http_reply_json(
			    r->req, 201, json_pack("{s:s, s:s}", "call", job->id, "text", r->text));
			break;
		case ENOENT:
			mod_http_reply_errorf(r->req, 404, "no call %s with a context", job->id);
			break;
		case ENOSPC:
			mod_http_reply_errorf(r->req, 409, "call %s has %d notes: no more are kept",
			                      job->id, STORE_NOTES_MAX);
			break;
		default:
			LOG_ERR("api", "store: add a note to %s: %s", job->id, strerror(job->err));
			mod_http_reply_error(r->req, 503, "the store did not take the note");
		}
	}
	ctx_req_free(r);
}

static void post_note(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *id = mod_http_param(req, "id"), *text;
	struct store_job job = {.op = STORE_OP_NOTE_ADD, .limit = STORE_NOTES_MAX};
	struct ctx_req *r;
	json_t *body = NULL;
	int err;

	if (mod_http_body_json(req, &body))
		return;
	text = json_string_value(json_object_get(body, "text"));
	if (!text) {
		json_decref(body);
		mod_http_reply_error(req, 400, "body: \"text\" (a string) is missing");
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		json_decref(body);
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	err = store_note_clean(text, strlen(text), r->text, sizeof(r->text));
	json_decref(body);
	if (err) {
		free(r);
		if (err == EMSGSIZE)
			mod_http_reply_errorf(req, 413, "text: a note holds at most %d bytes",
			                      STORE_NOTE_MAX - 1);
		else
			mod_http_reply_error(req, 400, "text: empty, or not UTF-8");
		return;
	}
	if (!a->store || strlen(id) >= sizeof(job.id)) {
		free(r);
		mod_http_reply_errorf(req, a->store ? 404 : 503, a->store ? "no call %s" : "%s",
		                      a->store ? id : "no store");
		return;
	}
	r->a = a;
	r->req = req;
	snprintf(job.id, sizeof(job.id), "%s", id);
	job.at = store_now();
	job.blob = strdup(r->text);
	if (!job.blob || mod_http_defer(req, ctx_cancel, r)) {
		free(job.blob);
		free(r);
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	if (store_submit(a->store, &job, note_added, r)) {
		free(r);
		mod_http_reply_error(req, 503, "the store did not take the note");
	}
}

/* ---- POST /v1/calls/{id}/meeting ---- */

static void post_meeting(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *id = mod_http_param(req, "id");
	char link[512];
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	err = move_meet(a->sip, id, link, sizeof(link));
	if (err == ENOENT)
		mod_http_reply_errorf(req, 404, "no live call %s", id);
	else if (err == ENOTSUP)
		mod_http_reply_error(req, 501, "no meetings here: [meet] url_template is not set");
	else if (err && err != EALREADY)
		mod_http_reply_errorf(req, 500, "cannot start a meeting: %s", strerror(err));
	else
		mod_http_reply_json(req, err ? 200 : 201,
		                    json_pack("{s:s, s:s, s:b}", "call", id, "link", link, "again",
		                              err == EALREADY));
}

/* ---- GET /c/{secret} ---- */

static void when(char *out, size_t len, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || !gmtime_r(&t, &tm))
		snprintf(out, len, "-");
	else
		strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void notes_html(struct buf *b, const struct store_context *c)
{
	char at[40];

	if (!c->nnotes) {
		buf_puts(b, "<p class=\"muted\">No notes.</p>");
		return;
	}
	buf_puts(b, "<ol class=\"notes\">");
	for (size_t i = 0; i < c->nnotes; i++) {
		when(at, sizeof(at), c->notes[i].at);
		buf_puts(b, "<li><span class=\"muted\">");
		buf_html(b, at);
		buf_puts(b, "</span> ");
		buf_html(b, c->notes[i].text);
		buf_puts(b, "</li>");
	}
	buf_puts(b, "</ol>");
}

static void moves_html(struct buf *b, const struct store_context *c)
{
	char at[40];

	if (!c->nmoves) {
		buf_puts(b, "<p class=\"muted\">Not moved.</p>");
		return;
	}
	buf_puts(b, "<ol class=\"moves\">");
	for (size_t i = 0; i < c->nmoves; i++) {
		const struct store_move *m = &c->moves[i];

		when(at, sizeof(at), m->created_at);
		buf_puts(b, "<li>");
		buf_html(b, at);
		buf_puts(b, ": ");
		buf_html(b, store_move_state_name(m->state));
		if (m->reason[0]) {
			buf_puts(b, " (");
			buf_html(b, m->reason);
			buf_puts(b, ")");
		}
		buf_puts(b, "</li>");
	}
	buf_puts(b, "</ol>");
}

static void page_send(struct ctx_req *r)
{
	const struct store_context *c = r->ctx;
	struct buf notes = {0}, moves = {0}, earlier = {0};
	char since[48], ended[48], state[120];

	when(since, sizeof(since), c->started_at);
	when(ended, sizeof(ended), c->ended_at);
	snprintf(state, sizeof(state), c->ended_at ? "Ended %s" : "Going on", ended);
	notes_html(&notes, c);
	moves_html(&moves, c);
	if (r->earlier) {
		buf_puts(&earlier, "<h2>The call it continues</h2><p>With ");
		buf_html(&earlier, r->earlier->far_identity);
		buf_puts(&earlier, ", from ");
		when(since, sizeof(since), r->earlier->started_at);
		buf_html(&earlier, since);
		buf_puts(&earlier, "</p>");
		notes_html(&earlier, r->earlier);
		when(since, sizeof(since), c->started_at);
	}
	if (notes.failed || moves.failed || earlier.failed) {
		mod_http_reply_error(r->req, 500, "out of memory");
	} else {
		const struct page_slot slots[] = {
		    {"title", "Call context"},
		    {"who", c->far_identity},
		    {"since", since},
		    {"state", state},
		    {"notes", NULL, notes.data ? notes.data : ""},
		    {"moves", NULL, moves.data ? moves.data : ""},
		    {"earlier", NULL, earlier.data ? earlier.data : ""},
		    {NULL}};

		web_page_send(r->req, 200, "context.html", slots);
	}
	buf_release(&notes);
	buf_release(&moves);
	buf_release(&earlier);
}

static void context_read(struct store_job *job, void *arg)
{
	struct ctx_req *r = arg;
	struct store_job next = {.op = STORE_OP_CONTEXT_GET};

	if (!r->req)
		goto out;
	if (job->err) {
		if (r->ctx) {
			/* The earlier call's context may be purged: the page goes without it. */
			page_send(r);
			goto out;
		}
		if (job->err != ENOENT)
			LOG_ERR("api", "store: read a context: %s", strerror(job->err));
		web_page_message(r->req, job->err == ENOENT ? 404 : 503, "No such call", "bad",
		                 job->err == ENOENT ? "This is not a call's address."
		                                    : "The call's context cannot be read now.");
		goto out;
	}
	if (!r->ctx) {
		r->ctx = job->context;
		job->context = NULL;
		if (r->ctx->resumed_from[0]) {
			snprintf(next.id, sizeof(next.id), "%s", r->ctx->resumed_from);
			if (!store_submit(r->a->store, &next, context_read, r))
				return;
		}
	} else {
		r->earlier = job->context;
		job->context = NULL;
	}
	page_send(r);
out:
	ctx_req_free(r);
}

static void get_context_page(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *secret = mod_http_param(req, "secret");
	struct store_job job = {.op = STORE_OP_CONTEXT_GET};
	struct ctx_req *r;

	if (code_secret_hash(secret, job.hash)) {
		web_page_message(req, 404, "No such call", "bad", "This is not a call's address.");
		return;
	}
	if (!a->store) {
		web_page_message(req, 503, "No such call", "bad", "No store here.");
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	r->a = a;
	r->req = req;
	if (mod_http_defer(req, ctx_cancel, r) || store_submit(a->store, &job, context_read, r)) {
		free(r);
		mod_http_reply_error(req, 503, "the store cannot be asked now");
	}
}

void web_post_note(struct mod_http_req *req, void *arg)
{
	post_note(req, arg);
}

void web_post_meeting(struct mod_http_req *req, void *arg)
{
	post_meeting(req, arg);
}

void web_get_context(struct mod_http_req *req, void *arg)
{
	get_context_page(req, arg);
}

/* ---- GET and POST /r/{secret}: a resume code's link ---- */

/* A link's request while the store looks the code up; req is NULL once the client went. */
struct resume_req {
	struct mod_http_req *req;
	int use;
};

static void resume_cancel(void *arg)
{
	struct resume_req *r = arg;

	r->req = NULL;
}

static void resume_answered(void *arg, int err, const char *far, const char *device,
                            unsigned retry_after)
{
	struct resume_req *r = arg;
	char after[16];

	if (!r->req) {
		free(r);
		return;
	}
	if (!err) {
		const struct page_slot page[] = {{"title", "Call again"},
		                                 {"device", device},
		                                 {"far", far},
		                                 {"secret", mod_http_param(r->req, "secret")},
		                                 {NULL}};
		const struct page_slot calling[] = {
		    {"title", "Calling"}, {"target", device}, {NULL}};

		if (r->use)
			web_page_send(r->req, 200, "calling.html", calling);
		else
			web_page_send(r->req, 200, "resume.html", page);
	} else if (err == ENOENT) {
		/* Wrong, used, expired, malformed: one answer. */
		web_page_message(r->req, 404, "No such code", "bad",
		                 "This link does not hold a resume code, or it was used or has "
		                 "expired.");
	} else if (err == EAGAIN || err == EBUSY) {
		snprintf(after, sizeof(after), "%u", retry_after ? retry_after : 1);
		mod_http_reply_header(r->req, "Retry-After", after);
		web_page_message(r->req, 429, "Too many attempts", "bad",
		                 "Too many wrong codes from here: wait a little and try again.");
	} else if (err == EPERM || err == EINVAL) {
		web_page_message(r->req, 403, "Cannot call", "bad",
		                 "qrxfer may not call the phone this code went to.");
	} else {
		web_page_message(r->req, 503, "Cannot call", "bad", "The service is not ready.");
	}
	free(r);
}

static void resume_link(struct mod_http_req *req, void *arg, int use)
{
	struct mod_api *a = arg;
	char source[STORE_SOURCE_MAX];
	struct resume_req *r;
	int err;

	if (!a->sip) {
		web_page_message(req, 503, "Cannot call", "bad", "The service is not ready.");
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	r->req = req;
	r->use = use;
	web_source_of(req, source, sizeof(source));
	if (mod_http_defer(req, resume_cancel, r)) {
		free(r);
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	err = move_resume_link(a->sip, mod_http_param(req, "secret"), source, use, resume_answered,
	                       r);
	if (err) {
		r->req = NULL;
		free(r);
		if (err == ENOTSUP)
			web_page_message(
			    req, 404, "No such code", "bad",
			    "This link does not hold a resume code, or it was used or has "
			    "expired.");
		else {
			mod_http_reply_header(req, "Retry-After", "1");
			web_page_message(req, 503, "Cannot call", "bad", "Busy: try again.");
		}
	}
}

void web_get_resume(struct mod_http_req *req, void *arg)
{
	resume_link(req, arg, 0);
}

void web_post_resume(struct mod_http_req *req, void *arg)
{
	resume_link(req, arg, 1);
}
