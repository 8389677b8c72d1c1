/*
 * sofia-sip's own log lines (nta, tport) in ours, a line at a time, as warnings: they name
 * transport errors and refused messages. A datagram that is not SIP ("received garbage") is
 * what every phone's CRLF keep-alive over UDP (RFC 5626 3.5.1) looks like: debug only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sofia-sip/su_log.h>

#include "sip/b2bua.h"

extern su_log_t nta_log[];
extern su_log_t tport_log[];

static char line[512];
static size_t line_len;

static void flush_line(void)
{
	while (line_len && (line[line_len - 1] == '\n' || line[line_len - 1] == '\r'))
		line[--line_len] = 0;
	if (!line_len)
		return;
	if (strstr(line, "received garbage"))
		LOG_DEBUG("sofia", "%s (a CRLF keep-alive, or a datagram that is not SIP)", line);
	else
		LOG_WARN("sofia", "%s", line);
	line_len = 0;
	line[0] = 0;
}

static void sofia_logger(void *stream, char const *fmt, va_list ap)
{
	int n;

	if (line_len < sizeof(line) - 1) {
		n = vsnprintf(line + line_len, sizeof(line) - line_len, fmt, ap);
		if (n > 0)
			line_len += (size_t)n < sizeof(line) - line_len
			                ? (size_t)n
			                : sizeof(line) - line_len - 1;
	}
	if (line_len && line[line_len - 1] == '\n')
		flush_line();
	else if (line_len >= sizeof(line) - 1)
		flush_line();
}

void sofia_log_init(void)
{
	su_log_redirect(nta_log, sofia_logger, NULL);
	su_log_redirect(tport_log, sofia_logger, NULL);
}
