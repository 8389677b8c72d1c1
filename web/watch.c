/*
 * web/watch: the watch-together page (/w/{secret}), the news its script long-polls for
 * (/w/{secret}/events?since=N: answered at once when there is news, else deferred until some
 * comes or [react] poll_secs pass, so the loop never waits), its play/pause/seek
 * (/w/{secret}/control), and the admin's POST /v1/calls/{id}/share. The watches themselves
 * are the move layer's (move/watch.c).
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move/react.h"
#include "web/api_int.h"

/* The pages' policy, and media from any https: origin (react_url_ok() says which hosts). */
#define WATCH_CSP_MEDIA "media-src https:"

/* One long poll, from its handler until its answer or its cancel. */
struct watch_req {
	struct mod_http_req *req;
	struct react_waiter *w;
	int sync; /* still inside the handler: the answer goes out at once */
	int answered;
};

void web_get_watch(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const struct page_slot slots[] = {{"title", "Watch together"}, {NULL}};

	if (!a->sip || react_watch_exists(a->sip, mod_http_param(req, "secret"))) {
		web_page_message(req, 404, "No such watch page", "bad",
		                 "This watch page does not exist, or its call has ended.");
		return;
	}
	web_page_send_csp(req, 200, "watch.html", slots, WATCH_CSP_MEDIA);
}

static void on_news(int err, const char *json, size_t len, void *arg)
{
	struct watch_req *wr = arg;

	wr->w = NULL;
	wr->answered = 1;
	if (!err) {
		mod_http_reply_header(wr->req, "Cache-Control", "no-store");
		mod_http_reply(wr->req, 200, "application/json", json, len);
	} else if (err == ENOENT) {
		mod_http_reply_error(wr->req, 404, "no such watch page");
	} else {
		mod_http_reply_error(wr->req, 500, "out of memory");
	}
	if (!wr->sync)
		free(wr);
}

/* The server stops, or the page's client closed the connection: its listener slot is free. */
static void on_gone(void *arg)
{
	struct watch_req *wr = arg;

	react_watch_cancel(wr->w);
	free(wr);
}

void web_get_watch_events(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *since_s = mod_http_query(req, "since");
	char key[STORE_SOURCE_MAX], *end = NULL;
	unsigned long since = 0;
	struct watch_req *wr;
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	if (since_s) {
		errno = 0;
		since = strtoul(since_s, &end, 10);
		if (!*since_s || *end || errno || *since_s == '-') {
			mod_http_reply_error(req, 400, "since is not a number");
			return;
		}
	}
	wr = calloc(1, sizeof(*wr));
	if (!wr) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	wr->req = req;
	wr->sync = 1;
	web_source_of(req, key, sizeof(key));
	err = react_watch_poll(a->sip, mod_http_param(req, "secret"), since, key, on_news, wr,
	                       &wr->w);
	wr->sync = 0;
	if (err == ENOENT)
		mod_http_reply_error(req, 404, "no such watch page");
	else if (err == EMLINK || err == EUSERS) {
		mod_http_reply_header(req, "Retry-After", "2");
		mod_http_reply_error(req, 429,
		                     err == EMLINK ? "too many pages on this watch"
		                                   : "too many pages from this address");
	} else if (err)
		mod_http_reply_error(req, 500, "out of memory");
	if (err || wr->answered) {
		free(wr);
		return;
	}
	if (mod_http_defer_until_gone(req, on_gone, wr)) {
		react_watch_cancel(wr->w);
		free(wr);
		mod_http_reply_error(req, 500, "cannot wait");
	}
}

void web_post_watch_control(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	json_t *body = NULL, *pos;
	const char *action;
	char why[128];
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	if (react_watch_exists(a->sip, mod_http_param(req, "secret"))) {
		mod_http_reply_error(req, 404, "no such watch page");
		return;
	}
	if (mod_http_body_json(req, &body))
		return;
	action = json_string_value(json_object_get(body, "action"));
	pos = json_object_get(body, "pos");
	if (!json_is_object(body) || !action) {
		mod_http_reply_error(req, 400, "body is not {\"action\": \"play|pause|seek\"}");
	} else if (pos && (!json_is_number(pos) || !isfinite(json_number_value(pos)))) {
		mod_http_reply_error(req, 400, "pos is not a number");
	} else if (!strcmp(action, "seek") && !pos) {
		mod_http_reply_error(req, 400, "seek needs pos");
	} else {
		err = react_watch_control(a->sip, mod_http_param(req, "secret"), action,
		                          pos ? json_number_value(pos) : 0, why, sizeof(why));
		if (err)
			mod_http_reply_error(req, err == ENOENT ? 404 : 400, why);
		else
			mod_http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
	}
	json_decref(body);
}

void web_post_share(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	json_t *body = NULL;
	const char *url;
	char link[REACT_URL_MAX], why[160];
	int err;

	if (!a->sip) {
		mod_http_reply_error(req, 503, "no SIP stack");
		return;
	}
	if (mod_http_body_json(req, &body))
		return;
	url = json_string_value(json_object_get(body, "url"));
	if (!json_is_object(body) || !url) {
		mod_http_reply_error(req, 400, "body is not {\"url\": \"https://...\"}");
		json_decref(body);
		return;
	}
	err = react_share(a->sip, mod_http_param(req, "id"), url, link, sizeof(link), why,
	                  sizeof(why));
	if (!err)
		mod_http_reply_json(req, link[0] ? 201 : 200,
		                    link[0] ? json_pack("{s:s,s:s}", "link", link, "url", url)
		                            : json_pack("{s:s}", "url", url));
	else
		mod_http_reply_error(req,
		                     err == ENOENT     ? 404
		                     : err == EINVAL   ? 400
		                     : err == ENOTCONN ? 409
		                                       : 500,
		                     why);
	json_decref(body);
}
