#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "util/log.h"

int log_level = LOG_LEVEL_INFO;

static const char *const names[] = {"error", "warn", "info", "debug"};

static void vlog_line(enum log_level level, const char *part, const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	vsnprintf(line, sizeof(line), fmt, ap);
	/* One fprintf per line keeps lines whole when stderr is shared. */
	fprintf(stderr, "%02d:%02d:%02d.%03ld %s qrxfer: %s: %s\n", tm.tm_hour, tm.tm_min,
	        tm.tm_sec, ts.tv_nsec / 1000000, names[level], part, line);
}

void log_line(enum log_level level, const char *part, const char *fmt, ...)
{
	va_list ap;

	if ((int)level > log_level)
		return;
	va_start(ap, fmt);
	vlog_line(level, part, fmt, ap);
	va_end(ap);
}

void log_limited(struct log_limit *l, enum log_level level, const char *part, const char *fmt, ...)
{
	time_t now = time(NULL);
	va_list ap;

	if ((int)level > log_level)
		return;
	if (now != l->second) {
		if (l->quiet)
			log_line(level, part,
			         "%u more such lines in the second before (not logged)", l->quiet);
		l->second = now;
		l->logged = l->quiet = 0;
	}
	if (l->logged >= (l->per_second ? l->per_second : 10)) {
		l->quiet++;
		return;
	}
	l->logged++;
	va_start(ap, fmt);
	vlog_line(level, part, fmt, ap);
	va_end(ap);
}
