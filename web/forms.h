/*
 * web/forms: the request bodies the API reads (JSON, forms, the SMS webhook's signature),
 * parsed from bytes alone so that tests and fuzzers reach them without a request. Internal to
 * web/api; the harnesses are web/fuzz_api_json.c and web/fuzz_api_form.c.
 */
#ifndef QRXFER_WEB_FORMS_H
#define QRXFER_WEB_FORMS_H

#include <stdbool.h>
#include <stddef.h>

#define MOD_API_FORM_MAX   64  /* parameters in one form body */
#define MOD_API_TARGET_MAX 256 /* a target URI, without the NUL */

struct mod_api_form_param {
	char *name, *value;
};

/* A decoded application/x-www-form-urlencoded body; names and values point into buf. */
struct mod_api_form {
	struct mod_api_form_param p[MOD_API_FORM_MAX];
	size_t n;
	char *buf; /* owner: the form (mod_api_form_release) */
};

/* Decodes s in place ('+' is a space, then MHD_http_unescape: %XX is a byte, a bad escape stays
 * as it is); stops at len or a NUL, terminates (s holds len + 1 bytes); the new length. */
size_t mod_api_form_decode(char *s, size_t len);

/* Splits body into decoded pairs, up to its first NUL: 0, E2BIG (more than MOD_API_FORM_MAX)
 * or ENOMEM. On error f holds nothing to release. */
int mod_api_form_parse(const char *body, size_t len, struct mod_api_form *f);

/* The first value named name, or NULL. */
const char *mod_api_form_get(const struct mod_api_form *f, const char *name);

/* Frees what mod_api_form_parse kept; a zeroed form is fine. */
void mod_api_form_release(struct mod_api_form *f);

/* A sip:, sips: or tel: URI of 1..MOD_API_TARGET_MAX bytes without spaces or controls. */
bool mod_api_valid_uri(const char *s);

/* POST /v1/moves/{id}/refer: {"target": URI}. */
struct mod_api_refer {
	char target[MOD_API_TARGET_MAX + 1];
};

/* 0, or EBADMSG (not JSON) or EINVAL (no valid target) with why, the 400's text. */
int mod_api_refer_parse(const char *body, size_t len, struct mod_api_refer *r, char *why,
                        size_t whylen);

/* Who may call POST /v1/sms/inbound; NULL fields are not configured. */
struct mod_api_webhook_auth {
	const char *secret;       /* X-Qrxfer-Secret must equal it */
	const char *twilio_token; /* or X-Twilio-Signature must sign url and the form */
	const char *url;          /* the URL the gateway signs */
};

/* 0 when the headers (NULL if absent) vouch for body; EACCES if not; EPERM if auth holds
 * neither a secret nor a token. A secret header is checked before a signature. */
int mod_api_webhook_check(const struct mod_api_webhook_auth *auth, const char *secret_hdr,
                          const char *sig_hdr, const char *body, size_t len);

/* POST /v1/sms/inbound's form: the sender and the text point into form. */
struct mod_api_sms {
	struct mod_api_form form;
	const char *from, *text;
	const char *message_id; /* the gateway's id (Twilio's MessageSid, else "id"), or NULL */
};

/* 0, or EBADMSG (not a form) or EINVAL (From or Body missing) with *why, the 400's text.
 * Release s->form afterwards whatever it returned. */
int mod_api_sms_parse(const char *body, size_t len, struct mod_api_sms *s, const char **why);

/* POST /m/{token}'s form: the phone to dial, as typed and as a URI. */
struct mod_api_landing {
	struct mod_api_form form;
	const char *target; /* as typed, leading spaces skipped; NULL if absent */
	char uri[MOD_API_TARGET_MAX + 64];
};

/* A number becomes sip:N@domain (domain may be NULL: numbers are refused), a URI stays.
 * 0, EBADMSG (not a form) or EINVAL (target is neither). Release l->form afterwards. */
int mod_api_landing_parse(const char *body, size_t len, const char *domain,
                          struct mod_api_landing *l);

#endif
