/*
 * web/api: the HTTP API, the pages and the SMS webhook, as routes on web/http.
 *
 * Admin (bearer token): GET /v1/calls, GET /v1/calls/{id}, POST /v1/calls/{id}/moves,
 * GET /v1/moves, GET /v1/moves/{id}, GET /v1/moves/{id}/qr.png|qr.svg|qr.txt|barcode.png,
 * POST /v1/moves/{id}/refer, GET /metrics.
 * Public (rate limited): GET /m/{id}/show, GET /m/{id}/state, GET /m/{id}/qr.svg,
 * GET and POST /m/{token}, POST /v1/scans, POST /v1/sms/inbound.
 * Every error is JSON {"error": "..."} (HTML on the pages).
 */
#ifndef QRXFER_WEB_API_H
#define QRXFER_WEB_API_H

#include <stddef.h>

struct mod_api;
struct mod_http;
struct sip;
struct store;
struct code_keyring;

/* Zero fields take the default in brackets; strings are copied. */
struct mod_api_conf {
	const char *public_url; /* https://host[:port], for links and the webhook URL [""] */
	const char *sip_domain; /* numbers typed on the landing page become sip:N@domain */
	const struct code_keyring *keys; /* lets GET /m/{token} tell an expired code early; may
	                                    be NULL (kept, not copied) */
	const char *twilio_auth_token;   /* checks X-Twilio-Signature on the webhook [none] */
	const char *webhook_secret;      /* or X-Qrxfer-Secret equal to this [none] */
	const char *webhook_url;         /* the URL the gateway signs [public_url/v1/sms/inbound] */
	unsigned qr_px;                  /* pixels per QR module in PNG and SVG [8] */
};

/*
 * Registers the routes on http. sip and store may be NULL (their routes answer 503).
 * Free it last, after sip_free(), mod_http_free() and store_close(): their late callbacks
 * and the routes land here.
 */
int mod_api_alloc(struct mod_api **ap, struct mod_http *http, struct sip *sip, struct store *store,
                  const struct mod_api_conf *conf);
/* Answers requests still waiting with 503 and frees; NULL is fine. */
void mod_api_free(struct mod_api *a);

/* HTML-escapes s (& < > " '); malloc'd, NULL only without memory. */
char *mod_api_html_escape(const char *s);

/*
 * Twilio's request signature: base64(HMAC-SHA1(auth_token, url + for each POST parameter,
 * sorted by name, name + value)) of a form-encoded body. out gets at least 29 bytes.
 */
int mod_api_twilio_signature(const char *auth_token, const char *url, const char *form, size_t len,
                             char *out, size_t outlen);

#endif
