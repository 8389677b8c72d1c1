/*
 * metrics/: the process's Prometheus counters and gauges, one static table, rendered
 * in the text exposition format (version 0.0.4). Updates are atomic, so workers may count.
 */
#ifndef QRXFER_METRICS_METRICS_H
#define QRXFER_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* One entry a series; the table in metrics.c gives each its name, labels, HELP and TYPE. */
enum metric {
	METRIC_CALLS_TOTAL,
	METRIC_CALLS_FAILED_TOTAL,
	METRIC_CALLS_ACTIVE,
	METRIC_CALLS_ANSWERED_TOTAL,
	METRIC_REGISTERS_TOTAL,
	METRIC_SIP_REQUESTS_REJECTED_TOTAL,
	METRIC_SIP_UNKNOWN_DIALOGS_REFUSED_TOTAL,
	METRIC_MOVES_TOTAL,
	METRIC_MOVES_COMPLETED_TOTAL,
	METRIC_MOVES_FAILED_TOTAL,
	METRIC_MOVES_ACTIVE,
	METRIC_CODES_REJECTED_TOTAL,
	METRIC_CODES_PAUSED_TOTAL,
	METRIC_CODES_MADE_ON_LOOP_TOTAL,
	METRIC_CONFIRMS_TOTAL,
	METRIC_SIP_REQUESTS_TOTAL,
	METRIC_SIP_RESPONSES_TOTAL,
	METRIC_SMS_SENT_TOTAL,
	METRIC_SMS_FAILED_TOTAL,
	METRIC_SCANS_TOTAL,
	METRIC_SCANS_FAILED_TOTAL,
	METRIC_HTTP_REQUESTS_TOTAL,
	METRIC_HTTP_RESPONSES_2XX,
	METRIC_HTTP_RESPONSES_3XX,
	METRIC_HTTP_RESPONSES_4XX,
	METRIC_HTTP_RESPONSES_5XX,
	METRIC_HTTP_RATE_LIMITED_TOTAL,
	METRIC_HTTP_CONNECTIONS_REFUSED_TOTAL,
	METRIC_HTTP_CONNECTIONS_CUT_TOTAL,
	METRIC_START_TIME_SECONDS,
	METRIC_MEDIA_ANCHORED_TOTAL,
	METRIC_MEDIA_UNANCHORED_TOTAL,
	METRIC__COUNT
};

/* Adds one. */
void metric_inc(enum metric m);
/* Subtracts one (gauges). */
void metric_dec(enum metric m);
/* Adds n (negative only for gauges). */
void metric_add(enum metric m, int64_t n);
/* Sets a gauge. */
void metric_set(enum metric m, int64_t v);
/* Current value. */
int64_t metric_get(enum metric m);
/* Zeroes every series (tests, or a fresh module load). */
void metrics_reset(void);
/* The series' name with labels, e.g. qrxfer_http_responses_total{code="2xx"}. */
const char *metric_name(enum metric m, char *buf, size_t len);

/* Renders every series in the text format into a malloc'd NUL-terminated *textp. */
int metrics_render(char **textp, size_t *lenp);

#endif
