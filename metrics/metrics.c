/*
 * metrics/: a static table of series. Series that share a name (labelled ones) are
 * next to each other, so HELP and TYPE are written once before the first.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"

struct series {
	const char *name;
	const char *labels; /* NULL, or the inside of the braces */
	const char *type;   /* "counter" or "gauge" */
	const char *help;
};

static const struct series table[METRIC__COUNT] = {
    [METRIC_CALLS_TOTAL] = {"qrxfer_calls_total", NULL, "counter", "Calls bridged."},
    [METRIC_CALLS_FAILED_TOTAL] = {"qrxfer_calls_failed_total", NULL, "counter",
                                   "Calls that ended with a failure response."},
    [METRIC_CALLS_ACTIVE] = {"qrxfer_calls_active", NULL, "gauge", "Calls up now."},
    [METRIC_CALLS_ANSWERED_TOTAL] = {"qrxfer_calls_answered_total", NULL, "counter",
                                     "Calls answered (200 to the INVITE)."},
    [METRIC_REGISTERS_TOTAL] = {"qrxfer_registers_total", NULL, "counter",
                                "REGISTER requests relayed to the upstream."},
    [METRIC_SIP_REQUESTS_REJECTED_TOTAL] = {"qrxfer_sip_requests_rejected_total", NULL, "counter",
                                            "SIP requests qrxfer refused itself (not relayed; "
                                            "not those the SIP stack refuses, such as "
                                            "unknown methods)."},
    [METRIC_SIP_UNKNOWN_DIALOGS_REFUSED_TOTAL] =
        {"qrxfer_sip_unknown_dialogs_refused_total", NULL, "counter",
         "Requests in dialogs no node here knew, answered without asking the store: their "
         "source (or all sources) spent its budget of lookups that found nothing."},
    [METRIC_MOVES_TOTAL] = {"qrxfer_moves_total", NULL, "counter", "Moves started."},
    [METRIC_MOVES_COMPLETED_TOTAL] = {"qrxfer_moves_completed_total", NULL, "counter",
                                      "Moves that put the new device in the call."},
    [METRIC_MOVES_FAILED_TOTAL] = {"qrxfer_moves_failed_total", NULL, "counter",
                                   "Moves that failed or were refused (A kept the call)."},
    [METRIC_MOVES_ACTIVE] = {"qrxfer_moves_active", NULL, "gauge",
                             "Moves waiting for a code, a confirm or the re-INVITE."},
    [METRIC_CODES_PAUSED_TOTAL] = {"qrxfer_codes_paused_total", NULL, "counter",
                                   "Numeric codes refused while the node-wide budget of "
                                   "wrong codes was spent."},
    [METRIC_CODES_MADE_ON_LOOP_TOTAL] = {"qrxfer_codes_made_on_loop_total", NULL, "counter",
                                         "Move codes made on the SIP loop because none was "
                                         "ready made ([codes] pool empty or off)."},
    [METRIC_CODES_REJECTED_TOTAL] = {"qrxfer_codes_rejected_total", NULL, "counter",
                                     "Codes presented that were wrong, expired or used."},
    [METRIC_CONFIRMS_TOTAL] = {"qrxfer_confirms_total", NULL, "counter",
                               "Confirmation questions asked."},
    [METRIC_SIP_REQUESTS_TOTAL] = {"qrxfer_sip_requests_total", NULL, "counter",
                                   "SIP requests received."},
    [METRIC_SIP_RESPONSES_TOTAL] = {"qrxfer_sip_responses_total", NULL, "counter",
                                    "SIP responses received."},
    [METRIC_SMS_SENT_TOTAL] = {"qrxfer_sms_sent_total", NULL, "counter",
                               "SMS accepted by the gateway."},
    [METRIC_SMS_FAILED_TOTAL] = {"qrxfer_sms_failed_total", NULL, "counter",
                                 "SMS the gateway refused or never answered."},
    [METRIC_SCANS_TOTAL] = {"qrxfer_scans_total", NULL, "counter", "Images scanned."},
    [METRIC_SCANS_FAILED_TOTAL] = {"qrxfer_scans_failed_total", NULL, "counter",
                                   "Images scanned that showed no live code."},
    [METRIC_HTTP_REQUESTS_TOTAL] = {"qrxfer_http_requests_total", NULL, "counter",
                                    "HTTP requests received."},
    [METRIC_HTTP_RESPONSES_2XX] = {"qrxfer_http_responses_total", "code=\"2xx\"", "counter",
                                   "HTTP responses sent, by status class."},
    [METRIC_HTTP_RESPONSES_3XX] = {"qrxfer_http_responses_total", "code=\"3xx\"", "counter", NULL},
    [METRIC_HTTP_RESPONSES_4XX] = {"qrxfer_http_responses_total", "code=\"4xx\"", "counter", NULL},
    [METRIC_HTTP_RESPONSES_5XX] = {"qrxfer_http_responses_total", "code=\"5xx\"", "counter", NULL},
    [METRIC_HTTP_RATE_LIMITED_TOTAL] = {"qrxfer_http_rate_limited_total", NULL, "counter",
                                        "Public HTTP requests refused with 429."},
    [METRIC_HTTP_CONNECTIONS_REFUSED_TOTAL] = {"qrxfer_http_connections_refused_total", NULL,
                                               "counter",
                                               "HTTP connections refused over per_ip_limit."},
    [METRIC_HTTP_CONNECTIONS_CUT_TOTAL] =
        {"qrxfer_http_connections_cut_total", NULL, "counter",
         "HTTP connections closed for late request headers or body."},
    [METRIC_START_TIME_SECONDS] = {"qrxfer_start_time_seconds", NULL, "gauge",
                                   "When the module started, seconds since the epoch."},
    [METRIC_MEDIA_ANCHORED_TOTAL] = {"qrxfer_media_anchored_total", NULL, "counter",
                                     "Calls whose media rtpengine took ([media] rtpengine)."},
    [METRIC_MEDIA_UNANCHORED_TOTAL] = {"qrxfer_media_unanchored_total", NULL, "counter",
                                       "Calls left unanchored or let go because rtpengine "
                                       "did not answer or refused."},
};

static int64_t values[METRIC__COUNT];

static bool valid(enum metric m)
{
	return (unsigned)m < METRIC__COUNT;
}

void metric_add(enum metric m, int64_t n)
{
	if (valid(m))
		__atomic_fetch_add(&values[m], n, __ATOMIC_RELAXED);
}

void metric_inc(enum metric m)
{
	metric_add(m, 1);
}

void metric_dec(enum metric m)
{
	metric_add(m, -1);
}

void metric_set(enum metric m, int64_t v)
{
	if (valid(m))
		__atomic_store_n(&values[m], v, __ATOMIC_RELAXED);
}

int64_t metric_get(enum metric m)
{
	return valid(m) ? __atomic_load_n(&values[m], __ATOMIC_RELAXED) : 0;
}

void metrics_reset(void)
{
	unsigned i;

	for (i = 0; i < METRIC__COUNT; i++)
		__atomic_store_n(&values[i], 0, __ATOMIC_RELAXED);
}

const char *metric_name(enum metric m, char *buf, size_t len)
{
	if (!valid(m))
		return NULL;
	if (table[m].labels)
		snprintf(buf, len, "%s{%s}", table[m].name, table[m].labels);
	else
		snprintf(buf, len, "%s", table[m].name);
	return buf;
}

int metrics_render(char **textp, size_t *lenp)
{
	char *text = NULL, name[128];
	size_t len = 0;
	FILE *f;
	unsigned i;

	f = open_memstream(&text, &len);
	if (!f)
		return ENOMEM;
	for (i = 0; i < METRIC__COUNT; i++) {
		if (!i || strcmp(table[i].name, table[i - 1].name))
			fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", table[i].name, table[i].help,
			        table[i].name, table[i].type);
		fprintf(f, "%s %" PRId64 "\n", metric_name(i, name, sizeof(name)), metric_get(i));
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
