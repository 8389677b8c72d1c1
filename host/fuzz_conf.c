/* libFuzzer harness: the config reader (module/conf.c over inih) on arbitrary file contents. */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *s_listen, *s_name, *s_url;
static int i_ttl, i_big, b_flag, e_policy;
static const char *const policies[] = {"none", "near", "far", "both", NULL};

/* Every type and flag the module's table uses, with its bounds. */
static const struct mod_conf_param table[] = {
    {"sip", "listen", MOD_CONF_STR, &s_listen, "sip:127.0.0.1:5060", .flags = MOD_CONF_REQUIRED},
    {"sip", "name", MOD_CONF_STR, &s_name, NULL, .flags = MOD_CONF_RELOAD},
    {"store", "url", MOD_CONF_STR, &s_url, "sqlite:///x.db", .flags = MOD_CONF_REQUIRED},
    {"codes", "ttl", MOD_CONF_INT, &i_ttl, "120", 10, 3600, .flags = MOD_CONF_RELOAD},
    {"http", "body_max", MOD_CONF_INT, &i_big, "8388608", 1024, 268435456},
    {"codes", "flag", MOD_CONF_BOOL, &b_flag, "no", .flags = MOD_CONF_RELOAD},
    {"confirm", "policy", MOD_CONF_ENUM, &e_policy, "none", .choices = policies,
     .flags = MOD_CONF_RELOAD},
    {NULL},
};
static const struct mod_conf_param *const tables[] = {table, NULL};

/* What a successful read promises: bounds kept, required strings present. */
static void check(void)
{
	if (!s_listen || !*s_listen || !s_url || !*s_url)
		abort();
	if (i_ttl < 10 || i_ttl > 3600 || i_big < 1024 || i_big > 268435456)
		abort();
	if ((b_flag != 0 && b_flag != 1) || e_policy < 0 || e_policy > 3)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	static int fd = -1;
	char err[512], out[128];

	/* The reader takes a path: a memory file behind /proc/self/fd keeps it off the disk. */
	if (fd < 0) {
		fd = memfd_create("fuzz_conf", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	err[0] = '\0';
	if (mod_conf_load(path, tables, err, sizeof(err)) == 0) {
		check();
		/* The same file again as a SIGHUP: valid, nothing changes. */
		if (mod_conf_reload(path, tables, err, sizeof(err)) != 0)
			abort();
		check();
	} else if (!err[0] || !memchr(err, '\0', sizeof(err))) {
		abort(); /* an error always says what */
	}
	mod_conf_peek(path, "module", "load", out, sizeof(out), err, sizeof(err));
	mod_conf_free(tables);
	return 0;
}
