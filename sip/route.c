#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

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
 * Whether the upstream sent this request: its address, and its listening port either as the
 * source port (UDP) or in the top Via's sent-by (TCP and TLS come from ephemeral ports).
 */
int route_from_upstream(struct sip *s, msg_t *req)
{
	su_addrinfo_t *ai = req ? msg_addrinfo(req) : NULL;
	const struct sockaddr *src, *up = (const struct sockaddr *)&s->upstream_addr;
	const sip_t *sip = req ? sip_object(req) : NULL;
	const sip_via_t *via = sip ? sip->sip_via : NULL;
	char want[8];

	if (!ai || !ai->ai_addr || !s->upstream_addrlen)
		return 0;
	src = (const struct sockaddr *)ai->ai_addr;
	if (!same_host(src, up))
		return 0;
	if (port_of(src) == port_of(up))
		return 1;
	snprintf(want, sizeof(want), "%u", ntohs(port_of(up)));
	return via && !strcmp(via->v_port ? via->v_port : "5060", want);
}

/* Whether a URI names this server's own SIP address (a request to it would loop). */
int route_is_self(struct sip *s, const url_t *url)
{
	const url_t *self = s->self;

	return url->url_host && self->url_host && !strcasecmp(url->url_host, self->url_host) &&
	       !strcmp(url_port(url), url_port(self));
}
