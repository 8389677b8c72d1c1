/* util/: parts every layer shares (log, hash, buffer, worker queue), built on nothing of ours. */
#ifndef QRXFER_UTIL_LOG_H
#define QRXFER_UTIL_LOG_H

#include <time.h>

/* One log line per event, to stderr: "HH:MM:SS.mmm level qrxfer: part: message". */
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Lines above this level are dropped; [log] level sets it. */
extern int log_level;

void log_line(enum log_level level, const char *part, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_ERR(part, ...)   log_line(LOG_LEVEL_ERROR, part, __VA_ARGS__)
#define LOG_WARN(part, ...)  log_line(LOG_LEVEL_WARN, part, __VA_ARGS__)
#define LOG_INFO(part, ...)  log_line(LOG_LEVEL_INFO, part, __VA_ARGS__)
#define LOG_DEBUG(part, ...) log_line(LOG_LEVEL_DEBUG, part, __VA_ARGS__)

/*
 * A line that a stranger can make us write thousands of times a second: at most `per_second`
 * lines each second, then one line counting the rest. Zero-initialise; one per kind of line;
 * not thread-safe (use it from the thread that owns it).
 */
struct log_limit {
	unsigned per_second;
	time_t second;
	unsigned logged, quiet;
};

void log_limited(struct log_limit *l, enum log_level level, const char *part, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
