/*
 * client/sms: the SMS gateway client (libcurl multi on the su_root loop, never blocking).
 *
 * One message is one form-encoded POST to the gateway, shaped by a body template; by default
 * Twilio's Messages resource (POST /2010-04-01/Accounts/{AccountSid}/Messages.json with
 * To, From and Body, Basic auth, answered 201 with a JSON "sid"). Transport errors, 429 and
 * 5xx are retried with exponential back-off and jitter; other statuses are final.
 */
#ifndef QRXFER_CLIENT_SMS_H
#define QRXFER_CLIENT_SMS_H

#include <stddef.h>

/* As in <sofia-sip/su_wait.h>, without fixing the includer's SU_ROOT_MAGIC_T. */
typedef struct su_root_s su_root_t;

struct mod_sms;

/* Zero fields take the default in brackets. */
struct mod_sms_conf {
	const char *url;              /* the gateway's endpoint (required) */
	const char *auth_header_file; /* holds one header line, "Authorization: Basic ..." [none] */
	const char *from;             /* our number, substituted for {from} (required) */
	const char *body_template;    /* placeholders {to} {from} {text}, URL-encoded when
	                                 substituted [To={to}&From={from}&Body={text}] */
	unsigned timeout_ms;          /* one attempt [10000] */
	int retries;                  /* further attempts after the first; -1 for none [3] */
	unsigned backoff_ms;          /* wait before the first retry, doubling after [500] */
	unsigned backoff_max_ms;      /* the longest wait [30000] */
};

/*
 * The final outcome of one message: err 0 when the gateway answered 2xx; else EPROTO (a
 * final non-2xx status, in status), ETIMEDOUT, ECONNREFUSED, EIO... after the last try.
 * body is the gateway's last answer (NUL-terminated, "" without one), valid during the call.
 */
typedef void(mod_sms_h)(void *arg, unsigned long ref, int err, long status, const char *body);

/* Makes a client on root; reads the auth header file now. done receives every outcome. */
int mod_sms_alloc(struct mod_sms **smp, su_root_t *root, const struct mod_sms_conf *conf,
                  mod_sms_h *done, void *arg);
/* Drops pending messages without telling done, and frees; NULL is fine. */
void mod_sms_free(struct mod_sms *sm);

/*
 * Queues text to number to; the outcome goes to done with ref, never from inside this call.
 * Its signature is sip_hooks.sms_send's: pass the struct mod_sms as the hooks' arg.
 */
int mod_sms_send(void *sm, const char *to, const char *text, unsigned long ref);

/* Messages not yet finished. */
unsigned mod_sms_pending(const struct mod_sms *sm);

/* Substitutes {to}, {from}, {text} (URL-encoded) into template; *outp is malloc'd. */
int mod_sms_render(const char *template, const char *to, const char *from, const char *text,
                   char **outp);

#endif
