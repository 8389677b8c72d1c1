/* media/: the bencode codec (well-formed and malformed input) and the ng client's retries,
 * timeouts, refusals and answers by cookie, on a real su_root and loopback UDP. */
#include <time.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "media/bencode.h"
#include "media/ng.h"
#include "leakcheck.h"

TestSuite(bencode, .fini = leakcheck);
TestSuite(ng, .fini = leakcheck);

static int parses(const char *s)
{
	struct benc *b = NULL;
	int err = benc_parse(s, strlen(s), &b);

	benc_free(b);
	return err;
}

Test(bencode, reads_an_ng_answer)
{
	const char *in = "d6:result2:ok3:sdp5:v=0\r\n5:countli1ei-20ee4:nestd1:kd1:xi0eeee";
	const struct benc *v, *l;
	struct benc *b;
	char sdp[16];

	cr_assert_eq(benc_parse(in, strlen(in), &b), 0);
	cr_assert_eq(b->type, BENC_DICT);
	cr_assert(benc_is(benc_get(b, "result"), "ok"));
	cr_assert_eq(benc_get_str(b, "sdp", sdp, sizeof(sdp)), 0);
	cr_assert_str_eq(sdp, "v=0\r\n");
	l = benc_get(b, "count");
	cr_assert_eq(l->type, BENC_LIST);
	cr_assert_eq(l->child->i, 1);
	cr_assert_eq(l->child->next->i, -20);
	cr_assert_null(l->child->next->next);
	v = benc_get(benc_get(benc_get(b, "nest"), "k"), "x");
	cr_assert_eq(v->type, BENC_INT);
	cr_assert_eq(v->i, 0);
	cr_assert_null(benc_get(b, "missing"));
	cr_assert_null(benc_get(l, "count")); /* not a dict */
	cr_assert_eq(benc_get_str(b, "count", sdp, sizeof(sdp)), ENOENT);
	benc_free(b);
}

Test(bencode, binary_strings_keep_their_bytes)
{
	const char in[] = "3:a\0b";
	struct benc *b;

	cr_assert_eq(benc_parse(in, sizeof(in) - 1, &b), 0);
	cr_assert_eq(b->len, 3);
	cr_assert_eq(b->s[1], '\0');
	benc_free(b);
}

Test(bencode, writes_what_it_reads)
{
	struct buf w = {0};
	struct benc *b;

	benc_put_dict(&w);
	benc_put_kv(&w, "command", "offer");
	benc_put_str(&w, "flags");
	benc_put_list(&w);
	benc_put_str(&w, "trust-address");
	benc_put_end(&w);
	benc_put_str(&w, "n");
	benc_put_int(&w, -42);
	benc_put_end(&w);
	cr_assert(!w.failed);
	cr_assert_str_eq(w.data, "d7:command5:offer5:flagsl13:trust-addresse1:ni-42ee");
	cr_assert_eq(benc_parse(w.data, w.len, &b), 0);
	cr_assert(benc_is(benc_get(b, "command"), "offer"));
	cr_assert_eq(benc_get(b, "n")->i, -42);
	benc_free(b);
	buf_release(&w);
}

Test(bencode, refuses_malformed_input)
{
	static const char *const bad[] = {
	    "",                          /* nothing */
	    "i12",                       /* int without end */
	    "ie",                        /* int without digits */
	    "i-0e",                      /* negative zero */
	    "i03e",                      /* leading zero */
	    "i1-2e",                     /* junk in an int */
	    "i99999999999999999999e",    /* past long long */
	    "5:abc",                     /* string longer than the input */
	    "05:abcde",                  /* length with a leading zero */
	    "-1:a",                      /* negative length */
	    "99999999999999999999999:a", /* length past any size */
	    "3abc",                      /* no colon */
	    "l",                         /* list without end */
	    "li1e",                      /* list without end */
	    "d",                         /* dict without end */
	    "di1ei2ee",                  /* key not a string */
	    "d1:ae",                     /* key without value */
	    "d1:a",                      /* key at the end */
	    "x",                         /* no such type */
	    "i1ei2e",                    /* trailing value */
	    "d1:ai1ee ",                 /* trailing byte */
	    "e",                         /* end alone */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(parses(bad[i]), EINVAL, "'%s' was not refused as EINVAL", bad[i]);
}

Test(bencode, bounds_depth_and_nodes)
{
	char deep[2 * (BENC_MAX_DEPTH + 4) + 1];
	size_t n = 0;
	struct buf many = {0};

	for (int i = 0; i < BENC_MAX_DEPTH + 4; i++)
		deep[n++] = 'l';
	for (int i = 0; i < BENC_MAX_DEPTH + 4; i++)
		deep[n++] = 'e';
	deep[n] = 0;
	cr_assert_eq(parses(deep), E2BIG);
	/* nesting up to the bound is fine */
	cr_assert_eq(parses("llllee"
	                    "ee"),
	             0);

	benc_put_list(&many);
	for (int i = 0; i < BENC_MAX_NODES + 10; i++)
		benc_put_int(&many, 1);
	benc_put_end(&many);
	cr_assert_eq(parses(many.data), E2BIG);
	buf_release(&many);
}

Test(bencode, survives_every_truncation_and_byte_flip)
{
	const char *good = "d6:result2:ok3:sdp9:v=0\r\no=x\r5:countli1ei-20ee4:tagsd1:ad1:bi7eeee";
	size_t len = strlen(good);
	char *copy = malloc(len);

	for (size_t cut = 0; cut < len; cut++) {
		struct benc *b = NULL;
		int err =
		    benc_parse(good, cut, &b); /* malloc'd copies would catch over-reads too */

		cr_expect_neq(err, 0, "a truncation at %zu parsed", cut);
		benc_free(b);
	}
	for (size_t i = 0; i < len; i++) {
		for (int c = 0; c < 256; c += 7) {
			struct benc *b = NULL;

			memcpy(copy, good, len);
			copy[i] = (char)c;
			if (!benc_parse(copy, len, &b))
				benc_free(b);
		}
	}
	free(copy);
}

/* ---- the client, against sockets this test holds ---- */

struct got {
	int calls, err;
	char result[32];
};

static void on_reply(void *arg, int err, const struct benc *reply)
{
	struct got *g = arg;

	g->calls++;
	g->err = err;
	if (reply)
		benc_get_str(reply, "result", g->result, sizeof(g->result));
}

static int udp_bound(unsigned short *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Runs the loop until *flag or ms of wall time: su_root_step may return early (a wake-up
 * with nothing due), so counting steps is no clock. */
static void run_until(su_root_t *root, const int *flag, int ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		su_root_step(root, 10);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (!*flag && (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

Test(ng, refuses_bad_addresses)
{
	su_root_t *root;
	struct ng *n = NULL;
	static const char *const bad[] = {"",
	                                  "127.0.0.1:22222",
	                                  "tcp:127.0.0.1:1",
	                                  "udp:127.0.0.1",
	                                  "udp:localhost:22222",
	                                  "udp:1.2.3.4:0",
	                                  "udp:1.2.3.4:70000",
	                                  "udp:[::1:5",
	                                  "udp::5",
	                                  "udp:1.2.3.4:5x"};

	su_init();
	root = su_root_create(NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(ng_alloc(&n, root, bad[i], 100, 0), EINVAL, "'%s' taken", bad[i]);
	cr_assert_eq(ng_alloc(&n, root, "udp:[::1]:22222", 100, 0), 0);
	ng_free(n);
	su_root_destroy(root);
	su_deinit();
}

Test(ng, retries_then_times_out_against_a_silent_server)
{
	unsigned short port;
	int fd = udp_bound(&port), seen = 0;
	char addr[64], dgram[512], first[64] = "";
	struct got g = {0};
	su_root_t *root;
	struct ng *n;

	su_init();
	root = su_root_create(NULL);
	snprintf(addr, sizeof(addr), "udp:127.0.0.1:%u", port);
	cr_assert_eq(ng_alloc(&n, root, addr, 50, 2), 0);
	cr_assert_eq(ng_send(n, "d7:command4:pinge", 17, on_reply, &g, NULL), 0);
	run_until(root, &g.calls, 2000);
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.err, ETIMEDOUT);
	cr_assert_eq(ng_pending(n), 0);
	for (;;) {
		ssize_t r = recv(fd, dgram, sizeof(dgram) - 1, 0);

		if (r <= 0)
			break;
		dgram[r] = 0;
		/* every try carries the same cookie: rtpengine answers a repeat from its cache */
		if (!seen++)
			snprintf(first, sizeof(first), "%.*s", (int)strcspn(dgram, " "), dgram);
		else
			cr_assert(!strncmp(dgram, first, strlen(first)));
		cr_assert(strstr(dgram, " d7:command4:pinge"));
	}
	cr_assert_eq(seen, 3, "one send and 2 retries, saw %d", seen);
	ng_free(n);
	close(fd);
	su_root_destroy(root);
	su_deinit();
}

Test(ng, a_refused_port_fails_at_once)
{
	unsigned short port;
	int fd = udp_bound(&port);
	char addr[64];
	struct got g = {0};
	su_root_t *root;
	struct ng *n;

	close(fd); /* nobody listens there now: ICMP port unreachable */
	su_init();
	root = su_root_create(NULL);
	snprintf(addr, sizeof(addr), "udp:127.0.0.1:%u", port);
	cr_assert_eq(ng_alloc(&n, root, addr, 5000, 3), 0);
	cr_assert_eq(ng_send(n, "d7:command4:pinge", 17, on_reply, &g, NULL), 0);
	run_until(root, &g.calls, 1000);
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.err, ECONNREFUSED);
	ng_free(n);
	su_root_destroy(root);
	su_deinit();
}

Test(ng, takes_the_answer_with_its_cookie_and_ignores_the_rest)
{
	unsigned short port;
	int fd = udp_bound(&port);
	char addr[64], dgram[512], cookie[64], ans[600];
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	struct got g = {0}, g2 = {0};
	struct ng_req *r2;
	su_root_t *root;
	struct ng *n;
	ssize_t r;
	int len;

	su_init();
	root = su_root_create(NULL);
	snprintf(addr, sizeof(addr), "udp:127.0.0.1:%u", port);
	cr_assert_eq(ng_alloc(&n, root, addr, 2000, 0), 0);
	cr_assert_eq(ng_send(n, "d7:command4:pinge", 17, on_reply, &g, NULL), 0);
	cr_assert_eq(ng_send(n, "d7:command4:pinge", 17, on_reply, &g2, &r2), 0);
	ng_cancel(r2); /* no callback for it, ever */
	su_root_step(root, 10);
	r = recvfrom(fd, dgram, sizeof(dgram) - 1, 0, (struct sockaddr *)&from, &fl);
	cr_assert(r > 0);
	dgram[r] = 0;
	snprintf(cookie, sizeof(cookie), "%.*s", (int)strcspn(dgram, " "), dgram);
	/* noise first: another cookie, no space, not bencode, a dict without result */
	sendto(fd, "zzz d6:result4:ponge", 20, 0, (struct sockaddr *)&from, fl);
	sendto(fd, "nospace", 7, 0, (struct sockaddr *)&from, fl);
	len = snprintf(ans, sizeof(ans), "%s d6:result", cookie);
	sendto(fd, ans, (size_t)len, 0, (struct sockaddr *)&from, fl);
	len = snprintf(ans, sizeof(ans), "%s d3:fooi1ee", cookie);
	sendto(fd, ans, (size_t)len, 0, (struct sockaddr *)&from, fl);
	for (int i = 0; i < 20; i++)
		su_root_step(root, 10);
	cr_assert_eq(g.calls, 0);
	len = snprintf(ans, sizeof(ans), "%s d6:result4:ponge", cookie);
	sendto(fd, ans, (size_t)len, 0, (struct sockaddr *)&from, fl);
	run_until(root, &g.calls, 1000);
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(g.err, 0);
	cr_assert_str_eq(g.result, "pong");
	cr_assert_eq(g2.calls, 0);
	/* the same answer again: its request is gone, nothing runs */
	sendto(fd, ans, (size_t)len, 0, (struct sockaddr *)&from, fl);
	for (int i = 0; i < 5; i++)
		su_root_step(root, 10);
	cr_assert_eq(g.calls, 1);
	ng_free(n);
	close(fd);
	su_root_destroy(root);
	su_deinit();
}
