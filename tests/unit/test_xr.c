/*
 * What a phone (or a stranger) PUBLISHes as an RFC 6035 report (move/xr_parse.c): the fields
 * the move uses, the bounds, and the reason each malformed body is refused with.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "move/xr.h"

#define GOOD                                                                                       \
	"VQSessionReport: CallTerm\r\n"                                                            \
	"CallID: 6dg37f1890463@b.example\r\n"                                                      \
	"LocalID: Bob <sip:bob@b.example>\r\n"                                                     \
	"RemoteID: <sip:far@c.example>\r\n"                                                        \
	"OrigID: <sip:bob@b.example>\r\n"                                                          \
	"LocalAddr: IP=10.10.1.100 PORT=5000 SSRC=0x2468abcd\r\n"                                  \
	"RemoteAddr: IP=11.1.1.150 PORT=5002 SSRC=0x1357ef01\r\n"                                  \
	"LocalMetrics:\r\n"                                                                        \
	"Timestamps: START=2004-10-10T18:23:43Z STOP=2004-10-01T18:26:02Z\r\n"                     \
	"PacketLoss: NLR=5.0 JDR=2.0\r\n"                                                          \
	"RemoteMetrics:\r\n"                                                                       \
	"PacketLoss: NLR=100 JDR=0\r\n"

static int parse(const char *body, struct xr_report *r, char *why)
{
	return xr_parse(body, strlen(body), r, why, 160);
}

/* body with the first occurrence of from replaced by to must be refused naming want. */
static void refused(const char *from, const char *to, const char *want)
{
	char body[8192], why[160] = "";
	struct xr_report r;
	const char *p = strstr(GOOD, from);

	cr_assert(p, "%s is in the good body", from);
	snprintf(body, sizeof(body), "%.*s%s%s", (int)(p - GOOD), GOOD, to, p + strlen(from));
	cr_expect_eq(parse(body, &r, why), EINVAL, "[%s] -> [%s] is refused", from, to);
	cr_expect(strstr(why, want), "[%s] -> [%s]: why is [%s], not [%s]", from, to, why, want);
}

Test(xr, a_session_report)
{
	struct xr_report r;
	char why[160] = "";

	cr_assert_eq(parse(GOOD, &r, why), 0, "%s", why);
	cr_expect_str_eq(r.kind, "VQSessionReport");
	cr_expect_str_eq(r.call_id, "6dg37f1890463@b.example");
	cr_expect_eq(r.local_nlr, 50, "5.0%% is 50 per mille");
	cr_expect_eq(r.remote_nlr, 1000, "100%% is 1000 per mille");
}

Test(xr, lf_lines_and_no_remote_metrics)
{
	struct xr_report r;
	char why[160] = "";
	const char *b = "VQIntervalReport\nCallID: x\nLocalID: a\nRemoteID: b\nLocalAddr: IP=1\n"
	                "RemoteAddr: IP=2\nLocalMetrics:\nPacketLoss: JDR=0 NLR=0\n";

	cr_assert_eq(parse(b, &r, why), 0, "%s", why);
	cr_expect_eq(r.local_nlr, 0);
	cr_expect_eq(r.remote_nlr, -1, "not said");
}

Test(xr, malformed)
{
	refused("VQSessionReport: CallTerm", "VQFoo", "the first line is not");
	refused("CallID: 6dg37f1890463@b.example\r\n", "", "no CallID line");
	refused("CallID: 6dg37f1890463@b.example", "CallID: a b", "CallID has a blank");
	refused("CallID: 6dg37f1890463@b.example", "CallID:", "CallID empty");
	refused("OrigID", "CallID: again\r\nOrigID", "CallID twice");
	refused("LocalID: Bob <sip:bob@b.example>\r\n", "", "no LocalID line");
	refused("RemoteAddr: IP=11.1.1.150 PORT=5002 SSRC=0x1357ef01\r\n", "", "no RemoteAddr");
	refused("LocalAddr: IP=10.10.1.100", "LocalAddr: x\r\nLocalAddr: IP=10.10.1.100",
	        "LocalAddr twice");
	refused("LocalMetrics:\r\n", "", "no LocalMetrics section");
	refused("NLR=5.0", "NLR=5.05", "NLR is not a percentage");
	refused("NLR=5.0", "NLR=100.1", "NLR is not a percentage");
	refused("NLR=5.0", "NLR=-1", "NLR is not a percentage");
	refused("NLR=5.0", "NLR=", "NLR is not a percentage");
	refused("NLR=5.0", "NLR=1 NLR=2", "given twice");
	refused("NLR=5.0 JDR=2.0", "JDR=2.0", "has no NLR=");
	refused("Timestamps", "PacketLoss: NLR=1\r\nTimestamps", "PacketLoss twice");
	refused("OrigID", "Orig ID", "bad character in its name");
	refused("OrigID: <sip:bob@b.example>", "OrigID bob", "is not \"Name: value\"");
	refused("OrigID", "Orig\x01ID", "control byte 0x01");
	refused("LocalMetrics:\r\n", "LocalMetrics:\r", "CR without LF");
}

Test(xr, bounds)
{
	static char body[XR_BODY_MAX + 64];
	struct xr_report r;
	char why[160] = "";
	size_t n = (size_t)snprintf(body, sizeof(body), "%s", GOOD);

	cr_expect_eq(xr_parse(NULL, 0, &r, why, sizeof(why)), EINVAL);
	cr_expect(strstr(why, "empty body"));
	cr_expect_eq(xr_parse("\r\n\r\n", 4, &r, why, sizeof(why)), EINVAL, "blank lines only");
	cr_expect_eq(xr_parse("VQ\0Session", 10, &r, why, sizeof(why)), EINVAL);
	cr_expect(strstr(why, "control byte 0x00"), "%s", why);
	/* exactly XR_BODY_MAX bytes (padding lines under 512 characters) is read; one more not */
	while (n < XR_BODY_MAX) {
		size_t left = XR_BODY_MAX - n, len = left > 500 ? 256 : left;

		memcpy(body + n, "X-Pad: ", 7);
		memset(body + n + 7, 'y', len - 9);
		memcpy(body + n + len - 2, "\r\n", 2);
		n += len;
	}
	cr_assert_eq(n, XR_BODY_MAX);
	cr_expect_eq(xr_parse(body, n, &r, why, sizeof(why)), 0, "%zu bytes: %s", n, why);
	body[n] = 'y';
	cr_expect_eq(xr_parse(body, n + 1, &r, why, sizeof(why)), EINVAL);
	cr_expect(strstr(why, "body over 4096 bytes"), "%s", why);
}

Test(xr, lines_bounded)
{
	static char body[XR_BODY_MAX];
	struct xr_report r;
	char why[160] = "";
	int n = snprintf(body, sizeof(body), "%s", GOOD);

	for (int i = 0; i < 60; i++)
		n += snprintf(body + n, sizeof(body) - (size_t)n, "X: y\r\n");
	cr_expect_eq(xr_parse(body, (size_t)n, &r, why, sizeof(why)), EINVAL);
	cr_expect(strstr(why, "more than 64 lines"), "%s", why);
	n = snprintf(body, sizeof(body), "%sX: %0600d\r\n", GOOD, 0);
	cr_expect_eq(xr_parse(body, (size_t)n, &r, why, sizeof(why)), EINVAL);
	cr_expect(strstr(why, "over 512 characters"), "%s", why);
}
