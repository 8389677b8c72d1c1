/*
 * client/sms: one struct msg per queued SMS, alive from mod_sms_send() until its outcome is
 * reported. An attempt is one mod_curlm_post(); a retry waits on the message's su_timer.
 */
#define SU_TIMER_ARG_T struct msg

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <sofia-sip/su_wait.h>

#include "client/curlm.h"
#include "client/sms.h"
#include "metrics/metrics.h"
#include "util/log.h"

#define DEFAULT_TEMPLATE       "To={to}&From={from}&Body={text}"
#define DEFAULT_TIMEOUT_MS     10000
#define DEFAULT_RETRIES        3
#define DEFAULT_BACKOFF_MS     500
#define DEFAULT_BACKOFF_MAX_MS 30000
#define AUTH_MAX               4096

/* One message; owned by the client's list. */
struct msg {
	LIST_ENTRY(msg) link;
	struct mod_sms *sm;
	unsigned long ref;
	char *body;
	unsigned tries;
	su_timer_t *timer;
};

/* The client; owned by whoever called mod_sms_alloc. */
struct mod_sms {
	su_root_t *root;
	struct mod_curlm *curlm;
	char *url, *from, *template, *auth;
	unsigned timeout_ms, retries, backoff_ms, backoff_max_ms;
	mod_sms_h *done;
	void *arg;
	LIST_HEAD(, msg) msgs;
	unsigned n;
};

/* Appends src URL-encoded (RFC 3986 unreserved characters kept) at *pp. */
static char *put_encoded(char *p, const char *src)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *src; src++) {
		unsigned char c = (unsigned char)*src;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			*p++ = (char)c;
		} else {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	return p;
}

int mod_sms_render(const char *template, const char *to, const char *from, const char *text,
                   char **outp)
{
	const char *names[] = {"{to}", "{from}", "{text}"};
	const char *vals[] = {to, from, text};
	size_t cap = strlen(template) + 1, i;
	const char *t;
	char *out, *p;

	if (!to || !from || !text)
		return EINVAL;
	/* each substitution grows at most three times its value */
	for (t = template; (t = strchr(t, '{')); t++)
		for (i = 0; i < 3; i++)
			if (!strncmp(t, names[i], strlen(names[i])))
				cap += 3 * strlen(vals[i]);
	out = malloc(cap);
	if (!out)
		return ENOMEM;
	for (p = out, t = template; *t;) {
		for (i = 0; i < 3; i++)
			if (!strncmp(t, names[i], strlen(names[i])))
				break;
		if (i < 3) {
			p = put_encoded(p, vals[i]);
			t += strlen(names[i]);
		} else {
			*p++ = *t++;
		}
	}
	*p = '\0';
	*outp = out;
	return 0;
}

/* Reads the header line: one "Name: value" without control characters. */
static int read_auth(const char *path, char **outp)
{
	char buf[AUTH_MAX + 2], *colon;
	size_t len;
	FILE *f = fopen(path, "r");
	int err = 0;

	if (!f) {
		err = errno;
		LOG_ERR("sms", "auth header file %s: %s", path, strerror(err));
		return err;
	}
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	colon = strchr(buf, ':');
	for (size_t i = 0; i < len; i++)
		if (iscntrl((unsigned char)buf[i]) && buf[i] != '\t')
			err = EINVAL;
	if (len > AUTH_MAX || !colon || colon == buf || err) {
		LOG_ERR("sms", "auth header file %s: not one \"Name: value\" line", path);
		return EINVAL;
	}
	*outp = strdup(buf);
	return *outp ? 0 : ENOMEM;
}

int mod_sms_alloc(struct mod_sms **smp, su_root_t *root, const struct mod_sms_conf *conf,
                  mod_sms_h *done, void *arg)
{
	struct mod_sms *sm;
	char *probe = NULL;
	int err;

	if (!smp || !root || !conf || !conf->url || !*conf->url || !conf->from || !done)
		return EINVAL;
	sm = calloc(1, sizeof(*sm));
	if (!sm)
		return ENOMEM;
	sm->root = root;
	sm->done = done;
	sm->arg = arg;
	sm->timeout_ms = conf->timeout_ms ? conf->timeout_ms : DEFAULT_TIMEOUT_MS;
	sm->retries = conf->retries < 0 ? 0
	              : conf->retries   ? (unsigned)conf->retries
	                                : DEFAULT_RETRIES;
	sm->backoff_ms = conf->backoff_ms ? conf->backoff_ms : DEFAULT_BACKOFF_MS;
	sm->backoff_max_ms = conf->backoff_max_ms ? conf->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
	sm->url = strdup(conf->url);
	sm->from = strdup(conf->from);
	sm->template = strdup(conf->body_template && *conf->body_template ? conf->body_template
	                                                                  : DEFAULT_TEMPLATE);
	if (!sm->url || !sm->from || !sm->template) {
		err = ENOMEM;
		goto out;
	}
	/* a template that cannot render is a configuration error, found now */
	err = mod_sms_render(sm->template, "", "", "", &probe);
	free(probe);
	if (err)
		goto out;
	if (conf->auth_header_file && *conf->auth_header_file) {
		err = read_auth(conf->auth_header_file, &sm->auth);
		if (err)
			goto out;
	}
	err = mod_curlm_alloc(&sm->curlm, root);
out:
	if (err) {
		mod_sms_free(sm);
		return err;
	}
	*smp = sm;
	return 0;
}

static void msg_free(struct msg *m)
{
	struct mod_sms *sm = m->sm;

	LIST_REMOVE(m, link);
	sm->n--;
	if (m->timer)
		su_timer_destroy(m->timer);
	free(m->body);
	free(m);
}

/* Reports the outcome and forgets the message. */
static void msg_end(struct msg *m, int err, long status, const char *body)
{
	struct mod_sms *sm = m->sm;
	unsigned long ref = m->ref;

	metric_inc(err ? METRIC_SMS_FAILED_TOTAL : METRIC_SMS_SENT_TOTAL);
	msg_free(m);
	sm->done(sm->arg, ref, err, status, body ? body : "");
}

static int attempt(struct msg *m);

static void on_timer(su_root_magic_t *magic, su_timer_t *t, struct msg *m)
{
	int err = attempt(m);

	if (err)
		msg_end(m, err, 0, "");
}

/* Waits base * 2^(tries-1), capped, then a uniform draw from its upper half (jitter). */
static unsigned backoff(const struct mod_sms *sm, unsigned tries)
{
	unsigned long long d = sm->backoff_ms;

	while (--tries && d < sm->backoff_max_ms)
		d *= 2;
	if (d > sm->backoff_max_ms)
		d = sm->backoff_max_ms;
	return (unsigned)(d / 2 + arc4random_uniform((uint32_t)(d - d / 2) + 1));
}

static void on_response(const struct mod_curlm_res *res, void *arg)
{
	struct msg *m = arg;
	struct mod_sms *sm = m->sm;
	bool retry;
	int err;

	if (!res->err && res->status >= 200 && res->status < 300) {
		msg_end(m, 0, res->status, res->body);
		return;
	}
	retry = res->err ? res->err != ECANCELED && res->err != EMSGSIZE
	                 : res->status == 429 || res->status >= 500;
	err = res->err ? res->err : EPROTO;
	if (!retry || m->tries > sm->retries) {
		if (res->err)
			LOG_WARN("sms", "send ref %lu: %s (after %u tries)", m->ref, res->why,
			         m->tries);
		else
			LOG_WARN("sms", "send ref %lu: gateway answered %ld (after %u tries)",
			         m->ref, res->status, m->tries);
		msg_end(m, err, res->status, res->body);
		return;
	}
	if (!m->timer)
		m->timer = su_timer_create(su_root_task(sm->root), 0);
	if (!m->timer || su_timer_set_interval(m->timer, on_timer, m,
	                                       (su_duration_t)backoff(sm, m->tries)) < 0) {
		LOG_ERR("sms", "send ref %lu: cannot arm the retry timer", m->ref);
		msg_end(m, ENOMEM, res->status, res->body);
	}
}

static int attempt(struct msg *m)
{
	struct mod_sms *sm = m->sm;
	const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
	                      "Accept: application/json", sm->auth, NULL};

	m->tries++;
	return mod_curlm_post(sm->curlm, sm->url, hdrs, m->body, strlen(m->body), sm->timeout_ms,
	                      on_response, m);
}

int mod_sms_send(void *arg, const char *to, const char *text, unsigned long ref)
{
	struct mod_sms *sm = arg;
	struct msg *m;
	int err;

	if (!sm || !to || !*to || !text)
		return EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return ENOMEM;
	err = mod_sms_render(sm->template, to, sm->from, text, &m->body);
	if (err) {
		free(m);
		return err;
	}
	m->sm = sm;
	m->ref = ref;
	LIST_INSERT_HEAD(&sm->msgs, m, link);
	sm->n++;
	err = attempt(m);
	if (err) {
		LOG_WARN("sms", "send ref %lu: %s", ref, strerror(err));
		msg_free(m);
	}
	return err;
}

unsigned mod_sms_pending(const struct mod_sms *sm)
{
	return sm ? sm->n : 0;
}

void mod_sms_free(struct mod_sms *sm)
{
	if (!sm)
		return;
	while (!LIST_EMPTY(&sm->msgs)) {
		struct msg *m = LIST_FIRST(&sm->msgs);

		mod_curlm_cancel(sm->curlm, m);
		msg_free(m);
	}
	mod_curlm_free(sm->curlm);
	free(sm->url);
	free(sm->from);
	free(sm->template);
	free(sm->auth);
	free(sm);
}
