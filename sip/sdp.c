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
 * The payload to send to the far leg for this SDP: the first one sets the origin the far
 * party sees; later ones get that origin with the version raised when the session changed.
 */
sip_payload_t *sdp_to_far(struct call *c, const sip_payload_t *pl)
{
	char user[64], sess[32], net[16], atype[16], addr[128], line[320];
	unsigned long long ver;
	size_t start, olen, n;
	sip_payload_t *out;
	char *buf;

	if (!pl || !pl->pl_data || !find_origin(pl->pl_data, pl->pl_len, &start, &olen))
		return (sip_payload_t *)pl;
	if (!c->far_origin) {
		snprintf(line, sizeof(line), "%.*s", (int)olen, pl->pl_data + start);
		if (sscanf(line, "o=%63s %31s %llu %15s %15s %127s", user, sess, &ver, net, atype,
		           addr) != 6)
			return (sip_payload_t *)pl;
		/* Kept as two plain strings around the version: they came off the wire. */
		c->far_origin = su_sprintf(c->home, "%s %s", user, sess);
		c->far_origin_tail = su_sprintf(c->home, "%s %s %s", net, atype, addr);
		c->far_version = ver;
		c->far_body = su_strndup(c->home, pl->pl_data, pl->pl_len);
		return (sip_payload_t *)pl;
	}
	if (!c->far_body ||
	    !same_but_origin(c->far_body, strlen(c->far_body), pl->pl_data, pl->pl_len))
		c->far_version++;
	n = (size_t)snprintf(line, sizeof(line), "o=%s %llu %s", c->far_origin, c->far_version,
	                     c->far_origin_tail ? c->far_origin_tail : "");
	if (n >= sizeof(line))
		return (sip_payload_t *)pl;
	buf = su_alloc(c->home, pl->pl_len - olen + n + 1);
	if (!buf)
		return (sip_payload_t *)pl;
	memcpy(buf, pl->pl_data, start);
	memcpy(buf + start, line, n);
	memcpy(buf + start + n, pl->pl_data + start + olen, pl->pl_len - start - olen);
	buf[pl->pl_len - olen + n] = 0;
	su_free(c->home, c->far_body);
	c->far_body = su_strndup(c->home, pl->pl_data, pl->pl_len);
	out = sip_payload_create(c->home, buf, pl->pl_len - olen + n);
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
