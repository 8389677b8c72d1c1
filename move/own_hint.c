/*
 * Proximity hints: a device seen near its user (POST /v1/devices/near) is kept in the store,
 * which every node reads, for [own] near_ttl seconds (purged with the housekeeping after), and
 * read with the AOR's bindings when a push orders its devices: a hint given to one node orders
 * a push on another.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "move/own_int.h"

int own_near(struct sip *s, const char *aor, const char *device, int64_t seen_at)
{
	struct own *o = own_of(s);
	struct store_job *job;
	char key[OWN_KEY_MAX];
	url_t *u;
	su_home_t home[1] = {SU_HOME_INIT(home)};
	int err;

	if (!o || !s->conf.store)
		return ENOTSUP;
	if (!aor || !device || !device[0] || strlen(device) >= STORE_URI_MAX ||
	    strlen(aor) >= OWN_KEY_MAX)
		return EINVAL;
	u = url_make(home, strncasecmp(aor, "sip", 3) ? su_sprintf(home, "sip:%s", aor) : aor);
	err = u ? own_aor_key(u, key, sizeof(key)) : EINVAL;
	su_home_deinit(home);
	if (err)
		return err;
	if (seen_at <= 0)
		seen_at = time(NULL);
	job = calloc(1, sizeof(*job));
	if (!job)
		return ENOMEM;
	job->op = STORE_OP_HINT_PUT;
	snprintf(job->binding.aor, sizeof(job->binding.aor), "%s", key);
	snprintf(job->binding.contact, sizeof(job->binding.contact), "%s", device);
	job->binding.updated_at = seen_at;
	job->binding.expires_at = (seen_at + (int64_t)o->conf.near_ttl) * 1000;
	/* in order with what follows: a push asked after it reads it; a failure is logged */
	err = store_submit(s->conf.store, job, NULL, NULL);
	free(job);
	if (!err)
		LOG_INFO("own", "hint: %s seen near its user (%s)", device, key);
	return err;
}

/* The network of a flow's address: its /24 (IPv4) or /64 (IPv6) as text. */
static int flow_net(const char *flow, char *out, size_t len)
{
	const char *p = flow ? strchr(flow, ':') : NULL;
	char host[64];
	unsigned char a[16];
	size_t n;

	if (!p)
		return EINVAL;
	p++;
	if (*p == '[') {
		const char *e = strchr(++p, ']');

		n = e ? (size_t)(e - p) : 0;
	} else {
		const char *e = strrchr(p, ':');

		n = e ? (size_t)(e - p) : strlen(p);
	}
	if (!n || n >= sizeof(host))
		return EINVAL;
	memcpy(host, p, n);
	host[n] = 0;
	if (inet_pton(AF_INET, host, a) == 1)
		snprintf(out, len, "%u.%u.%u/24", a[0], a[1], a[2]);
	else if (inet_pton(AF_INET6, host, a) == 1)
		snprintf(out, len, "%02x%02x:%02x%02x:%02x%02x:%02x%02x/64", a[0], a[1], a[2], a[3],
		         a[4], a[5], a[6], a[7]);
	else
		return EINVAL;
	return 0;
}

/*
 * How near a device is to its user: 2 + the hint's age rank when a live hint of h (the AOR's,
 * from the store) names it (its contact or its flow), 1 when it registered from the near
 * device's network, else 0.
 */
int own_hint_rank(struct own *o, const struct store_hint *h, size_t nh, const char *aor,
                  const struct store_binding *b, const char *near_flow)
{
	time_t now = time(NULL);
	int64_t best = 0;
	char n1[64], n2[64];

	for (size_t i = 0; i < nh; i++)
		if (h[i].seen_at + (int64_t)o->conf.near_ttl > now && h[i].seen_at > best &&
		    !strcmp(h[i].aor, aor) &&
		    (!strcmp(h[i].device, b->contact) || !strcmp(h[i].device, b->flow)))
			best = h[i].seen_at;
	if (best)
		return 2 + (int)(best - (now - (time_t)o->conf.near_ttl)); /* newer ranks higher */
	if (near_flow && near_flow[0] && !flow_net(near_flow, n1, sizeof(n1)) &&
	    !flow_net(b->flow, n2, sizeof(n2)) && !strcmp(n1, n2))
		return 1;
	return 0;
}
