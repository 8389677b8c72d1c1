/* The ng client: one connected UDP socket registered on the loop, requests by cookie. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#define SU_TIMER_ARG_T  struct ng_req
#define SU_WAKEUP_ARG_T struct ng
#include <sofia-sip/su_wait.h>

#include "media/ng.h"
#include "util/log.h"

#define NG_COOKIE_LEN 24
#define NG_MAX_DGRAM  65535

struct ng_req {
	LIST_ENTRY(ng_req) link;
	struct ng *ng;
	char cookie[NG_COOKIE_LEN + 1];
	char *msg; /* cookie, space, body */
	size_t len;
	unsigned tries;
	su_timer_t *timer;
	ng_reply_h *cb;
	void *arg;
};

struct ng {
	su_root_t *root;
	int fd;
	su_wait_t wait[1];
	int reg; /* su_root_register's index, or -1 */
	unsigned timeout_ms, retries;
	unsigned long seq;
	char prefix[13]; /* random, so that cookies of two runs never meet in the cache */
	LIST_HEAD(, ng_req) reqs;
	unsigned npending;
	char *rbuf;
};

static void req_free(struct ng_req *r)
{
	LIST_REMOVE(r, link);
	r->ng->npending--;
	su_timer_destroy(r->timer);
	free(r->msg);
	free(r);
}

static void req_done(struct ng_req *r, int err, const struct benc *reply)
{
	ng_reply_h *cb = r->cb;
	void *arg = r->arg;

	req_free(r);
	if (cb)
		cb(arg, err, reply);
}

static void fail_all(struct ng *n, int err)
{
	while (!LIST_EMPTY(&n->reqs))
		req_done(LIST_FIRST(&n->reqs), err, NULL);
}

static void req_transmit(struct ng_req *r)
{
	/* A full socket buffer is a lost datagram: the retry covers it. */
	if (send(r->ng->fd, r->msg, r->len, MSG_DONTWAIT) < 0 && errno == ECONNREFUSED) {
		/* the refusal of an earlier datagram; this one may still go */
		(void)send(r->ng->fd, r->msg, r->len, MSG_DONTWAIT);
	}
}

static void req_timer(su_root_magic_t *m, su_timer_t *t, struct ng_req *r)
{
	(void)m;
	(void)t;
	if (r->tries++ >= r->ng->retries) {
		req_done(r, ETIMEDOUT, NULL);
		return;
	}
	req_transmit(r);
	su_timer_set(r->timer, req_timer, r);
}

static void on_datagram(struct ng *n, const char *d, size_t len)
{
	const char *sp = memchr(d, ' ', len);
	struct benc *root = NULL;
	struct ng_req *r;
	size_t clen;

	if (!sp)
		return;
	clen = (size_t)(sp - d);
	LIST_FOREACH(r, &n->reqs, link)
	if (strlen(r->cookie) == clen && !memcmp(r->cookie, d, clen))
		break;
	if (!r)
		return; /* late answer to a request we gave up, or not ours */
	if (benc_parse(sp + 1, len - clen - 1, &root) || root->type != BENC_DICT ||
	    !benc_get(root, "result")) {
		LOG_WARN("media", "rtpengine: malformed answer to %s ignored", r->cookie);
		benc_free(root);
		return;
	}
	req_done(r, 0, root);
	benc_free(root);
}

static int on_readable(su_root_magic_t *m, su_wait_t *w, struct ng *n)
{
	(void)m;
	(void)w;
	for (int i = 0; i < 64; i++) {
		ssize_t got = recv(n->fd, n->rbuf, NG_MAX_DGRAM, MSG_DONTWAIT);

		if (got < 0) {
			if (errno == ECONNREFUSED)
				fail_all(n, ECONNREFUSED);
			break;
		}
		on_datagram(n, n->rbuf, (size_t)got);
	}
	return 0;
}

static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[64], port[8];
	const char *p, *colon;
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM,
	                         .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	size_t hl;

	if (!addr || strncmp(addr, "udp:", 4))
		return EINVAL;
	p = addr + 4;
	if (*p == '[') {
		const char *close = strchr(p, ']');

		if (!close || close[1] != ':')
			return EINVAL;
		hl = (size_t)(close - p - 1);
		p++;
		colon = close + 1;
	} else {
		colon = strrchr(p, ':');
		if (!colon)
			return EINVAL;
		hl = (size_t)(colon - p);
	}
	if (!hl || hl >= sizeof(host) || strlen(colon + 1) >= sizeof(port) || !colon[1] ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return EINVAL;
	memcpy(host, p, hl);
	host[hl] = 0;
	snprintf(port, sizeof(port), "%s", colon + 1);
	if (atoi(port) < 1 || atoi(port) > 65535 || getaddrinfo(host, port, &hints, &ai) || !ai)
		return EINVAL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sl = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int ng_alloc(struct ng **np, su_root_t *root, const char *addr, unsigned timeout_ms,
             unsigned retries)
{
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	unsigned char rnd[6];
	struct ng *n;
	int err;

	err = parse_addr(addr, &ss, &sl);
	if (err)
		return err;
	n = calloc(1, sizeof(*n));
	if (!n)
		return ENOMEM;
	n->root = root;
	n->reg = -1;
	n->timeout_ms = timeout_ms ? timeout_ms : 500;
	n->retries = retries;
	LIST_INIT(&n->reqs);
	n->rbuf = malloc(NG_MAX_DGRAM + 1);
	n->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!n->rbuf || n->fd < 0) {
		err = n->rbuf ? errno : ENOMEM;
		goto out;
	}
	if (connect(n->fd, (struct sockaddr *)&ss, sl) < 0) {
		err = errno;
		goto out;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		err = EIO;
		goto out;
	}
	for (int i = 0; i < 6; i++)
		snprintf(n->prefix + 2 * i, 3, "%02x", rnd[i]);
	if (su_wait_create(n->wait, n->fd, SU_WAIT_IN) < 0) {
		err = EIO;
		goto out;
	}
	n->reg = su_root_register(root, n->wait, on_readable, n, 0);
	if (n->reg < 0) {
		su_wait_destroy(n->wait);
		err = EIO;
		goto out;
	}
	*np = n;
	return 0;
out:
	if (n->fd >= 0)
		close(n->fd);
	free(n->rbuf);
	free(n);
	return err;
}

void ng_free(struct ng *n)
{
	if (!n)
		return;
	while (!LIST_EMPTY(&n->reqs))
		req_free(LIST_FIRST(&n->reqs));
	if (n->reg >= 0)
		su_root_deregister(n->root, n->reg); /* destroys the wait object */
	close(n->fd);
	free(n->rbuf);
	free(n);
}

int ng_send(struct ng *n, const char *body, size_t len, ng_reply_h *cb, void *arg,
            struct ng_req **reqp)
{
	struct ng_req *r;
	int cl;

	if (!n || !body || !len || len > NG_MAX_DGRAM - NG_COOKIE_LEN - 2)
		return EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return ENOMEM;
	cl = snprintf(r->cookie, sizeof(r->cookie), "%s%lx", n->prefix, ++n->seq);
	r->msg = malloc((size_t)cl + 1 + len);
	r->timer = su_timer_create(su_root_task(n->root), n->timeout_ms);
	if (!r->msg || !r->timer) {
		su_timer_destroy(r->timer);
		free(r->msg);
		free(r);
		return ENOMEM;
	}
	memcpy(r->msg, r->cookie, (size_t)cl);
	r->msg[cl] = ' ';
	memcpy(r->msg + cl + 1, body, len);
	r->len = (size_t)cl + 1 + len;
	r->ng = n;
	r->cb = cb;
	r->arg = arg;
	LIST_INSERT_HEAD(&n->reqs, r, link);
	n->npending++;
	req_transmit(r);
	su_timer_set(r->timer, req_timer, r);
	if (reqp)
		*reqp = r;
	return 0;
}

void ng_cancel(struct ng_req *r)
{
	if (r)
		req_free(r);
}

unsigned ng_pending(const struct ng *n)
{
	return n ? n->npending : 0;
}
