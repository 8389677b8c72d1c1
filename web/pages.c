/*
 * web/pages: the HTML pages, made from the files of web/assets/, and the public routes of a
 * move (its show page, the state the page polls, its QR), which are keyed by the move's show
 * secret, never by its id.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "web/api_int.h"
#include "web/assets.h"

#define INCLUDE_DEPTH 4 /* {{>file}} within {{>file}}... */

char *mod_api_html_escape(const char *s)
{
	struct buf b = {0};

	buf_html(&b, s);
	return buf_take(&b, NULL);
}

static const char *asset(const char *file)
{
	size_t i;

	for (i = 0; i < web_nassets; i++)
		if (!strcmp(web_assets[i].name, file))
			return web_assets[i].text;
	return NULL;
}

static bool is_page(const char *file)
{
	size_t n = strlen(file);

	return n > 5 && !strcmp(file + n - 5, ".html");
}

/*
 * Appends asset file to b: a page with its {{name}} marks filled from slots and its
 * {{>file}} marks replaced by those assets; a style or a script as it is. EINVAL (logged) for
 * a file, a mark or a slot that is not there: a page of ours is wrong.
 */
static int render(struct buf *b, const char *file, const struct page_slot *slots, int depth)
{
	const char *t = asset(file), *open, *close;
	const struct page_slot *sl;
	char name[64];
	size_t n;
	int err;

	if (!t || depth > INCLUDE_DEPTH) {
		LOG_ERR("api", "page %s: %s", file, t ? "included too deep" : "no such asset");
		return EINVAL;
	}
	if (!is_page(file)) {
		buf_puts(b, t);
		return 0;
	}
	while ((open = strstr(t, "{{"))) {
		close = strstr(open + 2, "}}");
		n = close ? (size_t)(close - open - 2) : 0;
		if (!n || n >= sizeof(name)) {
			LOG_ERR("api", "page %s: a {{ without its }}", file);
			return EINVAL;
		}
		buf_add(b, t, (size_t)(open - t));
		memcpy(name, open + 2, n);
		name[n] = '\0';
		t = close + 2;
		if (name[0] == '>') {
			err = render(b, name + 1, slots, depth + 1);
			if (err)
				return err;
			continue;
		}
		for (sl = slots; sl->name && strcmp(sl->name, name); sl++)
			;
		if (!sl->name) {
			LOG_ERR("api", "page %s: no value for {{%s}}", file, name);
			return EINVAL;
		}
		if (sl->html)
			buf_puts(b, sl->html);
		else
			buf_html(b, sl->text);
	}
	buf_puts(b, t);
	return 0;
}

#define PAGE_CSP                                                                                   \
	"default-src 'none'; style-src 'unsafe-inline'; "                                          \
	"script-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; "                         \
	"form-action 'self'; frame-ancestors 'none'"

void web_page_send(struct mod_http_req *req, unsigned status, const char *file,
                   const struct page_slot *slots)
{
	web_page_send_csp(req, status, file, slots, NULL);
}

void web_page_send_csp(struct mod_http_req *req, unsigned status, const char *file,
                       const struct page_slot *slots, const char *more)
{
	struct buf b = {0};
	char csp[sizeof(PAGE_CSP) + 128];
	int err;

	if (more)
		snprintf(csp, sizeof(csp), "%s; %s", PAGE_CSP, more);
	else
		snprintf(csp, sizeof(csp), "%s", PAGE_CSP);
	err = render(&b, file, slots, 0);
	buf_puts(&b, "\n"); /* the assets' lines are joined: the page's own end of line */
	if (err) {
		mod_http_reply_error(req, 500, "internal error: page");
	} else if (b.failed) {
		mod_http_reply_error(req, 500, "out of memory");
	} else {
		mod_http_reply_header(req, "Cache-Control", "no-store");
		mod_http_reply_header(req, "X-Content-Type-Options", "nosniff");
		mod_http_reply_header(req, "Referrer-Policy", "no-referrer");
		mod_http_reply_header(req, "Content-Security-Policy", csp);
		mod_http_reply(req, status, "text/html; charset=utf-8", b.data, b.len);
	}
	buf_release(&b);
}

void web_page_message(struct mod_http_req *req, unsigned status, const char *title, const char *cls,
                      const char *msg)
{
	const struct page_slot slots[] = {
	    {"title", title}, {"class", cls}, {"message", msg}, {NULL}};

	web_page_send(req, status, "message.html", slots);
}

/* ---- a move's public routes ---- */

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

/* The code on offer: its QR, its number and the seconds left, which the script counts down. */
static void show_offered(struct job *j, json_int_t secs)
{
	struct code_qr *qr = NULL;
	char *svg = NULL, left[32];
	int err;

	err = code_qr_make(&qr, j->qr_uri, CODE_ECC_M);
	if (!err)
		err = code_qr_svg(qr, j->api->qr_px, 4, &svg);
	if (err) {
		LOG_ERR("api", "move %s: show page: %s", j->id, code_strerror(err));
		web_page_message(j->req, 500, "Move this call", "bad", "Cannot draw the code.");
		goto out;
	}
	snprintf(left, sizeof(left), "%lld", (long long)secs);
	{
		/* codes/ makes the SVG from module runs only: no text of ours inside */
		const struct page_slot slots[] = {
		    {"title", "Move this call"},
		    {"left", left},
		    {"svg", NULL, strstr(svg, "<svg") ? strstr(svg, "<svg") : svg},
		    {"code", j->code ? j->code : ""},
		    {"status", state_words("offered")},
		    {NULL}};

		web_page_send(j->req, 200, "show.html", slots);
	}
out:
	code_qr_free(qr);
	free(svg);
}

static void finish_show(struct job *j)
{
	const char *state = NULL, *reason = NULL, *taken = NULL, *cls = "muted";
	json_t *src = !j->live_err ? j->live : j->stored;
	struct buf status = {0};

	if (!src) {
		web_page_message(
		    j->req, j->live_err == ENOENT || j->store_err == ENOENT ? 404 : 500,
		    "No such move", "bad", "This move does not exist, or is not on this server.");
		return;
	}
	if (!j->live_err && j->live_state == SIP_MOVE_OFFERED && j->qr_uri) {
		show_offered(j, json_integer_value(json_object_get(src, "expires_in")));
		return;
	}
	state = json_string_value(json_object_get(src, "state"));
	reason = json_string_value(json_object_get(src, "reason"));
	taken = json_string_value(json_object_get(src, "taken_by"));
	if (!taken)
		taken = json_string_value(json_object_get(src, "redeemed_by"));
	if (state && !strcmp(state, "done")) {
		cls = "ok";
		buf_printf(&status, "Moved to %s", taken ? taken : "the new device");
	} else if (state && !strcmp(state, "failed")) {
		cls = "bad";
		buf_printf(&status, "Move failed: %s", reason ? reason : "unknown reason");
	} else if (state && !strcmp(state, "offered")) {
		buf_puts(&status, "The code is not shown on this server.");
	} else {
		buf_puts(&status, state_words(state ? state : ""));
	}
	if (status.failed) {
		mod_http_reply_error(j->req, 500, "out of memory");
	} else {
		const struct page_slot slots[] = {
		    {"title", "Move this call"}, {"class", cls}, {"status", status.data}, {NULL}};

		web_page_send(j->req, 200, "show-over.html", slots);
	}
	buf_release(&status);
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
		web_submit_show(j);
	web_on_live(err, info, arg);
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
			web_page_message(req, 404, "No such move", "bad",
			                 "This is not a move's address.");
		else
			mod_http_reply_error(req, 404, "no such move");
		return;
	}
	j = web_job_new(a, req, finish);
	if (!j) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	memcpy(j->show_hash, hash, sizeof(hash));
	j->kind = (int)kind;
	if (a->sip) {
		j->pending++;
		err =
		    sip_move_show(a->sip, secret,
		                  finish == web_reply_image ? web_on_live : on_live_then_store, j);
		if (err)
			j->pending--;
	}
	if (err) {
		j->live_err = err;
		if (a->store && finish != web_reply_image)
			web_submit_show(j);
	}
	web_job_go(j);
}

void web_get_show(struct mod_http_req *req, void *arg)
{
	public_move(req, arg, finish_show, 0);
}

void web_get_state(struct mod_http_req *req, void *arg)
{
	public_move(req, arg, finish_state, 0);
}

void web_get_public_qr_svg(struct mod_http_req *req, void *arg)
{
	public_move(req, arg, web_reply_image, IMG_QR_SVG);
}

void web_get_public_barcode_png(struct mod_http_req *req, void *arg)
{
	public_move(req, arg, web_reply_image, IMG_BARCODE_PNG);
}

/* ---- the landing page of a code's link ---- */

void web_get_landing(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *token = mod_http_param(req, "token");
	const struct page_slot slots[] = {
	    {"title", "Take this call"}, {"token", token}, {"value", ""}, {NULL}};
	int err = 0;

	if (!web_valid_token(token)) {
		web_page_message(req, 404, "No such code", "bad",
		                 "This link does not hold a move code.");
		return;
	}
	if (a->keys)
		err = code_token_verify(a->keys, token, time(NULL), NULL, NULL);
	if (err == CODE_EEXPIRED) {
		web_page_message(req, 410, "Code expired", "bad",
		                 "This code has expired. Ask for a new one on the phone you hold.");
		return;
	}
	if (err) {
		web_page_message(req, 404, "No such code", "bad",
		                 "This link does not hold a valid code.");
		return;
	}
	web_page_send(req, 200, "landing.html", slots);
}
