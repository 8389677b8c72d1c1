/* web/forms: request bodies parsed from bytes alone (see forms.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "web/api.h"
#include "web/forms.h"

/* ---- forms ---- */

size_t mod_api_form_decode(char *s, size_t len)
{
	size_t i;

	s[len] = '\0';
	for (i = 0; i < len; i++)
		if (s[i] == '+')
			s[i] = ' ';
	return MHD_http_unescape(s);
}

int mod_api_form_parse(const char *body, size_t len, struct mod_api_form *f)
{
	char *buf = malloc(len + 1), *s, *amp, *eq;
	size_t n = 0;

	f->n = 0;
	f->buf = NULL;
	if (!buf)
		return ENOMEM;
	if (len)
		memcpy(buf, body, len);
	buf[len] = '\0';
	for (s = buf; s && *s; s = amp) {
		amp = strchr(s, '&');
		if (amp)
			*amp++ = '\0';
		if (!*s)
			continue;
		if (n == MOD_API_FORM_MAX) {
			free(buf);
			return E2BIG;
		}
		eq = strchr(s, '=');
		if (eq)
			*eq++ = '\0';
		mod_api_form_decode(s, strlen(s));
		if (eq)
			mod_api_form_decode(eq, strlen(eq));
		f->p[n].name = s;
		f->p[n].value = eq ? eq : s + strlen(s);
		n++;
	}
	f->n = n;
	f->buf = buf;
	return 0;
}

const char *mod_api_form_get(const struct mod_api_form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->p[i].name, name))
			return f->p[i].value;
	return NULL;
}

void mod_api_form_release(struct mod_api_form *f)
{
	free(f->buf);
	f->buf = NULL;
	f->n = 0;
}

/* ---- targets ---- */

bool mod_api_valid_uri(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n || n > MOD_API_TARGET_MAX)
		return false;
	if (strncasecmp(s, "sip:", 4) && strncasecmp(s, "sips:", 5) && strncasecmp(s, "tel:", 4))
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

/* "+44 20 7946-0000" -> "+442079460000"; false if it is not a number. */
static bool number_of(const char *in, char *out, size_t len)
{
	size_t n = 0;

	for (; *in; in++) {
		if (*in == ' ' || *in == '-' || *in == '.' || *in == '(' || *in == ')')
			continue;
		if (!(isdigit((unsigned char)*in) || *in == '*' || *in == '#' ||
		      (*in == '+' && !n)))
			return false;
		if (n + 1 >= len)
			return false;
		out[n++] = *in;
	}
	out[n] = '\0';
	return n >= 2 && !(n == 1 && out[0] == '+');
}

/* ---- bodies ---- */

int mod_api_refer_parse(const char *body, size_t len, struct mod_api_refer *r, char *why,
                        size_t whylen)
{
	json_error_t jerr;
	const char *target;
	json_t *j;

	j = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		snprintf(why, whylen, "invalid JSON body: line %d column %d: %s", jerr.line,
		         jerr.column, jerr.text);
		return EBADMSG;
	}
	target = json_string_value(json_object_get(j, "target"));
	if (!mod_api_valid_uri(target)) {
		snprintf(why, whylen, "\"target\" must be a sip:, sips: or tel: URI");
		json_decref(j);
		return EINVAL;
	}
	snprintf(r->target, sizeof(r->target), "%s", target);
	json_decref(j);
	return 0;
}

int mod_api_sms_parse(const char *body, size_t len, struct mod_api_sms *s, const char **why)
{
	s->from = s->text = s->message_id = NULL;
	if (mod_api_form_parse(body, len, &s->form)) {
		*why = "body is not a form";
		return EBADMSG;
	}
	s->from = mod_api_form_get(&s->form, "From");
	s->text = mod_api_form_get(&s->form, "Body");
	s->message_id = mod_api_form_get(&s->form, "MessageSid");
	if (!s->message_id)
		s->message_id = mod_api_form_get(&s->form, "id");
	if (!s->from || !*s->from || !s->text) {
		*why = "form needs From and Body";
		return EINVAL;
	}
	return 0;
}

int mod_api_landing_parse(const char *body, size_t len, const char *domain,
                          struct mod_api_landing *l)
{
	char num[64];

	l->target = NULL;
	l->uri[0] = '\0';
	if (mod_api_form_parse(body, len, &l->form))
		return EBADMSG;
	l->target = mod_api_form_get(&l->form, "target");
	while (l->target && *l->target == ' ')
		l->target++;
	if (l->target && number_of(l->target, num, sizeof(num)) && domain)
		snprintf(l->uri, sizeof(l->uri), "sip:%s@%s", num, domain);
	else if (l->target && mod_api_valid_uri(l->target))
		snprintf(l->uri, sizeof(l->uri), "%s", l->target);
	else
		return EINVAL;
	return 0;
}

/* ---- the SMS webhook's signature ---- */

static int param_cmp(const void *x, const void *y)
{
	const struct mod_api_form_param *a = x, *b = y;
	int c = strcmp(a->name, b->name);

	return c ? c : strcmp(a->value, b->value);
}

int mod_api_twilio_signature(const char *auth_token, const char *url, const char *form, size_t len,
                             char *out, size_t outlen)
{
	struct mod_api_form f;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	char *msg = NULL;
	size_t i, mlen;
	int err;

	if (!auth_token || !url || outlen < 29)
		return EINVAL;
	err = mod_api_form_parse(form ? form : "", form ? len : 0, &f);
	if (err)
		return err;
	qsort(f.p, f.n, sizeof(f.p[0]), param_cmp);
	/* decoded text is never longer than the form: url + form bounds the message */
	msg = malloc(strlen(url) + len + 1);
	if (!msg) {
		err = ENOMEM;
		goto out;
	}
	mlen = strlen(url);
	memcpy(msg, url, mlen);
	for (i = 0; i < f.n; i++) {
		memcpy(msg + mlen, f.p[i].name, strlen(f.p[i].name));
		mlen += strlen(f.p[i].name);
		memcpy(msg + mlen, f.p[i].value, strlen(f.p[i].value));
		mlen += strlen(f.p[i].value);
	}
	if (!HMAC(EVP_sha1(), auth_token, (int)strlen(auth_token), (unsigned char *)msg, mlen, mac,
	          &maclen)) {
		err = EIO;
		goto out;
	}
	EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
out:
	free(msg);
	mod_api_form_release(&f);
	return err;
}

/* Equal strings, in time that depends on neither's content or length. */
static bool secret_equal(const char *x, const char *y)
{
	unsigned char hx[SHA256_DIGEST_LENGTH], hy[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)x, strlen(x), hx);
	SHA256((const unsigned char *)y, strlen(y), hy);
	return !CRYPTO_memcmp(hx, hy, sizeof(hx));
}

int mod_api_webhook_check(const struct mod_api_webhook_auth *auth, const char *secret_hdr,
                          const char *sig_hdr, const char *body, size_t len)
{
	char want[64];
	bool ok = false;

	if (!auth->secret && !auth->twilio_token)
		return EPERM;
	if (auth->secret && secret_hdr)
		ok = secret_equal(secret_hdr, auth->secret);
	else if (auth->twilio_token && sig_hdr)
		ok = !mod_api_twilio_signature(auth->twilio_token, auth->url, body, len, want,
		                               sizeof(want)) &&
		     secret_equal(sig_hdr, want);
	return ok ? 0 : EACCES;
}
