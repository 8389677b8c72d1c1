/* mod_qrxfer: the module descriptor, its configuration, and the wiring of the parts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "module/mod.h"
#include "sip/log.h"
#include "sip/sip.h"

static struct {
	char *sip_listen, *sip_tls_listen, *sip_tls_cert_dir, *sip_domain, *sip_upstream;
	int max_call_duration, register_timeout;
} conf;

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static const struct mod_conf_param params[] = {
	{"log", "level", MOD_CONF_ENUM, &sip_log_level, "info", .choices = log_levels,
	 .flags = MOD_CONF_RELOAD},
	{"sip", "listen", MOD_CONF_STR, &conf.sip_listen, "sip:127.0.0.1:5060",
	 .flags = MOD_CONF_REQUIRED},
	{"sip", "tls_listen", MOD_CONF_STR, &conf.sip_tls_listen, ""},
	{"sip", "tls_cert_dir", MOD_CONF_STR, &conf.sip_tls_cert_dir, ""},
	{"sip", "domain", MOD_CONF_STR, &conf.sip_domain, "qrxfer.invalid",
	 .flags = MOD_CONF_REQUIRED},
	{"sip", "upstream", MOD_CONF_STR, &conf.sip_upstream, "sip:127.0.0.1:5070",
	 .flags = MOD_CONF_REQUIRED},
	{"sip", "max_call_duration", MOD_CONF_INT, &conf.max_call_duration, "14400", 0, 604800},
	{"sip", "register_timeout", MOD_CONF_INT, &conf.register_timeout, "32", 1, 300},
	{NULL},
};

static const struct mod_host *host;
static struct sip *sip;

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

static int mod_init(const struct mod_host *h)
{
	struct sip_conf sc = {
		.listen = conf.sip_listen,
		.tls_listen = nonempty(conf.sip_tls_listen),
		.tls_cert_dir = nonempty(conf.sip_tls_cert_dir),
		.domain = conf.sip_domain,
		.upstream = conf.sip_upstream,
		.max_call_secs = (unsigned)conf.max_call_duration,
		.register_timeout = (unsigned)conf.register_timeout,
	};
	int err;

	host = h;
	if (sc.tls_listen && !sc.tls_cert_dir) {
		LOG_ERR("conf", "[sip] tls_listen needs [sip] tls_cert_dir");
		return EINVAL;
	}
	err = sip_alloc(&sip, h->root, &sc);
	if (err)
		return err;
	return 0;
}

static void mod_reload(void)
{
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

static void mod_close(void)
{
	sip_free(sip);
	sip = NULL;
}

__attribute__((visibility("default"))) const struct mod_export mod_export = {
	.abi = MOD_ABI_VERSION,
	.name = "mod_qrxfer",
	.version = PACKAGE_VERSION,
	.params = params,
	.init = mod_init,
	.reload = mod_reload,
	.shutdown = mod_shutdown,
	.close = mod_close,
};
