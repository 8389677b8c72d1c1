/* The RFC 6035 report reader (move/xr.h): bytes and lines bounded first, then each field. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "move/xr.h"

enum { SEC_HEAD, SEC_LOCAL, SEC_REMOTE };

static int bad(char *why, size_t wlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t wlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, wlen, fmt, ap);
	va_end(ap);
	return EINVAL;
}

/* A percentage 0..100 with at most one decimal ("5", "5.0", "100") in per mille, or -1. */
static int percent(const char *p, size_t n)
{
	int v = 0, digits = 0, tenths = 0;
	size_t i = 0;

	for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
		if (++digits > 3)
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	if (!digits)
		return -1;
	v *= 10;
	if (i < n && p[i] == '.') {
		if (++i >= n || p[i] < '0' || p[i] > '9')
			return -1;
		tenths = p[i++] - '0';
	}
	if (i != n)
		return -1;
	v += tenths;
	return v <= 1000 ? v : -1;
}

/* The NLR= of a PacketLoss value (tokens split by blanks): per mille, -1 absent, -2 bad. */
static int packet_loss_nlr(const char *v, size_t n)
{
	int nlr = -1;
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		s = i;
		while (i < n && v[i] != ' ' && v[i] != '\t')
			i++;
		e = i;
		if (e - s >= 4 && !strncasecmp(v + s, "NLR=", 4)) {
			if (nlr != -1)
				return -2; /* twice */
			nlr = percent(v + s + 4, e - s - 4);
			if (nlr < 0)
				return -2;
		}
	}
	return nlr;
}

static int is_name_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-';
}

int xr_parse(const char *body, size_t len, struct xr_report *r, char *why, size_t wlen)
{
	static const char *const need[] = {"LocalID", "RemoteID", "LocalAddr", "RemoteAddr"};
	static const char *const kinds[] = {"VQSessionReport", "VQIntervalReport", "VQAlertReport"};
	unsigned seen = 0, lines = 0, section = SEC_HEAD, had_local = 0, k;
	size_t i;

	memset(r, 0, sizeof(*r));
	r->local_nlr = -1;
	r->remote_nlr = -1;
	if (!body || !len)
		return bad(why, wlen, "empty body");
	if (len > XR_BODY_MAX)
		return bad(why, wlen, "body over %d bytes", XR_BODY_MAX);
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)body[i];

		if ((ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n') || ch == 0x7f)
			return bad(why, wlen, "control byte 0x%02x at offset %zu", ch, i);
		if (ch == '\r' && (i + 1 >= len || body[i + 1] != '\n'))
			return bad(why, wlen, "CR without LF at offset %zu", i);
	}
	for (i = 0; i < len;) {
		const char *line = body + i, *nl = memchr(line, '\n', len - i), *colon, *v;
		size_t n = nl ? (size_t)(nl - line) : len - i, name_len, vn;

		i += n + (nl ? 1 : 0);
		if (n && line[n - 1] == '\r')
			n--;
		if (!n)
			continue;
		if (++lines > XR_LINES_MAX)
			return bad(why, wlen, "more than %d lines", XR_LINES_MAX);
		if (n > XR_LINE_MAX)
			return bad(why, wlen, "line %u over %d characters", lines, XR_LINE_MAX);
		colon = memchr(line, ':', n);
		name_len = colon ? (size_t)(colon - line) : n;
		if (lines == 1) {
			for (k = 0; k < 3; k++)
				if (name_len == strlen(kinds[k]) &&
				    !memcmp(line, kinds[k], name_len))
					break;
			if (k == 3)
				return bad(
				    why, wlen,
				    "the first line is not VQSessionReport, VQIntervalReport or "
				    "VQAlertReport");
			snprintf(r->kind, sizeof(r->kind), "%s", kinds[k]);
			continue;
		}
		if (!colon || !name_len)
			return bad(why, wlen, "line %u is not \"Name: value\"", lines);
		for (size_t j = 0; j < name_len; j++)
			if (!is_name_char(line[j]))
				return bad(why, wlen, "line %u has a bad character in its name",
				           lines);
		v = colon + 1;
		vn = n - name_len - 1;
		while (vn && (*v == ' ' || *v == '\t'))
			v++, vn--;
		while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
			vn--;
#define IS(s) (name_len == sizeof(s) - 1 && !strncasecmp(line, s, name_len))
		if (IS("LocalMetrics")) {
			if (had_local)
				return bad(why, wlen, "LocalMetrics twice");
			had_local = 1;
			section = SEC_LOCAL;
			continue;
		}
		if (IS("RemoteMetrics")) {
			section = SEC_REMOTE;
			continue;
		}
		if (section == SEC_HEAD && IS("CallID")) {
			if (r->call_id[0])
				return bad(why, wlen, "CallID twice");
			if (!vn || vn > XR_CALL_ID_MAX)
				return bad(why, wlen, "CallID empty or over %d characters",
				           XR_CALL_ID_MAX);
			for (size_t j = 0; j < vn; j++)
				if ((unsigned char)v[j] <= ' ' || (unsigned char)v[j] >= 0x7f)
					return bad(why, wlen,
					           "CallID has a blank or a non-ASCII byte");
			memcpy(r->call_id, v, vn);
			r->call_id[vn] = '\0';
			continue;
		}
		if (section == SEC_HEAD) {
			for (k = 0; k < 4; k++) {
				if (name_len != strlen(need[k]) ||
				    strncasecmp(line, need[k], name_len))
					continue;
				if (seen & (1u << k))
					return bad(why, wlen, "%s twice", need[k]);
				if (!vn)
					return bad(why, wlen, "%s is empty", need[k]);
				seen |= 1u << k;
			}
			continue;
		}
		if (IS("PacketLoss")) {
			const char *sec = section == SEC_LOCAL ? "LocalMetrics" : "RemoteMetrics";
			int nlr = packet_loss_nlr(v, vn);
			int *dst = section == SEC_LOCAL ? &r->local_nlr : &r->remote_nlr;

			if (nlr == -2)
				return bad(
				    why, wlen,
				    "%s PacketLoss: NLR is not a percentage 0-100 (one decimal at "
				    "most), or is given twice",
				    sec);
			if (nlr == -1 && section == SEC_LOCAL)
				return bad(why, wlen, "LocalMetrics PacketLoss has no NLR=");
			if (*dst != -1)
				return bad(why, wlen, "PacketLoss twice in %s", sec);
			*dst = nlr;
		}
#undef IS
	}
	if (!r->call_id[0])
		return bad(why, wlen, "no CallID line");
	for (k = 0; k < 4; k++)
		if (!(seen & (1u << k)))
			return bad(why, wlen, "no %s line", need[k]);
	if (!had_local)
		return bad(why, wlen, "no LocalMetrics section");
	if (r->local_nlr < 0)
		return bad(why, wlen, "LocalMetrics has no PacketLoss line");
	return 0;
}
