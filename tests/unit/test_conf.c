/* Configuration: defaults, types, bounds, unknown keys with file:line, reload rules. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "host/conf.h"
#include "tests/unit/leakcheck.h"

static char *s_listen, *s_name;
static int i_ttl, b_flag, e_policy;
static const char *const policies[] = {"none", "near", "far", "both", NULL};

static const struct mod_conf_param table[] = {
    {"sip", "listen", MOD_CONF_STR, &s_listen, "sip:127.0.0.1:5060", .flags = MOD_CONF_REQUIRED},
    {"sip", "name", MOD_CONF_STR, &s_name, NULL, .flags = MOD_CONF_RELOAD},
    {"codes", "ttl", MOD_CONF_INT, &i_ttl, "120", 10, 3600, .flags = MOD_CONF_RELOAD},
    {"codes", "flag", MOD_CONF_BOOL, &b_flag, "no"},
    {"confirm", "policy", MOD_CONF_ENUM, &e_policy, "none", .choices = policies,
     .flags = MOD_CONF_RELOAD},
    {NULL},
};
static const struct mod_conf_param *const tables[] = {table, NULL};
static char path[64];
static char err[512];

static void write_conf(const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static void setup(void)
{
	snprintf(path, sizeof(path), "/tmp/qrxfer-conf-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	err[0] = 0;
}

static void teardown(void)
{
	mod_conf_free(tables);
	unlink(path);
	leakcheck();
}

TestSuite(conf, .init = setup, .fini = teardown);

Test(conf, defaults_apply_when_the_file_is_silent)
{
	write_conf("; nothing but a comment\n");
	cr_assert_eq(mod_conf_load(path, tables, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(s_listen, "sip:127.0.0.1:5060");
	cr_assert_null(s_name);
	cr_assert_eq(i_ttl, 120);
	cr_assert_eq(b_flag, 0);
	cr_assert_eq(e_policy, 0);
}

Test(conf, values_of_every_type_are_read)
{
	write_conf("[sip]\nlisten = sip:[::1]:5070 ; inline comment\nname = edge-1\n"
	           "[codes]\nttl = 300\nflag = yes\n[confirm]\npolicy = both\n");
	cr_assert_eq(mod_conf_load(path, tables, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(s_listen, "sip:[::1]:5070");
	cr_assert_str_eq(s_name, "edge-1");
	cr_assert_eq(i_ttl, 300);
	cr_assert_eq(b_flag, 1);
	cr_assert_eq(e_policy, 3);
}

Test(conf, an_unknown_key_is_named_with_file_and_line)
{
	write_conf("[sip]\nlisten = sip:127.0.0.1:1\n\nlistne = x\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, path), "%s", err);
	cr_assert(strstr(err, ":4:"), "%s", err);
	cr_assert(strstr(err, "[sip] listne: unknown key"), "%s", err);
}

Test(conf, an_unknown_section_is_an_error)
{
	write_conf("[sipp]\nlisten = x\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, ":2: [sipp] listen: unknown section"), "%s", err);
}

Test(conf, bad_values_say_what_is_wrong)
{
	write_conf("[codes]\nttl = 5\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, "5 is outside 10..3600"), "%s", err);
	write_conf("[codes]\nttl = 12s\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, "'12s' is not a whole number"), "%s", err);
	write_conf("[codes]\nflag = perhaps\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, "'perhaps' is not yes or no"), "%s", err);
	write_conf("[confirm]\npolicy = all\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, "'all' is not one of: none near far both"), "%s", err);
	write_conf("[sip]\nlisten =\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, "[sip] listen: must not be empty"), "%s", err);
}

Test(conf, a_line_that_is_not_ini_is_refused)
{
	write_conf("[sip]\nthis is not a key\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, ":2: not a key = value line"), "%s", err);
}

Test(conf, the_line_named_is_the_first_error_s_own)
{
	write_conf("[sip]\nbogus1 = x\n\nbogus2 = y\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, ":2: [sip] bogus1: unknown key"), "%s", err);
	write_conf("[sip]\nthis is not a key\nlistne = x\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, ":2: not a key = value line"), "%s", err);
}

/* inih would cut it in two: the value short, and its rest read as a line (here a section). */
Test(conf, a_line_too_long_is_refused_not_cut)
{
	char text[512];

	snprintf(text, sizeof(text), "[sip]\nname = %0192d[codes]\nttl = 300\n", 0);
	write_conf(text);
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, ":2: line longer than 198 bytes"), "%s", err);
	cr_assert_neq(mod_conf_peek(path, "codes", "ttl", text, sizeof(text), err, sizeof(err)), 0);
	cr_assert(strstr(err, ":2: line longer than 198 bytes"), "%s", err);
	snprintf(text, sizeof(text), "[sip]\nname = %0191d\n", 0);
	write_conf(text);
	cr_assert_eq(mod_conf_load(path, tables, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(strlen(s_name), 191);
}

/* inih would end the value at the NUL and drop the rest of the line. */
Test(conf, a_nul_byte_is_refused)
{
	static const char text[] = "[sip]\nlisten = sip:a\0[codes]\n";
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fwrite(text, 1, sizeof(text) - 1, f);
	fclose(f);
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, ":2: a NUL byte in the line"), "%s", err);
}

Test(conf, a_missing_file_is_named)
{
	unlink(path);
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(conf, a_bad_file_changes_nothing)
{
	write_conf("[codes]\nttl = 200\n");
	cr_assert_eq(mod_conf_load(path, tables, err, sizeof(err)), 0, "%s", err);
	write_conf("[codes]\nttl = 300\nbogus = 1\n");
	cr_assert_neq(mod_conf_load(path, tables, err, sizeof(err)), 0);
	cr_assert_eq(i_ttl, 200, "a refused file must leave the old values");
}

Test(conf, reload_changes_only_reloadable_keys)
{
	write_conf("[sip]\nlisten = sip:127.0.0.1:1\nname = a\n[codes]\nttl = 200\n");
	cr_assert_eq(mod_conf_load(path, tables, err, sizeof(err)), 0, "%s", err);
	write_conf("[sip]\nlisten = sip:127.0.0.1:2\nname = b\n[codes]\nttl = 400\n");
	cr_assert_eq(mod_conf_reload(path, tables, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(s_listen, "sip:127.0.0.1:1", "listen needs a restart");
	cr_assert_str_eq(s_name, "b");
	cr_assert_eq(i_ttl, 400);
	/* A reloadable key that leaves the file goes back to its default. */
	write_conf("[sip]\nlisten = sip:127.0.0.1:1\n");
	cr_assert_eq(mod_conf_reload(path, tables, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(i_ttl, 120);
	cr_assert_null(s_name);
}

/* The warnings of a reload of text, read back from stderr. */
static void reload_warnings(const char *text, char *out, size_t len)
{
	FILE *log = tmpfile();
	int saved = dup(2);
	size_t n;

	cr_assert(log && saved >= 0);
	write_conf(text);
	fflush(stderr);
	dup2(fileno(log), 2);
	cr_assert_eq(mod_conf_reload(path, tables, err, sizeof(err)), 0, "%s", err);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(log);
	n = fread(out, 1, len - 1, log);
	out[n] = '\0';
	fclose(log);
}

Test(conf, a_key_given_twice_is_judged_by_its_last_value_on_reload)
{
	static const char text[] = "[sip]\nlisten = sip:127.0.0.1:1\nlisten = sip:127.0.0.1:2\n";
	char out[512];

	write_conf(text);
	cr_assert_eq(mod_conf_load(path, tables, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(s_listen, "sip:127.0.0.1:2");
	reload_warnings(text, out, sizeof(out));
	cr_assert_str_empty(out, "the same file again: %s", out);
	reload_warnings("[sip]\nlisten = sip:127.0.0.1:2\nlisten = sip:127.0.0.1:3\n", out,
	                sizeof(out));
	cr_assert(strstr(out, "[sip] listen changed: takes effect on restart"), "%s", out);
}

Test(conf, peek_reads_one_key)
{
	char out[64];

	write_conf("[module]\nload = mod_x.so\n");
	cr_assert_eq(mod_conf_peek(path, "module", "load", out, sizeof(out), err, sizeof(err)), 0);
	cr_assert_str_eq(out, "mod_x.so");
	cr_assert_eq(mod_conf_peek(path, "module", "nope", out, sizeof(out), err, sizeof(err)),
	             ENOENT);
}
