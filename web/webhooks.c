/*
 * web/webhooks: the bodies strangers post. The SMS gateway's webhook (a confirmation answered
 * by SMS), and the landing page's form (the phone a code holder wants called). Their bodies
 * are parsed by web/forms.c.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "web/api_int.h"
#include "web/forms.h"

/* ---- SMS webhook ---- */

void web_post_sms_inbound(struct mod_http_req *req, void *arg)
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
		log_limited(&a->webhook_refused, LOG_LEVEL_WARN, "api", "sms inbound from %s: %s",
		            mod_http_peer_str(req),
		            err == EPERM ? "no webhook secret configured"
		                         : "bad or missing signature");
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
		LOG_INFO("api", "sms inbound from %s: %s", sms.from,
		         err == ENOENT     ? "nobody asked this number"
		         : err == EALREADY ? "the same message again (ignored)"
		         : err == EINVAL   ? "reply is neither yes nor no"
		                           : strerror(err));
	/* the gateway only needs to know we took it */
	mod_http_reply(req, 200, "text/xml", twiml, strlen(twiml));
out:
	mod_api_form_release(&sms.form);
}

/* ---- the landing page's form: POST /m/{token} ---- */

static void finish_dial(struct job *j)
{
	unsigned status = j->live_err ? web_err_status(j->live_err) : 200;
	const char *why;

	if (!j->live_err) {
		const struct page_slot slots[] = {
		    {"title", "Calling"}, {"target", j->text}, {NULL}};

		web_page_send(j->req, 200, "calling.html", slots);
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
		web_retry_after(j);
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
	{
		const struct page_slot slots[] = {
		    {"title", "Cannot call"}, {"target", j->text}, {"why", why}, {NULL}};

		web_page_send(j->req, status, "cannot-call.html", slots);
	}
}

void web_post_landing(struct mod_http_req *req, void *arg)
{
	struct mod_api *a = arg;
	const char *token = mod_http_param(req, "token"), *body;
	struct mod_api_landing l;
	char source[STORE_SOURCE_MAX];
	size_t len = 0;
	struct job *j;
	int err;

	if (!web_valid_token(token)) {
		web_page_message(req, 404, "No such code", "bad",
		                 "This link does not hold a move code.");
		return;
	}
	body = mod_http_body(req, &len);
	err = mod_api_landing_parse(body, len, a->sip_domain, &l);
	if (err == EBADMSG) {
		web_page_message(req, 400, "Cannot call", "bad", "The form could not be read.");
		return;
	}
	if (err) {
		const struct page_slot slots[] = {{"title", "Cannot call"},
		                                  {"target", l.target ? l.target : "(empty)"},
		                                  {"token", token},
		                                  {"value", l.target ? l.target : ""},
		                                  {NULL}};

		web_page_send(req, 400, "landing-bad.html", slots);
		goto out;
	}
	if (!a->sip) {
		web_page_message(req, 503, "Cannot call", "bad", "The service is not ready.");
		goto out;
	}
	j = web_job_new(a, req, finish_dial);
	if (!j || !(j->text = strdup(l.uri))) {
		if (j)
			web_job_free(j);
		web_page_message(req, 500, "Cannot call", "bad", "Out of memory.");
		goto out;
	}
	web_source_of(req, source, sizeof(source));
	j->pending++;
	err = sip_move_dial(a->sip, token, l.uri, source, web_on_live, j);
	if (err) {
		j->pending--;
		j->live_err = err;
	}
	web_job_go(j);
out:
	mod_api_form_release(&l.form);
}
