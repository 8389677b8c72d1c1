/*
 * module/metrics: the process's Prometheus counters and gauges, one static table, rendered
 * in the text exposition format (version 0.0.4). Updates are atomic, so workers may count.
 */
#ifndef QRXFER_MODULE_METRICS_H
#define QRXFER_MODULE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct mod_http;

/* One entry a series; the table in metrics.c gives each its name, labels, HELP and TYPE. */
enum mod_metric {
	MOD_METRIC_CALLS_TOTAL,
	MOD_METRIC_CALLS_FAILED_TOTAL,
	MOD_METRIC_CALLS_ACTIVE,
	MOD_METRIC_MOVES_TOTAL,
	MOD_METRIC_MOVES_COMPLETED_TOTAL,
	MOD_METRIC_MOVES_FAILED_TOTAL,
	MOD_METRIC_MOVES_ACTIVE,
	MOD_METRIC_CODES_REJECTED_TOTAL,
	MOD_METRIC_CODES_PAUSED_TOTAL,
	MOD_METRIC_CONFIRMS_TOTAL,
	MOD_METRIC_SIP_REQUESTS_TOTAL,
	MOD_METRIC_SIP_RESPONSES_TOTAL,
	MOD_METRIC_SMS_SENT_TOTAL,
	MOD_METRIC_SMS_FAILED_TOTAL,
	MOD_METRIC_SCANS_TOTAL,
	MOD_METRIC_SCANS_FAILED_TOTAL,
	MOD_METRIC_HTTP_REQUESTS_TOTAL,
	MOD_METRIC_HTTP_RESPONSES_2XX,
	MOD_METRIC_HTTP_RESPONSES_3XX,
	MOD_METRIC_HTTP_RESPONSES_4XX,
	MOD_METRIC_HTTP_RESPONSES_5XX,
	MOD_METRIC_HTTP_RATE_LIMITED_TOTAL,
	MOD_METRIC_HTTP_CONNECTIONS_REFUSED_TOTAL,
	MOD_METRIC_HTTP_CONNECTIONS_CUT_TOTAL,
	MOD_METRIC_START_TIME_SECONDS,
	MOD_METRIC__COUNT
};

/* Adds one. */
void mod_metric_inc(enum mod_metric m);
/* Subtracts one (gauges). */
void mod_metric_dec(enum mod_metric m);
/* Adds n (negative only for gauges). */
void mod_metric_add(enum mod_metric m, int64_t n);
/* Sets a gauge. */
void mod_metric_set(enum mod_metric m, int64_t v);
/* Current value. */
int64_t mod_metric_get(enum mod_metric m);
/* Zeroes every series (tests, or a fresh module load). */
void mod_metrics_reset(void);
/* The series' name with labels, e.g. qrxfer_http_responses_total{code="2xx"}. */
const char *mod_metric_name(enum mod_metric m, char *buf, size_t len);

/* Renders every series in the text format into a malloc'd NUL-terminated *textp. */
int mod_metrics_render(char **textp, size_t *lenp);
/* Adds GET /metrics (admin) to the server. */
int mod_metrics_route(struct mod_http *h);

#endif
