/*
 * web/router: routes of the server (web/http.h). A pattern's segments are literal text or
 * "{name}"; a request's path is split into segments before they are percent-decoded, so an
 * encoded "/" stays inside its segment. GET /metrics is one of them.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "metrics/metrics.h"
#include "web/http_int.h"

static void route_free(struct route *r)
{
	unsigned i;

	for (i = 0; i < r->nseg; i++)
		free(r->segs[i]);
	free(r->method);
	free(r->pattern);
	free(r);
}

static int route_parse(struct route *r, const char *pattern)
{
	const char *p = pattern, *e;
	size_t n;

	if (*p != '/')
		return EINVAL;
	while (*p == '/') {
		p++;
		e = strchr(p, '/');
		n = e ? (size_t)(e - p) : strlen(p);
		if (r->nseg == SEGS_MAX)
			return E2BIG;
		if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
			r->param[r->nseg] = true;
			r->segs[r->nseg] = strndup(p + 1, n - 2);
		} else {
			if (memchr(p, '{', n) || memchr(p, '}', n))
				return EINVAL;
			r->segs[r->nseg] = strndup(p, n);
			r->literals++;
		}
		if (!r->segs[r->nseg])
			return ENOMEM;
		r->nseg++;
		p += n;
	}
	return 0;
}

int mod_http_route(struct mod_http *h, const char *method, const char *pattern, unsigned flags,
                   mod_http_h *fn, void *arg)
{
	struct route *r, **rp;
	int err = 0;

	if (!h || !method || !pattern || !fn ||
	    (flags != MOD_HTTP_ADMIN && flags != MOD_HTTP_PUBLIC))
		return EINVAL;
	for (r = h->routes; r; r = r->next)
		if (!strcmp(r->method, method) && !strcmp(r->pattern, pattern))
			return EEXIST;
	r = calloc(1, sizeof(*r));
	if (!r)
		return ENOMEM;
	r->flags = flags;
	r->fn = fn;
	r->arg = arg;
	r->method = strdup(method);
	r->pattern = strdup(pattern);
	if (!r->method || !r->pattern) {
		err = ENOMEM;
		goto out;
	}
	err = route_parse(r, pattern);
	if (err)
		goto out;
	for (rp = &h->routes; *rp; rp = &(*rp)->next)
		;
	*rp = r;
	r = NULL;
out:
	if (r)
		route_free(r);
	return err;
}

/* Splits path into segments in place (path is modified). */
static int split(char *path, char **segs, unsigned *nseg)
{
	char *p = path;

	*nseg = 0;
	if (*p != '/')
		return EINVAL;
	while (*p == '/') {
		*p++ = '\0';
		if (*nseg == SEGS_MAX)
			return E2BIG;
		segs[(*nseg)++] = p;
		p += strcspn(p, "/");
	}
	return 0;
}

/* Percent-decodes s in place; EINVAL if it would hold a NUL. Bad escapes stay as they are. */
static int decode(char *s)
{
	return MHD_http_unescape(s) == strlen(s) ? 0 : EINVAL;
}

static bool route_match(const struct route *r, char **segs, unsigned nseg)
{
	unsigned i;

	if (r->nseg != nseg)
		return false;
	for (i = 0; i < nseg; i++) {
		if (r->param[i] ? !segs[i][0] : strcmp(r->segs[i], segs[i]))
			return false;
	}
	return true;
}

/*
 * The matching route with the most literal segments among those face f serves. Segments are split
 * before decoding, so "%2F" stays inside a parameter. Without one for this method, allow gets the
 * methods that would match (for 405).
 */
struct route *web_route_find(struct face *f, const char *method, const char *raw, char **segs,
                             unsigned *nseg, char *allow, size_t allowlen)
{
	struct mod_http *h = f->h;
	struct route *r, *best = NULL;
	char *copy;
	unsigned i;

	allow[0] = '\0';
	copy = strdup(raw);
	if (!copy || split(copy, segs, nseg)) {
		free(copy);
		return NULL;
	}
	for (i = 0; i < *nseg; i++) {
		if (decode(segs[i])) {
			free(copy);
			return NULL;
		}
	}
	for (r = h->routes; r; r = r->next) {
		if (!(r->flags & f->routes) || !route_match(r, segs, *nseg))
			continue;
		if (strcmp(r->method, method)) {
			if (!strstr(allow, r->method)) {
				if (allow[0])
					strncat(allow, ", ", allowlen - strlen(allow) - 1);
				strncat(allow, r->method, allowlen - strlen(allow) - 1);
			}
			continue;
		}
		if (!best || r->literals > best->literals)
			best = r;
	} /* segs point into copy, which goes: keep copies of the parameter values */
	if (best) {
		for (i = 0; i < *nseg; i++)
			segs[i] = best->param[i] ? strdup(segs[i]) : NULL;
		for (i = 0; i < *nseg; i++)
			if (best->param[i] && !segs[i])
				break;
		if (i < *nseg) {
			for (i = 0; i < *nseg; i++)
				free(segs[i]);
			best = NULL;
		}
	}
	free(copy);
	return best;
}

void web_routes_free(struct mod_http *h)
{
	struct route *r;

	while ((r = h->routes)) {
		h->routes = r->next;
		route_free(r);
	}
}

/* ---- GET /metrics (admin) ---- */

static void on_metrics(struct mod_http_req *req, void *arg)
{
	size_t len;
	char *text;

	if (metrics_render(&text, &len)) {
		mod_http_reply_error(req, 500, "out of memory");
		return;
	}
	mod_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

int mod_metrics_route(struct mod_http *h)
{
	return mod_http_route(h, "GET", "/metrics", MOD_HTTP_ADMIN, on_metrics, NULL);
}
