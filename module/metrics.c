/*
 * module/metrics: a static table of series. Series that share a name (labelled ones) are
 * next to each other, so HELP and TYPE are written once before the first.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module/http.h"
#include "module/metrics.h"

struct series {
	const char *name;
	const char *labels; /* NULL, or the inside of the braces */
	const char *type;   /* "counter" or "gauge" */
	const char *help;
};

static const struct series table[MOD_METRIC__COUNT] = {
    [MOD_METRIC_CALLS_TOTAL] = {"qrxfer_calls_total", NULL, "counter", "Calls bridged."},
    [MOD_METRIC_CALLS_FAILED_TOTAL] = {"qrxfer_calls_failed_total", NULL, "counter",
                                       "Calls that ended with a failure response."},
    [MOD_METRIC_CALLS_ACTIVE] = {"qrxfer_calls_active", NULL, "gauge", "Calls up now."},
    [MOD_METRIC_MOVES_TOTAL] = {"qrxfer_moves_total", NULL, "counter", "Moves started."},
    [MOD_METRIC_MOVES_COMPLETED_TOTAL] = {"qrxfer_moves_completed_total", NULL, "counter",
                                          "Moves that put the new device in the call."},
    [MOD_METRIC_MOVES_FAILED_TOTAL] = {"qrxfer_moves_failed_total", NULL, "counter",
                                       "Moves that failed or were refused (A kept the call)."},
    [MOD_METRIC_MOVES_ACTIVE] = {"qrxfer_moves_active", NULL, "gauge",
                                 "Moves waiting for a code, a confirm or the re-INVITE."},
    [MOD_METRIC_CODES_PAUSED_TOTAL] = {"qrxfer_codes_paused_total", NULL, "counter",
                                       "Numeric codes refused while the node-wide budget of "
                                       "wrong codes was spent."},
    [MOD_METRIC_CODES_REJECTED_TOTAL] = {"qrxfer_codes_rejected_total", NULL, "counter",
                                         "Codes presented that were wrong, expired or used."},
    [MOD_METRIC_CONFIRMS_TOTAL] = {"qrxfer_confirms_total", NULL, "counter",
                                   "Confirmation questions asked."},
    [MOD_METRIC_SIP_REQUESTS_TOTAL] = {"qrxfer_sip_requests_total", NULL, "counter",
                                       "SIP requests received."},
    [MOD_METRIC_SIP_RESPONSES_TOTAL] = {"qrxfer_sip_responses_total", NULL, "counter",
                                        "SIP responses received."},
    [MOD_METRIC_SMS_SENT_TOTAL] = {"qrxfer_sms_sent_total", NULL, "counter",
                                   "SMS accepted by the gateway."},
    [MOD_METRIC_SMS_FAILED_TOTAL] = {"qrxfer_sms_failed_total", NULL, "counter",
                                     "SMS the gateway refused or never answered."},
    [MOD_METRIC_SCANS_TOTAL] = {"qrxfer_scans_total", NULL, "counter", "Images scanned."},
    [MOD_METRIC_SCANS_FAILED_TOTAL] = {"qrxfer_scans_failed_total", NULL, "counter",
                                       "Images without the expected code."},
    [MOD_METRIC_HTTP_REQUESTS_TOTAL] = {"qrxfer_http_requests_total", NULL, "counter",
                                        "HTTP requests received."},
    [MOD_METRIC_HTTP_RESPONSES_2XX] = {"qrxfer_http_responses_total", "code=\"2xx\"", "counter",
                                       "HTTP responses sent, by status class."},
    [MOD_METRIC_HTTP_RESPONSES_3XX] = {"qrxfer_http_responses_total", "code=\"3xx\"", "counter",
                                       NULL},
    [MOD_METRIC_HTTP_RESPONSES_4XX] = {"qrxfer_http_responses_total", "code=\"4xx\"", "counter",
                                       NULL},
    [MOD_METRIC_HTTP_RESPONSES_5XX] = {"qrxfer_http_responses_total", "code=\"5xx\"", "counter",
                                       NULL},
    [MOD_METRIC_HTTP_RATE_LIMITED_TOTAL] = {"qrxfer_http_rate_limited_total", NULL, "counter",
                                            "Public HTTP requests refused with 429."},
    [MOD_METRIC_HTTP_CONNECTIONS_REFUSED_TOTAL] = {"qrxfer_http_connections_refused_total", NULL,
                                                   "counter",
                                                   "HTTP connections refused over per_ip_limit."},
    [MOD_METRIC_HTTP_CONNECTIONS_CUT_TOTAL] =
        {"qrxfer_http_connections_cut_total", NULL, "counter",
         "HTTP connections closed for late request headers or body."},
    [MOD_METRIC_START_TIME_SECONDS] = {"qrxfer_start_time_seconds", NULL, "gauge",
                                       "When the module started, seconds since the epoch."},
};

static int64_t values[MOD_METRIC__COUNT];

static bool valid(enum mod_metric m)
{
	return (unsigned)m < MOD_METRIC__COUNT;
}

void mod_metric_add(enum mod_metric m, int64_t n)
{
	if (valid(m))
		__atomic_fetch_add(&values[m], n, __ATOMIC_RELAXED);
}

void mod_metric_inc(enum mod_metric m)
{
	mod_metric_add(m, 1);
}

void mod_metric_dec(enum mod_metric m)
{
	mod_metric_add(m, -1);
}

void mod_metric_set(enum mod_metric m, int64_t v)
{
	if (valid(m))
		__atomic_store_n(&values[m], v, __ATOMIC_RELAXED);
}

int64_t mod_metric_get(enum mod_metric m)
{
	return valid(m) ? __atomic_load_n(&values[m], __ATOMIC_RELAXED) : 0;
}

void mod_metrics_reset(void)
{
	unsigned i;

	for (i = 0; i < MOD_METRIC__COUNT; i++)
		__atomic_store_n(&values[i], 0, __ATOMIC_RELAXED);
}

const char *mod_metric_name(enum mod_metric m, char *buf, size_t len)
{
	if (!valid(m))
		return NULL;
	if (table[m].labels)
		snprintf(buf, len, "%s{%s}", table[m].name, table[m].labels);
	else
		snprintf(buf, len, "%s", table[m].name);
	return buf;
}

int mod_metrics_render(char **textp, size_t *lenp)
{
	char *text = NULL, name[128];
	size_t len = 0;
	FILE *f;
	unsigned i;

	f = open_memstream(&text, &len);
	if (!f)
		return ENOMEM;
	for (i = 0; i < MOD_METRIC__COUNT; i++) {
		if (!i || strcmp(table[i].name, table[i - 1].name))
			fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", table[i].name, table[i].help,
			        table[i].name, table[i].type);
		fprintf(f, "%s %" PRId64 "\n", mod_metric_name(i, name, sizeof(name)),
		        mod_metric_get(i));
	}
	if (fclose(f)) {
		free(text);
		return ENOMEM;
	}
	*textp = text;
	if (lenp)
		*lenp = len;
	return 0;
}

static void on_metrics(struct mod_http_req *req, void *arg)
{
	size_t len;
	char *text;

	if (mod_metrics_render(&text, &len)) {
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
