/*
 * client/curlm: libcurl multi in its socket mode. Each socket libcurl wants watched is one
 * wait on the root (su_root_eventmask follows its changes); libcurl's timeout is one
 * su_timer. Completions are collected after each curl_multi_socket_action().
 */
#define SU_WAKEUP_ARG_T struct sock
#define SU_TIMER_ARG_T  struct mod_curlm

#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sofia-sip/su_wait.h>

#include <sys/queue.h>

#include "client/curlm.h"
#include "util/buf.h"
#include "util/log.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_BODY_MAX   (1u << 20)

/* A socket libcurl asked us to watch; owned by the client's list, freed on REMOVE. */
struct sock {
	LIST_ENTRY(sock) link;
	struct mod_curlm *m;
	curl_socket_t fd;
	int idx;
};

/* One request; owned by the client's list until done is called. */
struct xfer {
	LIST_ENTRY(xfer) link;
	struct mod_curlm *m;
	CURL *easy;
	struct curl_slist *hdrs;
	struct buf body; /* the response's */
	bool too_big;
	mod_curlm_h *done;
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
};

/* The client; owned by whoever called mod_curlm_alloc. */
struct mod_curlm {
	su_root_t *root;
	CURLM *multi;
	su_timer_t *timer;
	LIST_HEAD(, xfer) xfers;
	LIST_HEAD(, sock) socks;
	unsigned n;
	size_t body_max;
};

static void xfer_free(struct xfer *x)
{
	if (x->easy)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->hdrs);
	buf_release(&x->body);
	free(x);
}

static int map_error(struct xfer *x, CURLcode rc)
{
	long oserr = 0;

	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
		return oserr > 0 ? (int)oserr : ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return EHOSTUNREACH;
	case CURLE_WRITE_ERROR:
		return x->too_big ? EMSGSIZE : EIO;
	default:
		return EIO;
	}
}

/* Ends x: unlinks it, tells its owner, frees it. */
static void finish(struct xfer *x, int err, const char *why)
{
	struct mod_curlm *m = x->m;
	struct mod_curlm_res res = {0};

	res.err = err;
	if (!err)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res.status);
	res.why = err ? why : "";
	res.body = x->body.data ? x->body.data : "";
	res.len = x->body.len;
	curl_multi_remove_handle(m->multi, x->easy);
	LIST_REMOVE(x, link);
	m->n--;
	x->done(&res, x->arg);
	xfer_free(x);
}

static void collect(struct mod_curlm *m)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(m->multi, &left))) {
		struct xfer *x = NULL;
		int err;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		err = map_error(x, msg->data.result);
		finish(x, err, x->errbuf[0] ? x->errbuf : curl_easy_strerror(msg->data.result));
	}
}

static int on_wait(su_root_magic_t *magic, su_wait_t *w, struct sock *s)
{
	struct mod_curlm *m = s->m;
	int ev = su_wait_events(w, s->fd), cev = 0, running;

	if (ev & SU_WAIT_IN)
		cev |= CURL_CSELECT_IN;
	if (ev & SU_WAIT_OUT)
		cev |= CURL_CSELECT_OUT;
	if (ev & (SU_WAIT_ERR | SU_WAIT_HUP))
		cev |= CURL_CSELECT_ERR;
	/* s may be freed inside (CURL_POLL_REMOVE) */
	curl_multi_socket_action(m->multi, s->fd, cev, &running);
	collect(m);
	return 0;
}

static void on_timer(su_root_magic_t *magic, su_timer_t *t, struct mod_curlm *m)
{
	int running;

	curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect(m);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct mod_curlm *m = userp;
	struct sock *s = socketp;
	su_wait_t w[1];
	int ev = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			su_root_deregister(m->root, s->idx);
			LIST_REMOVE(s, link);
			free(s);
			curl_multi_assign(m->multi, fd, NULL);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= SU_WAIT_IN;
	if (what & CURL_POLL_OUT)
		ev |= SU_WAIT_OUT;
	if (s)
		return su_root_eventmask(m->root, s->idx, fd, ev) < 0 ? -1 : 0;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	s->m = m;
	s->fd = fd;
	if (su_wait_create(w, fd, ev)) {
		free(s);
		return -1;
	}
	s->idx = su_root_register(m->root, w, on_wait, s, 0);
	if (s->idx < 0) {
		su_wait_destroy(w);
		free(s);
		LOG_ERR("curlm", "register socket: loop refused it");
		return -1;
	}
	LIST_INSERT_HEAD(&m->socks, s, link);
	curl_multi_assign(m->multi, fd, s);
	return 0;
}

static int on_curl_timer(CURLM *multi, long ms, void *userp)
{
	struct mod_curlm *m = userp;

	/* libcurl asks not to be called back from here: run it from the timer */
	if (ms < 0)
		su_timer_reset(m->timer);
	else
		su_timer_set_interval(m->timer, on_timer, m, ms);
	return 0;
}

static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
	struct xfer *x = userp;
	size_t len = size * n;

	if (x->body.len + len > x->m->body_max) {
		x->too_big = true;
		return 0;
	}
	buf_add(&x->body, data, len);
	return x->body.failed ? 0 : len;
}

int mod_curlm_alloc(struct mod_curlm **mp, su_root_t *root)
{
	struct mod_curlm *m;
	int err = 0;

	if (!mp || !root)
		return EINVAL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT))
		return EIO;
	m = calloc(1, sizeof(*m));
	if (!m) {
		curl_global_cleanup();
		return ENOMEM;
	}
	m->root = root;
	m->body_max = DEFAULT_BODY_MAX;
	m->multi = curl_multi_init();
	m->timer = su_timer_create(su_root_task(root), 0);
	if (!m->multi || !m->timer) {
		err = ENOMEM;
		goto out;
	}
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	*mp = m;
	m = NULL;
out:
	mod_curlm_free(m);
	return err;
}

void mod_curlm_free(struct mod_curlm *m)
{
	struct mod_curlm_res res = {.err = ECANCELED, .why = "client closed", .body = ""};
	struct xfer *x;
	struct sock *s;

	if (!m)
		return;
	while ((x = LIST_FIRST(&m->xfers))) {
		curl_multi_remove_handle(m->multi, x->easy);
		LIST_REMOVE(x, link);
		m->n--;
		x->done(&res, x->arg);
		xfer_free(x);
	}
	if (m->multi)
		curl_multi_cleanup(m->multi);
	/* sockets libcurl never told us to remove */
	while ((s = LIST_FIRST(&m->socks))) {
		su_root_deregister(m->root, s->idx);
		LIST_REMOVE(s, link);
		free(s);
	}
	if (m->timer)
		su_timer_destroy(m->timer);
	free(m);
	curl_global_cleanup();
}

int mod_curlm_request(struct mod_curlm *m, const char *method, const char *url,
                      const char *const *headers, const void *body, size_t len, unsigned timeout_ms,
                      mod_curlm_h *done, void *arg)
{
	struct curl_slist *l;
	struct xfer *x;
	int err = 0;

	if (!m || !method || !url || !done)
		return EINVAL;
	x = calloc(1, sizeof(*x));
	if (!x)
		return ENOMEM;
	x->m = m;
	x->done = done;
	x->arg = arg;
	x->easy = curl_easy_init();
	if (!x->easy) {
		err = ENOMEM;
		goto out;
	}
	for (; headers && *headers; headers++) {
		l = curl_slist_append(x->hdrs, *headers);
		if (!l) {
			err = ENOMEM;
			goto out;
		}
		x->hdrs = l;
	}
	/* no "Expect: 100-continue" round trip */
	l = curl_slist_append(x->hdrs, "Expect:");
	if (!l) {
		err = ENOMEM;
		goto out;
	}
	x->hdrs = l;
	if (curl_easy_setopt(x->easy, CURLOPT_URL, url) ||
	    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x) ||
	    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf) ||
	    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS,
	                     (long)(timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS)) ||
	    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs) ||
	    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_write) ||
	    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x)) {
		err = EINVAL;
		goto out;
	}
	if (body || !strcmp(method, "POST")) {
		if (curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) ||
		    curl_easy_setopt(x->easy, CURLOPT_COPYPOSTFIELDS, body ? body : "")) {
			err = ENOMEM;
			goto out;
		}
	}
	if (strcmp(method, body || !strcmp(method, "POST") ? "POST" : "GET") &&
	    curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, method)) {
		err = ENOMEM;
		goto out;
	}
	if (curl_multi_add_handle(m->multi, x->easy)) {
		err = ENOMEM;
		goto out;
	}
	LIST_INSERT_HEAD(&m->xfers, x, link);
	m->n++;
	x = NULL;
out:
	if (x)
		xfer_free(x);
	return err;
}

int mod_curlm_post(struct mod_curlm *m, const char *url, const char *const *headers,
                   const void *body, size_t len, unsigned timeout_ms, mod_curlm_h *done, void *arg)
{
	return mod_curlm_request(m, "POST", url, headers, body, len, timeout_ms, done, arg);
}

unsigned mod_curlm_cancel(struct mod_curlm *m, void *arg)
{
	struct xfer *x, *next;
	unsigned n = 0;

	for (x = LIST_FIRST(&m->xfers); x; x = next) {
		next = LIST_NEXT(x, link);
		if (x->arg != arg)
			continue;
		curl_multi_remove_handle(m->multi, x->easy);
		LIST_REMOVE(x, link);
		m->n--;
		xfer_free(x);
		n++;
	}
	return n;
}

unsigned mod_curlm_pending(const struct mod_curlm *m)
{
	return m->n;
}

void mod_curlm_set_body_max(struct mod_curlm *m, size_t max)
{
	m->body_max = max;
}
