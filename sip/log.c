#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "sip/log.h"

int sip_log_level = SIP_LOG_INFO;

void sip_log(enum sip_log_level level, const char *part, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if ((int)level > sip_log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line keeps lines whole when stderr is shared. */
	fprintf(stderr, "%02d:%02d:%02d.%03ld %s qrxfer: %s: %s\n", tm.tm_hour, tm.tm_min,
	        tm.tm_sec, ts.tv_nsec / 1000000, names[level], part, line);
}
