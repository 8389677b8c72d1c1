#include <netinet/in.h>
#include <string.h>

#include <sofia-sip/msg_addr.h>

#include "sip/b2bua.h"

static int same_host(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		               &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
	return 0;
}

static unsigned short port_of(const struct sockaddr *a)
{
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_port;
	return ((const struct sockaddr_in6 *)a)->sin6_port;
}

/*
 * Whether the upstream sent this request. Over UDP its source port is its listening port, so
 * address and port must match; over TCP and TLS the source port is ephemeral: address only.
 */
int route_from_upstream(struct sip *s, msg_t *req)
{
	su_addrinfo_t *ai = req ? msg_addrinfo(req) : NULL;
	const struct sockaddr *src, *up = (const struct sockaddr *)&s->upstream_addr;

	if (!ai || !ai->ai_addr || !s->upstream_addrlen)
		return 0;
	src = (const struct sockaddr *)ai->ai_addr;
	if (!same_host(src, up))
		return 0;
	if (ai->ai_protocol == IPPROTO_TCP || ai->ai_protocol == IPPROTO_SCTP)
		return 1;
	return port_of(src) == port_of(up);
}

/* Whether a URI names this server's own SIP address (a request to it would loop). */
int route_is_self(struct sip *s, const url_t *url)
{
	url_t *self = url_hdup(s->home, URL_STRING_MAKE(s->conf.listen)->us_url);
	int same;

	if (!self)
		return 0;
	same = url->url_host && self->url_host && !strcasecmp(url->url_host, self->url_host) &&
	       !strcmp(url_port(url), url_port(self));
	su_free(s->home, self);
	return same;
}
