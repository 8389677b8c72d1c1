/*
 * libFuzzer harness: the form bodies and the SMS webhook's checks (web/forms.c). The
 * input's first line is the header (X-Twilio-Signature or X-Qrxfer-Secret), the rest the body.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web/api.h"
#include "web/forms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void forms(const char *body, size_t len)
{
	struct mod_api_landing l;
	struct mod_api_sms sms;
	const char *why = NULL;
	char *copy;
	int err;

	copy = malloc(len + 1);
	if (!copy)
		return;
	memcpy(copy, body, len);
	if (mod_api_form_decode(copy, len) > len)
		abort(); /* decoding never grows */
	free(copy);

	err = mod_api_sms_parse(body, len, &sms, &why);
	if (err ? !why : (!sms.from || !*sms.from || !sms.text))
		abort();
	mod_api_form_release(&sms.form);

	err = mod_api_landing_parse(body, len, "example.test", &l);
	if (!err && !mod_api_valid_uri(l.uri))
		abort(); /* whatever is dialled is a URI we would send */
	mod_api_form_release(&l.form);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char token[] = "fuzz-twilio-token", secret[] = "fuzz-secret";
	const struct mod_api_webhook_auth twilio = {NULL, token, "https://h.test/v1/sms/inbound"};
	const struct mod_api_webhook_auth shared = {secret, NULL, NULL};
	const struct mod_api_webhook_auth none = {NULL, NULL, NULL};
	const uint8_t *nl = memchr(data, '\n', size);
	size_t hlen = nl ? (size_t)(nl - data) : 0;
	const char *body = nl ? (const char *)nl + 1 : (const char *)data;
	size_t len = nl ? size - hlen - 1 : size;
	char *hdr, sig[64];
	int err;

	hdr = malloc(hlen + 1);
	if (!hdr)
		return 0;
	memcpy(hdr, data, hlen);
	hdr[hlen] = '\0';

	if (mod_api_webhook_check(&none, hdr, hdr, body, len) != EPERM)
		abort(); /* nothing configured lets nobody in */
	if (mod_api_webhook_check(&shared, NULL, hdr, body, len) != EACCES)
		abort(); /* a signature is no secret */
	if ((mod_api_webhook_check(&shared, hdr, NULL, body, len) == 0) != !strcmp(hdr, secret))
		abort();
	err = mod_api_twilio_signature(token, twilio.url, body, len, sig, sizeof(sig));
	if (mod_api_webhook_check(&twilio, NULL, hdr, body, len) == 0 && (err || strcmp(hdr, sig)))
		abort(); /* only the right signature passes */
	if (!err && mod_api_webhook_check(&twilio, NULL, sig, body, len) != 0)
		abort(); /* and it always does */
	forms(body, len);
	free(hdr);
	return 0;
}
