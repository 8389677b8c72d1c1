/* mod_qrxfer: the module descriptor, its configuration, and the wiring of the parts. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "config.h"
#include "codes/code.h"
#include "web/api.h"
#include "web/http.h"
#include "metrics/metrics.h"
#include "host/mod.h"
#include "client/sms.h"
#include "move/move.h"
#include "move/react.h"
#include "util/log.h"
#include "sip/sip.h"
#include "move/context.h"
#include "move/own.h"
#include "sql/store.h"

static struct {
	char *sip_listen, *sip_tls_listen, *sip_tls_cert_dir, *sip_domain, *sip_upstream;
	int max_call_duration, register_timeout, udp_rcvbuf, on_stop;
	char *http_listen, *http_public_url, *http_admin_token_file, *http_admin_listen;
	int http_admin_loopback_only, http_body_max, http_rate, http_burst, http_qr_px;
	int http_per_ip_limit, http_header_timeout, http_body_timeout;
	char *store_url;
	int store_keep_ended, store_timeout, store_lease, store_call_state, store_answer_group,
	    store_hold_answer;
	int codes_ttl, codes_digits, codes_qr_uri, codes_max_failures, codes_send_qr_image;
	int codes_lockout, codes_numeric_budget, codes_budget_window;
	int codes_send_barcode_image, codes_pool;
	char *move_dial_domains;
	char *codes_hmac_key_file;
	char *move_feature_code;
	int move_scans, move_scan_queue, move_scan_rate, move_scan_burst;
	int move_scan_max_bytes, move_scan_max_pixels;
	int confirm_policy, confirm_channel, confirm_near_channel, confirm_far_channel;
	int confirm_timeout;
	char *sms_url, *sms_auth_header_file, *sms_from, *sms_body_template;
	char *sms_twilio_auth_token_file, *sms_webhook_secret_file, *sms_webhook_url;
	int sms_timeout, sms_retries;
	char *media_rtpengine;
	int media_verify_timeout, move_undo_secs;
	int media_verify_xr;
	int own_resume_ttl, meet_channel, context_summary, context_far_call_info;
	char *meet_url_template, *meet_conference_uri;
	char *own_pull_code, *own_push_code;
	int own_confirm, own_near_ttl, own_near_ring, own_ring_timeout;
	char *react_dtmf;
	int react_rate, react_burst, react_listeners, react_per_address, react_poll_secs;
} conf;

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const qr_uris[] = {"sip", "https", NULL};
static const char *const policies[] = {"none", "near", "far", "both", NULL};
static const char *const channels[] = {"sip", "sms", NULL};
static const char *const summaries[] = {"no", "yes", "auto", NULL};
static const char *const side_channels[] = {"default", "sip", "sms", NULL};
static const char *const scan_policies[] = {"none", "both", NULL};
static const char *const on_stops[] = {"keep", "end", NULL};

#define R   MOD_CONF_RELOAD
#define REQ MOD_CONF_REQUIRED

static const struct mod_conf_param params[] = {
    {"log", "level", MOD_CONF_ENUM, &log_level, "info", .choices = log_levels, .flags = R},
    {"sip", "listen", MOD_CONF_STR, &conf.sip_listen, "sip:127.0.0.1:5060", .flags = REQ},
    {"sip", "tls_listen", MOD_CONF_STR, &conf.sip_tls_listen, ""},
    {"sip", "tls_cert_dir", MOD_CONF_STR, &conf.sip_tls_cert_dir, ""},
    {"sip", "domain", MOD_CONF_STR, &conf.sip_domain, "qrxfer.invalid", .flags = REQ},
    {"sip", "upstream", MOD_CONF_STR, &conf.sip_upstream, "sip:127.0.0.1:5070", .flags = REQ},
    {"sip", "max_call_duration", MOD_CONF_INT, &conf.max_call_duration, "14400", 0, 604800},
    {"sip", "register_timeout", MOD_CONF_INT, &conf.register_timeout, "32", 1, 300},
    {"sip", "udp_rcvbuf", MOD_CONF_INT, &conf.udp_rcvbuf, "4194304", 0, 268435456},
    {"sip", "on_stop", MOD_CONF_ENUM, &conf.on_stop, "keep", .choices = on_stops},
    {"http", "listen", MOD_CONF_STR, &conf.http_listen, "127.0.0.1:8080"},
    {"http", "public_url", MOD_CONF_STR, &conf.http_public_url, "http://127.0.0.1:8080"},
    {"http", "admin_token_file", MOD_CONF_STR, &conf.http_admin_token_file,
     QRXFER_SYSCONFDIR "/admin.token"},
    {"http", "admin_loopback_only", MOD_CONF_BOOL, &conf.http_admin_loopback_only, "yes"},
    {"http", "body_max", MOD_CONF_INT, &conf.http_body_max, "8388608", 1024, 268435456},
    {"http", "rate", MOD_CONF_INT, &conf.http_rate, "10", 1, 100000},
    {"http", "burst", MOD_CONF_INT, &conf.http_burst, "20", 1, 100000},
    {"http", "qr_px", MOD_CONF_INT, &conf.http_qr_px, "8", 1, 40},
    {"http", "admin_listen", MOD_CONF_STR, &conf.http_admin_listen, ""},
    {"http", "per_ip_limit", MOD_CONF_INT, &conf.http_per_ip_limit, "16", 0, 100000},
    {"http", "header_timeout", MOD_CONF_INT, &conf.http_header_timeout, "10", 1, 3600},
    {"http", "body_timeout", MOD_CONF_INT, &conf.http_body_timeout, "30", 1, 3600},
    {"store", "url", MOD_CONF_STR, &conf.store_url, "sqlite:///var/lib/qrxfer/qrxfer.db",
     .flags = REQ},
    {"store", "keep_ended", MOD_CONF_INT, &conf.store_keep_ended, "2592000", 0, 315360000,
     .flags = R},
    {"store", "timeout", MOD_CONF_INT, &conf.store_timeout, "5", 1, 3600},
    {"store", "lease", MOD_CONF_INT, &conf.store_lease, "5", 2, 3600},
    {"store", "hold_answer", MOD_CONF_BOOL, &conf.store_hold_answer, "no"},
    {"store", "answer_group_ms", MOD_CONF_INT, &conf.store_answer_group, "20", 0, 200},
    {"store", "call_state", MOD_CONF_BOOL, &conf.store_call_state, "yes"},
    {"react", "dtmf", MOD_CONF_STR, &conf.react_dtmf,
     "*1=\xf0\x9f\x91\x8d,*2=\xf0\x9f\x91\x8f,*3=\xf0\x9f\x98\x82,*4=\xe2\x9d\xa4\xef\xb8\x8f,"
     "*5=\xf0\x9f\x98\xae"},
    {"react", "rate", MOD_CONF_INT, &conf.react_rate, "2", 1, 1000},
    {"react", "burst", MOD_CONF_INT, &conf.react_burst, "5", 1, 1000},
    {"react", "listeners", MOD_CONF_INT, &conf.react_listeners, "32", 1, 10000},
    {"react", "per_address", MOD_CONF_INT, &conf.react_per_address, "4", 1, 10000},
    {"react", "poll_secs", MOD_CONF_INT, &conf.react_poll_secs, "25", 1, 300},
    {"codes", "ttl", MOD_CONF_INT, &conf.codes_ttl, "120", 10, 3600, .flags = R},
    {"codes", "digits", MOD_CONF_INT, &conf.codes_digits, "8", 6, 10, .flags = R},
    {"codes", "qr_uri", MOD_CONF_ENUM, &conf.codes_qr_uri, "sip", .choices = qr_uris, .flags = R},
    {"codes", "hmac_key_file", MOD_CONF_STR, &conf.codes_hmac_key_file,
     QRXFER_SYSCONFDIR "/hmac.key"},
    {"codes", "max_failures", MOD_CONF_INT, &conf.codes_max_failures, "5", 1, 100},
    {"codes", "lockout", MOD_CONF_INT, &conf.codes_lockout, "60", 1, 86400},
    {"codes", "numeric_budget", MOD_CONF_INT, &conf.codes_numeric_budget, "30", 1, 100000},
    {"codes", "budget_window", MOD_CONF_INT, &conf.codes_budget_window, "60", 1, 3600},
    {"codes", "send_qr_image", MOD_CONF_BOOL, &conf.codes_send_qr_image, "yes", .flags = R},
    {"codes", "send_barcode_image", MOD_CONF_BOOL, &conf.codes_send_barcode_image, "no",
     .flags = R},
    {"codes", "pool", MOD_CONF_INT, &conf.codes_pool, "8", 0, 64},
    {"move", "feature_code", MOD_CONF_STR, &conf.move_feature_code, "*8"},
    {"move", "dial_domains", MOD_CONF_STR, &conf.move_dial_domains, ""},
    {"move", "scans", MOD_CONF_ENUM, &conf.move_scans, "none", .choices = scan_policies,
     .flags = R},
    {"move", "scan_queue", MOD_CONF_INT, &conf.move_scan_queue, "8", 1, 1024, .flags = R},
    {"move", "scan_rate", MOD_CONF_INT, &conf.move_scan_rate, "2", 1, 10000, .flags = R},
    {"move", "scan_burst", MOD_CONF_INT, &conf.move_scan_burst, "5", 1, 10000, .flags = R},
    {"move", "scan_max_bytes", MOD_CONF_INT, &conf.move_scan_max_bytes, "4194304", 1024, 16777216,
     .flags = R},
    {"move", "scan_max_pixels", MOD_CONF_INT, &conf.move_scan_max_pixels, "12000000", 4096,
     40000000, .flags = R},
    {"confirm", "policy", MOD_CONF_ENUM, &conf.confirm_policy, "none", .choices = policies,
     .flags = R},
    {"confirm", "channel", MOD_CONF_ENUM, &conf.confirm_channel, "sip", .choices = channels,
     .flags = R},
    {"confirm", "near_channel", MOD_CONF_ENUM, &conf.confirm_near_channel, "default",
     .choices = side_channels, .flags = R},
    {"confirm", "far_channel", MOD_CONF_ENUM, &conf.confirm_far_channel, "default",
     .choices = side_channels, .flags = R},
    {"confirm", "timeout", MOD_CONF_INT, &conf.confirm_timeout, "30", 1, 600, .flags = R},
    {"sms", "url", MOD_CONF_STR, &conf.sms_url, ""},
    {"sms", "auth_header_file", MOD_CONF_STR, &conf.sms_auth_header_file, ""},
    {"sms", "from", MOD_CONF_STR, &conf.sms_from, ""},
    {"sms", "body_template", MOD_CONF_STR, &conf.sms_body_template,
     "To={to}&From={from}&Body={text}"},
    {"sms", "timeout", MOD_CONF_INT, &conf.sms_timeout, "10", 1, 120},
    {"sms", "retries", MOD_CONF_INT, &conf.sms_retries, "3", 0, 10},
    {"sms", "twilio_auth_token_file", MOD_CONF_STR, &conf.sms_twilio_auth_token_file, ""},
    {"sms", "webhook_secret_file", MOD_CONF_STR, &conf.sms_webhook_secret_file, ""},
    {"sms", "webhook_url", MOD_CONF_STR, &conf.sms_webhook_url, ""},
    {"media", "rtpengine", MOD_CONF_STR, &conf.media_rtpengine, ""},
    {"media", "verify_timeout", MOD_CONF_INT, &conf.media_verify_timeout, "5", 1, 60},
    {"media", "verify_xr", MOD_CONF_BOOL, &conf.media_verify_xr, "no"},
    {"move", "undo_secs", MOD_CONF_INT, &conf.move_undo_secs, "10", 0, 3600},
    {"own", "resume_ttl", MOD_CONF_INT, &conf.own_resume_ttl, "3600", 0, 86400},
    {"context", "summary", MOD_CONF_ENUM, &conf.context_summary, "auto", .choices = summaries},
    {"context", "far_call_info", MOD_CONF_BOOL, &conf.context_far_call_info, "no"},
    {"meet", "url_template", MOD_CONF_STR, &conf.meet_url_template, ""},
    {"meet", "conference_uri", MOD_CONF_STR, &conf.meet_conference_uri, ""},
    {"meet", "channel", MOD_CONF_ENUM, &conf.meet_channel, "sip", .choices = channels},
    {"own", "pull_code", MOD_CONF_STR, &conf.own_pull_code, "*11"},
    {"own", "push_code", MOD_CONF_STR, &conf.own_push_code, "*81"},
    {"own", "confirm", MOD_CONF_BOOL, &conf.own_confirm, "no"},
    {"own", "near_ttl", MOD_CONF_INT, &conf.own_near_ttl, "300", 1, 86400},
    {"own", "near_ring", MOD_CONF_INT, &conf.own_near_ring, "8", 0, 120},
    {"own", "ring_timeout", MOD_CONF_INT, &conf.own_ring_timeout, "30", 1, 300},
    {NULL},
};

static const struct mod_host *host;
static struct sip *sip;
static struct store *store;
static struct code_keyring *keys;
static struct mod_http *http;
static struct mod_api *api;
static struct mod_sms *sms;
static su_timer_t *tick;
static struct sip_hooks hooks;
static char *admin_token, *twilio_token, *webhook_secret;
static struct sip_conf sc;

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

/* A secret from a file: its first line, without the line end; NULL and a log line if none. */
static char *read_secret(const char *what, const char *path)
{
	char buf[512];
	FILE *f;
	size_t n;

	if (!nonempty(path))
		return NULL;
	f = fopen(path, "r");
	if (!f) {
		LOG_WARN("conf", "%s %s: %s", what, path, strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	if (!buf[0]) {
		LOG_WARN("conf", "%s %s: empty", what, path);
		return NULL;
	}
	return strdup(buf);
}

/* The keyring; a first start makes the file with one fresh 256-bit key. */
static int load_keys(void)
{
	const char *path = conf.codes_hmac_key_file;
	unsigned char key[32];
	char line[80], why[160] = "";
	int fd, err, n = 0;

	err = access(path, F_OK) ? ENOENT : code_keyring_load(&keys, path, why, sizeof(why));
	if (err != ENOENT) {
		if (err)
			LOG_ERR("codes", "hmac_key_file %s: %s", path,
			        why[0] ? why : code_strerror(err));
		return err;
	}
	if (RAND_bytes(key, sizeof(key)) != 1)
		return EIO;
	n = snprintf(line, sizeof(line), "1:");
	for (size_t i = 0; i < sizeof(key); i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", key[i]);
	line[n++] = '\n';
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, line, (size_t)n) != n) {
		err = errno;
		LOG_ERR("codes", "hmac_key_file %s: cannot create it: %s", path, strerror(err));
		if (fd >= 0)
			close(fd);
		return err;
	}
	close(fd);
	LOG_INFO("codes", "made a new key in %s (share it between nodes of one cluster)", path);
	err = code_keyring_load(&keys, path, why, sizeof(why));
	if (err)
		LOG_ERR("codes", "hmac_key_file %s: %s", path, why[0] ? why : code_strerror(err));
	return err;
}

static void sms_done(void *arg, unsigned long ref, int err, long status, const char *body)
{
	if (err)
		LOG_WARN("sms", "message %lu: %s (gateway status %ld)", ref, strerror(err), status);
	if (sip)
		sip_sms_result(sip, ref, !err);
}

/* Purge old calls and forgotten failures. */
static void on_tick(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg)
{
	/* keep_ended = 0 keeps ended calls; forgotten failures are pruned all the same. */
	if (store) {
		struct store_job job = {.op = STORE_OP_PURGE};
		job.at = store_now();
		job.retention_ms = (int64_t)conf.store_keep_ended * 1000;
		store_submit(store, &job, NULL, NULL);
	}
}

static void fill_sip_conf(void)
{
	static const enum sip_confirm map[] = {SIP_CONFIRM_NONE, SIP_CONFIRM_NEAR, SIP_CONFIRM_FAR,
	                                       SIP_CONFIRM_BOTH};
	int near_sms =
	    conf.confirm_near_channel ? conf.confirm_near_channel == 2 : conf.confirm_channel == 1;
	int far_sms =
	    conf.confirm_far_channel ? conf.confirm_far_channel == 2 : conf.confirm_channel == 1;

	sc.listen = conf.sip_listen;
	sc.tls_listen = nonempty(conf.sip_tls_listen);
	sc.tls_cert_dir = nonempty(conf.sip_tls_cert_dir);
	sc.domain = conf.sip_domain;
	sc.upstream = conf.sip_upstream;
	sc.max_call_secs = (unsigned)conf.max_call_duration;
	sc.register_timeout = (unsigned)conf.register_timeout;
	sc.udp_rcvbuf = (unsigned)conf.udp_rcvbuf;
	sc.store = store;
	sc.keys = keys;
	sc.public_url = nonempty(conf.http_public_url);
	sc.qr_uri_https = conf.codes_qr_uri == 1;
	sc.code_ttl = (unsigned)conf.codes_ttl;
	sc.code_digits = (unsigned)conf.codes_digits;
	sc.move_feature = nonempty(conf.move_feature_code);
	sc.send_qr_image = conf.codes_send_qr_image;
	sc.send_barcode_image = conf.codes_send_barcode_image;
	sc.code_pool = (unsigned)conf.codes_pool;
	sc.confirm = map[conf.confirm_policy];
	sc.confirm_sms_near = near_sms;
	sc.confirm_sms_far = far_sms;
	sc.confirm_timeout = (unsigned)conf.confirm_timeout;
	sc.scans_both = conf.move_scans == 1;
	sc.dial_domains = nonempty(conf.move_dial_domains);
	sc.store_timeout = (unsigned)conf.store_timeout;
	sc.on_stop_keep = conf.on_stop == 0;
	sc.lease_secs = (unsigned)conf.store_lease;
	sc.answer_group_ms = (unsigned)conf.store_answer_group;
	sc.hold_answer = conf.store_hold_answer;
	sc.no_call_state = !conf.store_call_state;
	sc.scan_queue = (unsigned)conf.move_scan_queue;
	sc.scan_rate = (unsigned)conf.move_scan_rate;
	sc.scan_burst = (unsigned)conf.move_scan_burst;
	sc.scan_max_bytes = (size_t)conf.move_scan_max_bytes;
	sc.scan_max_pixels = (unsigned long)conf.move_scan_max_pixels;
	sc.hooks = &hooks;
}

static int start_sms(void)
{
	struct mod_sms_conf smc = {
	    .url = conf.sms_url,
	    .auth_header_file = nonempty(conf.sms_auth_header_file),
	    .from = conf.sms_from,
	    .body_template = conf.sms_body_template,
	    .timeout_ms = (unsigned)conf.sms_timeout * 1000,
	    .retries = conf.sms_retries ? conf.sms_retries : -1,
	};
	int err;

	if (!nonempty(conf.sms_url))
		return 0;
	if (!nonempty(conf.sms_from)) {
		LOG_ERR("conf", "[sms] url needs [sms] from");
		return EINVAL;
	}
	err = mod_sms_alloc(&sms, host->root, &smc, sms_done, NULL);
	if (err) {
		LOG_ERR("sms", "cannot start the gateway client: %s", strerror(err));
		return err;
	}
	hooks.sms_send = mod_sms_send;
	hooks.arg = sms;
	return 0;
}

/* The HTTP listeners, before the SIP stack: a bad or busy address must fail the start while
 * there is no stack to shut down yet. Routes come with the API, once the stack is up. */
static int start_http(void)
{
	struct mod_http_conf hc = {0};
	int err;

	if (!nonempty(conf.http_listen))
		return 0;
	hc.listen = conf.http_listen;
	hc.admin_loopback_only = conf.http_admin_loopback_only;
	hc.body_max = (size_t)conf.http_body_max;
	hc.rate = conf.http_rate;
	hc.burst = (unsigned)conf.http_burst;
	hc.admin_listen = nonempty(conf.http_admin_listen);
	hc.per_ip_limit = (unsigned)conf.http_per_ip_limit;
	hc.header_timeout_s = (unsigned)conf.http_header_timeout;
	hc.body_timeout_s = (unsigned)conf.http_body_timeout;
	admin_token = read_secret("admin_token_file", conf.http_admin_token_file);
	if (!admin_token)
		LOG_WARN("http", "no admin token: the admin API answers 401 to everyone");
	hc.admin_token = admin_token;
	err = mod_http_alloc(&http, host->root, &hc);
	if (err)
		LOG_ERR("http", "cannot listen on [http] listen %s%s%s: %s", conf.http_listen,
		        hc.admin_listen ? " and [http] admin_listen " : "",
		        hc.admin_listen ? hc.admin_listen : "", strerror(err));
	return err;
}

/* [react] as the reactions take it. */
static void react_conf_fill(struct react_conf *rc)
{
	*rc = (struct react_conf){
	    .dtmf = conf.react_dtmf,
	    .rate = (unsigned)conf.react_rate,
	    .burst = (unsigned)conf.react_burst,
	    .listeners = (unsigned)conf.react_listeners,
	    .per_address = (unsigned)conf.react_per_address,
	    .poll_secs = (unsigned)conf.react_poll_secs,
	    .conf_path = host->conf_path,
	};
}

static int mod_init(const struct mod_host *h)
{
	struct store_limits lim = {0};
	struct mod_api_conf ac = {0};
	char err_text[512];
	int err;

	host = h;
	metrics_reset();
	metric_set(METRIC_START_TIME_SECONDS, (int64_t)time(NULL));
	if (nonempty(conf.sip_tls_listen) && !nonempty(conf.sip_tls_cert_dir)) {
		LOG_ERR("conf", "[sip] tls_listen needs [sip] tls_cert_dir");
		return EINVAL;
	}
	if ((conf.confirm_channel == 1 || conf.confirm_near_channel == 2 ||
	     conf.confirm_far_channel == 2) &&
	    conf.confirm_policy && !nonempty(conf.sms_url)) {
		LOG_ERR("conf", "[confirm] asks by SMS but [sms] url is empty");
		return EINVAL;
	}
	if (nonempty(conf.http_admin_listen) && !nonempty(conf.http_listen)) {
		LOG_ERR("conf", "[http] admin_listen needs [http] listen");
		return EINVAL;
	}
	{
		struct react_conf rc;

		react_conf_fill(&rc);
		if (react_conf_check(&rc, conf.move_feature_code))
			return EINVAL;
	}
	err = load_keys();
	if (err)
		return err;
	err = store_open_timeout(&store, conf.store_url, conf.store_timeout * 1000, err_text,
	                         sizeof(err_text));
	if (err) {
		LOG_ERR("store", "%s: %s", conf.store_url, err_text);
		return err;
	}
	lim.max_failures = conf.codes_max_failures;
	lim.slow_base_ms = (int64_t)conf.codes_lockout * 1000;
	lim.numeric_budget = conf.codes_numeric_budget;
	lim.budget_window_ms = (int64_t)conf.codes_budget_window * 1000;
	store_limits_set(store, &lim);
	err = store_attach(store, h->root);
	if (err) {
		LOG_ERR("store", "cannot start its worker: %s", strerror(err));
		return err;
	}
	err = start_sms();
	if (err)
		return err;
	err = start_http();
	if (err)
		return err;
	fill_sip_conf();
	err = sip_alloc(&sip, h->root, &sc);
	if (err)
		return err;
	/* The move hooks itself into the core's call events (mod_close frees it with the stack). */
	err = move_init(sip);
	if (err) {
		LOG_ERR("move", "cannot hook the move into the stack: %s", strerror(err));
		return err;
	}
	err = move_anchor_init(sip, nonempty(conf.media_rtpengine),
	                       (unsigned)conf.media_verify_timeout, (unsigned)conf.move_undo_secs);
	if (err) {
		LOG_ERR("media", "[media] rtpengine = %s: %s", conf.media_rtpengine,
		        err == EINVAL ? "not udp:<IPv4>:<port> or udp:[<IPv6>]:<port>"
		                      : strerror(err));
		return err;
	}
	err = move_xr_init(sip, conf.media_verify_xr, (unsigned)conf.media_verify_timeout);
	if (err) {
		LOG_ERR("media", "cannot hook the RTCP-XR collector into the stack: %s",
		        strerror(err));
		return err;
	}
	{
		struct move_context_conf cc = {
		    .resume_ttl = (unsigned)conf.own_resume_ttl,
		    .meet_url_template = nonempty(conf.meet_url_template),
		    .meet_conference_uri = nonempty(conf.meet_conference_uri),
		    .meet_sms = conf.meet_channel == 1,
		    .summary = conf.context_summary,
		    .far_call_info = conf.context_far_call_info,
		};
		err = move_context_init(sip, &cc);
		if (err) {
			LOG_ERR("context", "cannot hook the context into the stack: %s",
			        strerror(err));
			return err;
		}
	}
	{
		struct own_conf oc = {
		    .pull_code = nonempty(conf.own_pull_code),
		    .push_code = nonempty(conf.own_push_code),
		    .confirm = conf.own_confirm,
		    .near_ttl = (unsigned)conf.own_near_ttl,
		    .near_ring = (unsigned)conf.own_near_ring,
		    .ring_timeout = (unsigned)conf.own_ring_timeout,
		};

		err = own_init(sip, &oc);
		if (err) {
			LOG_ERR("own", "cannot hook own devices into the stack: %s", strerror(err));
			return err;
		}
	}
	{
		struct react_conf rc;

		react_conf_fill(&rc);
		err = react_init(sip, &rc);
		if (err) {
			LOG_ERR("react", "cannot hook reactions into the stack: %s", strerror(err));
			return err;
		}
	}

	if (http) {
		twilio_token =
		    read_secret("twilio_auth_token_file", conf.sms_twilio_auth_token_file);
		webhook_secret = read_secret("webhook_secret_file", conf.sms_webhook_secret_file);
		ac.public_url = nonempty(conf.http_public_url);
		ac.sip_domain = conf.sip_domain;
		ac.keys = keys;
		ac.twilio_auth_token = twilio_token;
		ac.webhook_secret = webhook_secret;
		ac.webhook_url = nonempty(conf.sms_webhook_url);
		ac.qr_px = (unsigned)conf.http_qr_px;
		err = mod_api_alloc(&api, http, sip, store, &ac);
		if (err) {
			LOG_ERR("http", "cannot set up the API: %s", strerror(err));
			return err;
		}
		if (nonempty(conf.http_admin_listen))
			LOG_INFO("http", "listening on %s (public), %s (admin), public URL %s",
			         conf.http_listen, conf.http_admin_listen, conf.http_public_url);
		else
			LOG_INFO("http", "listening on %s, public URL %s", conf.http_listen,
			         conf.http_public_url);
	}
	tick = su_timer_create(su_root_task(h->root), 60 * 1000);
	if (tick)
		su_timer_set_for_ever(tick, on_tick, NULL);
	return 0;
}

/* SIGHUP: the keyring file again; a bad file keeps the keys we have. */
static void reload_keys(void)
{
	struct code_keyring *fresh = NULL;
	char why[160] = "";
	int err = code_keyring_load(&fresh, conf.codes_hmac_key_file, why, sizeof(why));

	if (err) {
		LOG_ERR("codes", "hmac_key_file %s: %s (keeping the keys loaded before)",
		        conf.codes_hmac_key_file, why[0] ? why : code_strerror(err));
		return;
	}
	code_keyring_swap(keys, fresh);
	code_keyring_free(fresh);
	LOG_INFO("codes", "hmac_key_file %s: %u keys", conf.codes_hmac_key_file,
	         code_keyring_count(keys));
}

static void mod_reload(void)
{
	if (keys)
		reload_keys();
	fill_sip_conf();
	if (sip)
		sip_reconf(sip, &sc);
	LOG_INFO("conf", "reloaded %s", host->conf_path);
}

static void sip_stopped(void *arg)
{
	host->stopped();
}

static void mod_shutdown(void)
{
	if (sip)
		sip_shutdown(sip, sip_stopped, NULL);
	else
		host->stopped();
}

/* SIGUSR1 (or qrxferctl drain): new calls go to the other nodes. */
static void mod_drain(void)
{
	if (sip)
		sip_drain(sip);
}

static void mod_close(void)
{
	if (tick)
		su_timer_destroy(tick);
	tick = NULL;
	/* The store's last callbacks must find the stack still there, but touch nothing. */
	if (sip)
		sip_detach_store(sip);
	mod_http_free(http);
	http = NULL;
	store_close(store);
	store = NULL;
	sip_free(sip);
	sip = NULL;
	mod_sms_free(sms);
	sms = NULL;
	mod_api_free(api);
	api = NULL;
	code_keyring_free(keys);
	keys = NULL;
	free(admin_token);
	free(twilio_token);
	free(webhook_secret);
	admin_token = twilio_token = webhook_secret = NULL;
}

__attribute__((visibility("default"))) const struct mod_export mod_export = {
    .abi = MOD_ABI_VERSION,
    .name = "mod_qrxfer",
    .version = PACKAGE_VERSION,
    .params = params,
    .init = mod_init,
    .reload = mod_reload,
    .shutdown = mod_shutdown,
    .drain = mod_drain,
    .close = mod_close,
};
