#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "module/conf.h"

enum mode { LOAD, CHECK, RELOAD };

struct parse {
	const char *path;
	const struct mod_conf_param *const *tables;
	enum mode mode;
	char *err;
	size_t errlen;
	char prev_section[64];
	int failed;
};

static const struct mod_conf_param *find(const struct mod_conf_param *const *tables,
                                         const char *section, const char *name)
{
	for (; *tables; tables++)
		for (const struct mod_conf_param *p = *tables; p->name; p++)
			if (!strcasecmp(p->section, section) && !strcasecmp(p->name, name))
				return p;
	return NULL;
}

static int section_known(const struct mod_conf_param *const *tables, const char *section)
{
	for (; *tables; tables++)
		for (const struct mod_conf_param *p = *tables; p->name; p++)
			if (!strcasecmp(p->section, section))
				return 1;
	return 0;
}

/* Parse text for p into an int; 0 or EINVAL with why in err. */
static int parse_int(const struct mod_conf_param *p, const char *text, int *out, char *why,
                     size_t whylen)
{
	char *end;
	long v;

	switch (p->type) {
	case MOD_CONF_INT:
		errno = 0;
		v = strtol(text, &end, 10);
		if (errno || end == text || *end) {
			snprintf(why, whylen, "'%s' is not a whole number", text);
			return EINVAL;
		}
		if (v < p->min || v > p->max) {
			snprintf(why, whylen, "%ld is outside %d..%d", v, p->min, p->max);
			return EINVAL;
		}
		*out = (int)v;
		return 0;
	case MOD_CONF_BOOL:
		if (!strcasecmp(text, "yes") || !strcasecmp(text, "true") || !strcmp(text, "1") ||
		    !strcasecmp(text, "on")) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(text, "no") || !strcasecmp(text, "false") || !strcmp(text, "0") ||
		    !strcasecmp(text, "off")) {
			*out = 0;
			return 0;
		}
		snprintf(why, whylen, "'%s' is not yes or no", text);
		return EINVAL;
	case MOD_CONF_ENUM:
		for (int i = 0; p->choices[i]; i++)
			if (!strcasecmp(text, p->choices[i])) {
				*out = i;
				return 0;
			}
		snprintf(why, whylen, "'%s' is not one of:", text);
		for (int i = 0; p->choices[i]; i++) {
			size_t n = strlen(why);
			snprintf(why + n, whylen - n, " %s", p->choices[i]);
		}
		return EINVAL;
	case MOD_CONF_STR:
		break;
	}
	return EINVAL;
}

static int same_value(const struct mod_conf_param *p, const char *text)
{
	char why[8];
	int v;

	if (p->type == MOD_CONF_STR) {
		const char *cur = *(char **)p->var;
		return cur ? !strcmp(cur, text) : !*text;
	}
	return !parse_int(p, text, &v, why, sizeof(why)) && v == *(int *)p->var;
}

/* Store text into p's variable (or only validate it in CHECK mode). */
static int apply(struct parse *ps, const struct mod_conf_param *p, const char *text, char *why,
                 size_t whylen)
{
	int v;

	if ((p->flags & MOD_CONF_REQUIRED) && !*text) {
		snprintf(why, whylen, "must not be empty");
		return EINVAL;
	}
	if (p->type != MOD_CONF_STR && parse_int(p, text, &v, why, whylen))
		return EINVAL;
	if (ps->mode == CHECK)
		return 0;
	if (ps->mode == RELOAD && !(p->flags & MOD_CONF_RELOAD)) {
		if (!same_value(p, text))
			fprintf(stderr,
			        "qrxfer: conf: %s: [%s] %s changed: takes effect on restart\n",
			        ps->path, p->section, p->name);
		return 0;
	}
	if (p->type == MOD_CONF_STR) {
		char *copy = strdup(text);
		if (!copy) {
			snprintf(why, whylen, "out of memory");
			return ENOMEM;
		}
		free(*(char **)p->var);
		*(char **)p->var = copy;
	} else {
		*(int *)p->var = v;
	}
	return 0;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse *ps = user;
	const struct mod_conf_param *p;
	char why[256];

	p = find(ps->tables, section, name);
	if (!p) {
		snprintf(ps->err, ps->errlen, "[%s] %s: unknown %s", section, name,
		         section_known(ps->tables, section) ? "key" : "section");
		return 0;
	}
	if (apply(ps, p, value, why, sizeof(why))) {
		snprintf(ps->err, ps->errlen, "[%s] %s: %s", section, name, why);
		return 0;
	}
	return 1;
}

static int set_defaults(struct parse *ps)
{
	char why[256];

	for (const struct mod_conf_param *const *t = ps->tables; *t; t++)
		for (const struct mod_conf_param *p = *t; p->name; p++) {
			if (ps->mode == RELOAD && !(p->flags & MOD_CONF_RELOAD))
				continue;
			if (!p->def) {
				if (p->type == MOD_CONF_STR && ps->mode != CHECK) {
					free(*(char **)p->var);
					*(char **)p->var = NULL;
				}
				continue;
			}
			if (apply(ps, p, p->def, why, sizeof(why))) {
				snprintf(ps->err, ps->errlen, "built-in default [%s] %s: %s",
				         p->section, p->name, why);
				return EINVAL;
			}
		}
	return 0;
}

static int parse_file(struct parse *ps)
{
	FILE *f = fopen(ps->path, "r");
	int rc;

	if (!f) {
		int e = errno;
		snprintf(ps->err, ps->errlen, "%s: %s", ps->path, strerror(e));
		return e;
	}
	ps->err[0] = 0;
	rc = ini_parse_file(f, on_key, ps);
	fclose(f);
	if (rc == 0)
		return 0;
	if (rc > 0) {
		/* inih reports the first bad line; prefix it so the message reads file:line. */
		char msg[512];
		snprintf(msg, sizeof(msg), "%s:%d: %s", ps->path, rc,
		         ps->err[0] ? ps->err : "not a key = value line or [section]");
		snprintf(ps->err, ps->errlen, "%s", msg);
		return EINVAL;
	}
	snprintf(ps->err, ps->errlen, "%s: cannot read", ps->path);
	return EIO;
}

/* Check the whole file first, so a bad one changes nothing; then apply it in mode. */
static int read_conf(const char *path, const struct mod_conf_param *const *tables, enum mode mode,
                     char *err, size_t errlen)
{
	struct parse ps = {.path = path, .tables = tables, .err = err, .errlen = errlen};
	int rc;

	ps.mode = CHECK;
	rc = parse_file(&ps);
	if (rc)
		return rc;
	ps.mode = mode;
	rc = set_defaults(&ps);
	return rc ? rc : parse_file(&ps);
}

int mod_conf_load(const char *path, const struct mod_conf_param *const *tables, char *err,
                  size_t errlen)
{
	return read_conf(path, tables, LOAD, err, errlen);
}

int mod_conf_reload(const char *path, const struct mod_conf_param *const *tables, char *err,
                    size_t errlen)
{
	return read_conf(path, tables, RELOAD, err, errlen);
}

struct peek {
	const char *section, *name;
	char *out;
	size_t outlen;
	int found;
};

static int on_peek(void *user, const char *section, const char *name, const char *value)
{
	struct peek *pk = user;

	if (!strcasecmp(section, pk->section) && !strcasecmp(name, pk->name)) {
		snprintf(pk->out, pk->outlen, "%s", value);
		pk->found = 1;
	}
	return 1;
}

int mod_conf_peek(const char *path, const char *section, const char *name, char *out, size_t outlen,
                  char *err, size_t errlen)
{
	struct peek pk = {section, name, out, outlen, 0};
	int rc = ini_parse(path, on_peek, &pk);

	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : ENOENT));
		return EIO;
	}
	if (rc > 0) {
		snprintf(err, errlen, "%s:%d: not a key = value line or [section]", path, rc);
		return EINVAL;
	}
	return pk.found ? 0 : ENOENT;
}

void mod_conf_free(const struct mod_conf_param *const *tables)
{
	for (; *tables; tables++)
		for (const struct mod_conf_param *p = *tables; p->name; p++)
			if (p->type == MOD_CONF_STR) {
				free(*(char **)p->var);
				*(char **)p->var = NULL;
			}
}
