/*
 * web/api_int: what the API's files share. jobs.c holds the requests that wait on sip/ or the
 * store; api.c the JSON API and the route table; pages.c the pages (web/assets/) and the
 * public routes of a move; webhooks.c the bodies strangers post: the SMS webhook and the
 * landing page's form. Internal to web/api.
 */
#ifndef QRXFER_WEB_API_INT_H
#define QRXFER_WEB_API_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <jansson.h>

#include "codes/code.h"
#include "sip/sip.h"
#include "sql/store.h"
#include "util/log.h"
#include "web/api.h"
#include "web/http.h"

/* The routes' state; owned by whoever called mod_api_alloc. */
struct mod_api {
	struct mod_http *http;
	struct sip *sip;
	struct store *store;
	const struct code_keyring *keys;
	char *public_url, *sip_domain, *twilio_token, *webhook_secret, *webhook_url;
	unsigned qr_px;
	LIST_HEAD(, job) jobs;
	struct log_limit webhook_refused; /* webhook requests without a valid signature */
};

enum image_kind { IMG_QR_PNG, IMG_QR_SVG, IMG_QR_TXT, IMG_BARCODE_PNG };

/*
 * One deferred request; on the api's list from its handler until its last completion.
 * req is NULL once answered or cancelled.
 */
struct job {
	LIST_ENTRY(job) link;
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

/* jobs.c */

/* A job for req that finish answers; NULL without memory. */
struct job *web_job_new(struct mod_api *a, struct mod_http_req *req, void (*finish)(struct job *));
void web_job_free(struct job *j);
/* Ends the handler's part: defers the request if completions are still to come. */
void web_job_go(struct job *j);
/* sip_move_h: the move as sip/ told it goes into the job (arg). */
void web_on_live(int err, const struct sip_move_info *info, void *arg);
/* Asks the store for the move whose show secret hashes to j->show_hash. */
int web_submit_show(struct job *j);
/* HTTP status for a value from sip/ or codes/. */
unsigned web_err_status(int err);
/* The peer as guesses are counted: the same key as over SIP (an address, an IPv6 /64). */
void web_source_of(struct mod_http_req *req, char *out, size_t len);
/* Retry-After for a source told to wait: the lock's own end when sip/ said it, else 1 s. */
void web_retry_after(struct job *j);
/* A token is CODE_TOKEN_LEN characters of the base32 alphabet (any case). */
bool web_valid_token(const char *s);
/* A copy of s, NULL for NULL or "" (and without memory). */
char *web_dup_or_null(const char *s);
json_t *web_call_json(const struct sip_call_info *c);
/* Links to a move; the show page's only with its secret, which is told once. */
void web_add_links(struct mod_api *a, json_t *o, const char *id, const char *show);
/* Asks the store for op on id; its answer goes into j. */
int web_submit(struct job *j, enum store_op op, const char *id);
/* Asks sip/ for the live move id; its answer goes into j. */
int web_live_get(struct job *j, const char *id);

/* api.c */

/* Answers with the move's code as j->kind asks (the job's finish for images). */
void web_reply_image(struct job *j);

/* pages.c */

/* One {{name}} of a page: text goes in HTML-escaped, html as it is (ours only). */
struct page_slot {
	const char *name;
	const char *text;
	const char *html;
};

/* Sends page file (web/assets/) with status, its marks filled from slots ({NULL} ends). */
void web_page_send(struct mod_http_req *req, unsigned status, const char *file,
                   const struct page_slot *slots);
/* The same with the pages' Content-Security-Policy and one more directive (the watch page's
 * "media-src https:"); more NULL: the policy as it is. */
void web_page_send_csp(struct mod_http_req *req, unsigned status, const char *file,
                       const struct page_slot *slots, const char *more);
/* A page with a title and one message in a paragraph of class cls. */
void web_page_message(struct mod_http_req *req, unsigned status, const char *title, const char *cls,
                      const char *msg);
void web_get_show(struct mod_http_req *req, void *arg);
void web_get_state(struct mod_http_req *req, void *arg);
void web_get_public_qr_svg(struct mod_http_req *req, void *arg);
void web_get_public_barcode_png(struct mod_http_req *req, void *arg);
void web_get_landing(struct mod_http_req *req, void *arg);

/* context.c: a call's notes, its meeting, its context page */
void web_post_note(struct mod_http_req *req, void *arg);
void web_post_meeting(struct mod_http_req *req, void *arg);
void web_get_context(struct mod_http_req *req, void *arg);
/* context.c: a resume code's link: the page (GET), the call (POST) */
void web_get_resume(struct mod_http_req *req, void *arg);
void web_post_resume(struct mod_http_req *req, void *arg);
/* watch.c: the watch-together pages and the share route */
void web_get_watch(struct mod_http_req *req, void *arg);
void web_get_watch_events(struct mod_http_req *req, void *arg);
void web_post_watch_control(struct mod_http_req *req, void *arg);
void web_post_share(struct mod_http_req *req, void *arg);

/* webhooks.c */

void web_post_sms_inbound(struct mod_http_req *req, void *arg);
void web_post_landing(struct mod_http_req *req, void *arg);

#endif
