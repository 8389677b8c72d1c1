/*
 * media/ng.h: a client of rtpengine's ng control protocol on the su_root loop, never blocking.
 *
 * Wire format: a datagram "<cookie> <bencoded dict>" to the server, the answer "<cookie>
 * <bencoded dict>" back (rtpengine answers a repeated cookie from its cache, so a retry is
 * safe). A request is sent again every timeout_ms, retries times, then fails with ETIMEDOUT;
 * an ICMP refusal fails every request in flight with ECONNREFUSED at once; an answer that is
 * not a bencoded dict with "result" is ignored (a retry may still bring a good one).
 *
 * Ownership: struct ng belongs to its creator (ng_free). A request belongs to the client
 * until its callback has run (exactly once, on the loop) or ng_cancel (no callback).
 */
#ifndef QRXFER_MEDIA_NG_H
#define QRXFER_MEDIA_NG_H

#include <stddef.h>

#include <sofia-sip/su_wait.h>

#include "media/bencode.h"

struct ng;
struct ng_req;

/* err 0: reply is the answer's dict (valid only during the call; "result" may be "error");
 * else ETIMEDOUT, ECONNREFUSED or another errno, reply NULL. */
typedef void ng_reply_h(void *arg, int err, const struct benc *reply);

/* addr: udp:host:port with a numeric IPv4 or [IPv6] host. EINVAL names nothing: the caller
 * says which key was wrong. */
int ng_alloc(struct ng **np, su_root_t *root, const char *addr, unsigned timeout_ms,
             unsigned retries);
void ng_free(struct ng *n);

/*
 * Send the bencoded dict body (len bytes, copied); cb runs with the answer. *reqp (may be
 * NULL) lets the caller cancel it. 0 or an errno (then cb never runs).
 */
int ng_send(struct ng *n, const char *body, size_t len, ng_reply_h *cb, void *arg,
            struct ng_req **reqp);
void ng_cancel(struct ng_req *r);

/* Requests in flight (tests and metrics). */
unsigned ng_pending(const struct ng *n);

#endif
