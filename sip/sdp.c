/* SDP toward the far leg: one stable origin (RFC 3264 section 8), whoever is near. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sip/b2bua.h"

/* Find the o= line: its start and length (without the line end); 0 if none. */
static int find_origin(const char *body, size_t len, size_t *start, size_t *olen)
{
	size_t i = 0;

	while (i + 2 <= len) {
		size_t e = i;
		while (e < len && body[e] != '\r' && body[e] != '\n')
			e++;
		if (e - i > 2 && body[i] == 'o' && body[i + 1] == '=') {
			*start = i;
			*olen = e - i;
			return 1;
		}
		while (e < len && (body[e] == '\r' || body[e] == '\n'))
			e++;
		i = e;
	}
	return 0;
}

/* The body with its o= line cut out, to tell whether the session description changed. */
static int same_but_origin(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t as, al, bs, bl;

	if (!find_origin(a, alen, &as, &al) || !find_origin(b, blen, &bs, &bl))
		return alen == blen && !memcmp(a, b, alen);
	return as == bs && alen - al == blen - bl && !memcmp(a, b, as) &&
	       !memcmp(a + as + al, b + bs + bl, alen - as - al);
}

/*
 * body (len bytes) with the o= line one party sees (RFC 3264 8): the first body sets the origin
 * (o keeps it, in home); later ones get it with the version raised by one when the session
 * changed. NULL when the body has no usable o= line (then it goes as it came) or no memory;
 * else a string in home, *outlen bytes.
 */
char *sdp_origin_apply(su_home_t *home, struct sdp_origin *o, const char *body, size_t len,
                       size_t *outlen)
{
	char user[64], sess[32], net[16], atype[16], addr[128], line[320];
	unsigned long long ver;
	size_t start, olen, n;
	char *buf;

	if (!body || !find_origin(body, len, &start, &olen))
		return NULL;
	if (!o->origin) {
		snprintf(line, sizeof(line), "%.*s", (int)olen, body + start);
		if (sscanf(line, "o=%63s %31s %llu %15s %15s %127s", user, sess, &ver, net, atype,
		           addr) != 6)
			return NULL;
		/* Kept as two plain strings around the version: they came off the wire. */
		o->origin = su_sprintf(home, "%s %s", user, sess);
		o->tail = su_sprintf(home, "%s %s %s", net, atype, addr);
		o->version = ver;
		o->body = su_strndup(home, body, len);
		return NULL;
	}
	if (!o->body || !same_but_origin(o->body, strlen(o->body), body, len))
		o->version++;
	n = (size_t)snprintf(line, sizeof(line), "o=%s %llu %s", o->origin, o->version,
	                     o->tail ? o->tail : "");
	if (n >= sizeof(line))
		return NULL;
	buf = su_alloc(home, len - olen + n + 1);
	if (!buf)
		return NULL;
	memcpy(buf, body, start);
	memcpy(buf + start, line, n);
	memcpy(buf + start + n, body + start + olen, len - start - olen);
	buf[len - olen + n] = 0;
	su_free(home, o->body);
	o->body = su_strndup(home, body, len);
	*outlen = len - olen + n;
	return buf;
}

/*
 * The payload to send to the far leg for this SDP: the first one sets the origin the far
 * party sees; later ones get that origin with the version raised when the session changed.
 */
sip_payload_t *sdp_to_far(struct call *c, const sip_payload_t *pl)
{
	struct sdp_origin o = {c->far_origin, c->far_origin_tail, c->far_body, c->far_version};
	sip_payload_t *out;
	size_t n = 0;
	char *buf;

	if (!pl || !pl->pl_data)
		return (sip_payload_t *)pl;
	buf = sdp_origin_apply(c->home, &o, pl->pl_data, pl->pl_len, &n);
	c->far_origin = o.origin;
	c->far_origin_tail = o.tail;
	c->far_body = o.body;
	c->far_version = o.version;
	if (!buf)
		return (sip_payload_t *)pl;
	out = sip_payload_create(c->home, buf, (isize_t)n);
	su_free(c->home, buf);
	/* A restart must go on from this version (RFC 3264 8): written at once. */
	call_touch(c, 1);
	return out;
}

/* The payload to send on leg dst for a message's body: rewritten toward the far party. */
sip_payload_t *body_for(struct leg *dst, const sip_t *sip)
{
	sip_payload_t *pl = body_pl(sip);

	if (dst && dst->call->sdp_msg == sip && dst->call->sdp_pl)
		pl = dst->call->sdp_pl;
	if (!pl || !dst || dst != dst->call->far)
		return pl;
	if (!sip->sip_content_type || strcasecmp(sip->sip_content_type->c_type, "application/sdp"))
		return pl;
	return sdp_to_far(dst->call, pl);
}

static int is_sdp(const sip_t *sip)
{
	const sip_payload_t *pl = body_pl(sip);

	return pl && pl->pl_len && sip->sip_content_type && sip->sip_content_type->c_type &&
	       !strcasecmp(sip->sip_content_type->c_type, "application/sdp");
}

void sdp_note(struct leg *from, struct leg *to, const sip_t *sip, int offer)
{
	struct call *c = from ? from->call : NULL;
	const sip_payload_t *pl = body_pl(sip);

	if (c && to && is_sdp(sip) && hook_has_sdp(c->sip))
		(void)hook_sdp(c, from, to, offer, pl->pl_data, pl->pl_len, NULL);
}

int sdp_hold(const struct sip_sdp_wait *tmpl, const sip_t *sip, int offer)
{
	struct call *c = tmpl->c;
	struct sip_sdp_wait *w;
	const sip_payload_t *pl = body_pl(sip);

	if (c->sdp_msg == sip || !is_sdp(sip) || !hook_has_sdp(c->sip))
		return 0;
	w = malloc(sizeof(*w));
	if (!w)
		return 0;
	*w = *tmpl;
	w->msg = msg_ref_create(tmpl->msg);
	if (hook_sdp(c, w->from, w->to, offer, pl->pl_data, pl->pl_len, w))
		return 1;
	msg_destroy(w->msg);
	free(w);
	return 0;
}

void sip_sdp_resume(struct sip_sdp_wait *w, const char *body, size_t len)
{
	struct call *c = w->c;

	su_home_ref(c->home);
	c->sdp_msg = sip_object(w->msg);
	c->sdp_pl = body ? sip_payload_create(c->home, body, (isize_t)len) : NULL;
	w->go(w);
	c->sdp_msg = NULL;
	su_free(c->home, c->sdp_pl);
	c->sdp_pl = NULL;
	su_home_unref(c->home);
	sip_sdp_drop(w);
}

void sip_sdp_drop(struct sip_sdp_wait *w)
{
	if (!w)
		return;
	msg_destroy(w->msg);
	free(w);
}
