/* qrxferd: the thin host. Reads the config, loads the module, runs the su_root loop. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sofia-sip/su.h>
#include <sofia-sip/su_time.h>
#include <sofia-sip/su_wait.h>

#include "config.h"
#include "host/mod.h"

static char *module_load;
static su_root_t *root;
static const struct mod_export *mod;
static const char *conf_path = QRXFER_SYSCONFDIR "/qrxfer.conf";
static int sigpipe[2] = {-1, -1};
static int stopping;

static const struct mod_conf_param host_params[] = {
    {"module", "load", MOD_CONF_STR, &module_load, "mod_qrxfer.so", .flags = MOD_CONF_REQUIRED},
    {NULL},
};

/*
 * The loop's timer rounding. sofia-sip 1.12.11's su_duration() truncates to whole
 * milliseconds, so a timer due in 0.4 ms asks the loop for a 0 ms wait: the root calls
 * epoll_wait(..., 0) again and again until the timer is due. This host defines su_duration()
 * itself, rounding a positive remainder up: libsofia-sip-ua calls it through its PLT
 * (su_timer_expire, su_timer_next_expires, su_root_sleep, nta_incoming_destroy,
 * tport_set_secondary_timer), and the executable's definition interposes the library's (the
 * host is linked with -export-dynamic). A timer then fires up to 1 ms late instead of
 * spinning; past durations and whole milliseconds are unchanged. tests/daemon/spin.test
 * counts the loop's empty wake-ups (about 190 per call without this, under 10 with it).
 */
su_duration_t su_duration(su_time_t const t1, su_time_t const t2)
{
	long long us = ((long long)t1.tv_sec - (long long)t2.tv_sec) * 1000000LL +
	               ((long long)t1.tv_usec - (long long)t2.tv_usec);

	if (us >= (long long)SU_DURATION_MAX * 1000LL)
		return SU_DURATION_MAX;
	if (us <= -(long long)SU_DURATION_MAX * 1000LL)
		return -SU_DURATION_MAX;
	if (us > 0)
		return (su_duration_t)((us + 999) / 1000);
	return (su_duration_t)(us / 1000);
}

static void on_signal(int sig)
{
	unsigned char b = (unsigned char)sig;
	int saved = errno;
	ssize_t n;

	/* A full pipe (EAGAIN) means this kind of signal is already pending: nothing is lost. */
	n = write(sigpipe[1], &b, 1);
	(void)n;
	errno = saved;
}

static void module_stopped(void)
{
	su_root_break(root);
}

static int on_signal_pipe(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	const struct mod_conf_param *tables[] = {host_params, mod->params, NULL};
	unsigned char b;
	char err[512];

	while (read(sigpipe[0], &b, 1) == 1) {
		if (b == SIGHUP) {
			if (mod_conf_reload(conf_path, tables, err, sizeof(err)))
				fprintf(stderr, "qrxferd: reload refused, old config kept: %s\n",
				        err);
			else if (mod->reload)
				mod->reload();
			continue;
		}
		if (b == SIGUSR1) {
			if (mod->drain)
				mod->drain();
			continue;
		}
		if (stopping++) {
			fprintf(stderr, "qrxferd: second signal: stopping now\n");
			su_root_break(root);
			continue;
		}
		fprintf(stderr, "qrxferd: signal %d: stopping\n", b);
		mod->shutdown();
	}
	return 0;
}

static const struct mod_export *load_module(const char *dir, const char *name)
{
	const struct mod_export *m;
	char path[4096];
	void *dl;

	if (strchr(name, '/'))
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "%s/%s", dir, name);
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "qrxferd: module %s: %s\n", path, dlerror());
		return NULL;
	}
	m = dlsym(dl, "mod_export");
	if (!m) {
		fprintf(stderr, "qrxferd: module %s: no mod_export descriptor\n", path);
		return NULL;
	}
	if (m->abi != MOD_ABI_VERSION) {
		fprintf(stderr, "qrxferd: module %s: ABI %u, host speaks %u\n", path, m->abi,
		        MOD_ABI_VERSION);
		return NULL;
	}
	/* The module stays loaded until exit: its code may still be on the stack. */
	return m;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: qrxferd [-c FILE] [-M MODULE_DIR] [-t] [-V]\n"
	        "  -c FILE        configuration (default %s/qrxfer.conf)\n"
	        "  -M DIR         where modules are (default %s, or $QRXFER_MODULE_PATH)\n"
	        "  -t             check the configuration and exit\n"
	        "  -V             print the version and exit\n",
	        QRXFER_SYSCONFDIR, QRXFER_MODDIR);
}

int main(int argc, char **argv)
{
	const char *moddir =
	    getenv("QRXFER_MODULE_PATH") ? getenv("QRXFER_MODULE_PATH") : QRXFER_MODDIR;
	const struct mod_conf_param *tables[3] = {host_params, NULL, NULL};
	struct mod_host host = {0};
	struct sigaction sa = {0};
	char err[512], name[256];
	int opt, check_only = 0, rc = 1, wait_index = -1;
	su_wait_t w[1];

	while ((opt = getopt(argc, argv, "c:M:tVh")) != -1) {
		switch (opt) {
		case 'c':
			conf_path = optarg;
			break;
		case 'M':
			moddir = optarg;
			break;
		case 't':
			check_only = 1;
			break;
		case 'V':
			printf("qrxferd %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	rc = mod_conf_peek(conf_path, "module", "load", name, sizeof(name), err, sizeof(err));
	if (rc == ENOENT)
		snprintf(name, sizeof(name), "mod_qrxfer.so");
	else if (rc) {
		fprintf(stderr, "qrxferd: conf: %s\n", err);
		return 1;
	}
	mod = load_module(moddir, name);
	if (!mod)
		return 1;
	tables[1] = mod->params;
	if (mod_conf_load(conf_path, tables, err, sizeof(err))) {
		fprintf(stderr, "qrxferd: conf: %s\n", err);
		mod_conf_free(tables);
		return 1;
	}
	if (check_only) {
		printf("qrxferd: %s: configuration is valid (module %s %s)\n", conf_path, mod->name,
		       mod->version);
		mod_conf_free(tables);
		return 0;
	}

	rc = 1;
	su_init();
	root = su_root_create(NULL);
	if (!root || pipe2(sigpipe, O_NONBLOCK | O_CLOEXEC)) {
		fprintf(stderr, "qrxferd: cannot create the event loop: %s\n", strerror(errno));
		goto out;
	}
	su_wait_create(w, sigpipe[0], SU_WAIT_IN);
	wait_index = su_root_register(root, w, on_signal_pipe, NULL, 0);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	host.root = root;
	host.conf_path = conf_path;
	host.stopped = module_stopped;
	if (mod->init(&host)) {
		fprintf(stderr, "qrxferd: module %s did not start\n", mod->name);
		mod->close();
		goto out;
	}
	fprintf(stderr, "qrxferd: %s %s running (config %s)\n", mod->name, mod->version, conf_path);
	su_root_run(root);
	mod->close();
	rc = 0;
	fprintf(stderr, "qrxferd: stopped\n");
out:
	if (root) {
		if (wait_index > 0)
			su_root_deregister(root, wait_index);
		su_root_destroy(root);
	}
	if (sigpipe[0] >= 0) {
		close(sigpipe[0]);
		close(sigpipe[1]);
	}
	su_deinit();
	mod_conf_free(tables);
	return rc;
}
