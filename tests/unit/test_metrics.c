/* module/metrics: the counters and their text exposition. */
#include "config.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "metrics/metrics.h"
#include "tests/unit/leakcheck.h"

TestSuite(metrics, .fini = leakcheck);

static char *render(void)
{
	char *text = NULL;
	size_t len = 0;

	cr_assert_eq(metrics_render(&text, &len), 0);
	cr_assert_eq(strlen(text), len);
	return text;
}

Test(metrics, counts_and_gauges)
{
	metrics_reset();
	metric_inc(METRIC_CALLS_TOTAL);
	metric_inc(METRIC_CALLS_TOTAL);
	metric_add(METRIC_CALLS_TOTAL, 5);
	metric_inc(METRIC_CALLS_ACTIVE);
	metric_inc(METRIC_CALLS_ACTIVE);
	metric_dec(METRIC_CALLS_ACTIVE);
	metric_set(METRIC_MOVES_ACTIVE, 9);
	cr_assert_eq(metric_get(METRIC_CALLS_TOTAL), 7);
	cr_assert_eq(metric_get(METRIC_CALLS_ACTIVE), 1);
	cr_assert_eq(metric_get(METRIC_MOVES_ACTIVE), 9);
	metrics_reset();
	cr_assert_eq(metric_get(METRIC_CALLS_TOTAL), 0);
	/* out-of-range ids are ignored, not a crash */
	metric_inc(METRIC__COUNT);
	cr_assert_eq(metric_get(METRIC__COUNT), 0);
}

Test(metrics, text_format)
{
	char *text;

	metrics_reset();
	metric_add(METRIC_CALLS_TOTAL, 3);
	metric_set(METRIC_CALLS_ACTIVE, 2);
	metric_inc(METRIC_HTTP_RESPONSES_4XX);
	text = render();
	cr_assert(strstr(text, "# HELP qrxfer_calls_total Calls bridged.\n"
	                       "# TYPE qrxfer_calls_total counter\n"
	                       "qrxfer_calls_total 3\n"),
	          "%s", text);
	cr_assert(strstr(text, "# TYPE qrxfer_calls_active gauge\nqrxfer_calls_active 2\n"), "%s",
	          text);
	cr_assert(strstr(text, "qrxfer_http_responses_total{code=\"4xx\"} 1\n"), "%s", text);
	cr_assert(strstr(text, "qrxfer_http_responses_total{code=\"2xx\"} 0\n"), "%s", text);
	free(text);
}

/* Every line is a comment (HELP/TYPE) or "name{labels} value"; each name typed once. */
Test(metrics, every_line_is_valid_exposition)
{
	regex_t sample, help, type;
	char *text, *line, *save = NULL;
	unsigned types = 0, helps = 0, samples = 0;

	cr_assert_eq(regcomp(&sample, "^[a-z_:][a-z0-9_:]*(\\{[a-z_]+=\"[^\"]*\"\\})? -?[0-9]+$",
	                     REG_EXTENDED | REG_NOSUB),
	             0);
	cr_assert_eq(regcomp(&help, "^# HELP [a-z_]+ [^ ].*$", REG_EXTENDED | REG_NOSUB), 0);
	cr_assert_eq(regcomp(&type, "^# TYPE [a-z_]+ (counter|gauge)$", REG_EXTENDED | REG_NOSUB),
	             0);
	metrics_reset();
	text = render();
	cr_assert_eq(text[strlen(text) - 1], '\n');
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!regexec(&help, line, 0, NULL, 0))
			helps++;
		else if (!regexec(&type, line, 0, NULL, 0))
			types++;
		else if (!regexec(&sample, line, 0, NULL, 0))
			samples++;
		else
			cr_assert_fail("bad line: %s", line);
	}
	cr_assert_eq(samples, METRIC__COUNT);
	/* the four http_responses_total series share one HELP and TYPE */
	cr_assert_eq(types, METRIC__COUNT - 3);
	cr_assert_eq(helps, types);
	free(text);
	regfree(&sample);
	regfree(&help);
	regfree(&type);
}
