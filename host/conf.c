#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "host/conf.h"

enum mode { LOAD, CHECK, RELOAD };

/*
 * Gives inih one whole line at a time and counts them. inih cuts a line longer than its buffer
 * in two (the rest would read as a line of its own) and ends a line at a NUL byte: both stop
 * the reading with an error instead.
 */
struct reader {
	FILE *f;
	int lineno;   /* lines given to inih so far */
	int bad_line; /* the line refused, 0: none */
	char bad[64]; /* why */
};

struct parse {
	const char *path;
	const struct mod_conf_param *const *tables;
	enum mode mode;
	char *err;
	size_t errlen;
	struct reader rd;
	int err_line; /* the line err is about (the first key refused), 0: none */
	/* RELOAD: per key of the tables, in order, whether the file's last value for it differs
	 * from the one in use (a key given twice is judged by the value that counts) */
	unsigned char *changed;
};

/* inih's reader (ini_reader) over a struct reader. */
static char *read_line(char *str, int num, void *stream)
{
	struct reader *rd = stream;
	int c, n = 0;

	if (rd->bad_line)
		return NULL;
	while ((c = getc(rd->f)) != EOF) {
		if (c == '\0' || n >= num - 1) {
			rd->bad_line = rd->lineno + 1;
			if (c == '\0')
				snprintf(rd->bad, sizeof(rd->bad), "a NUL byte in the line");
			else
				snprintf(rd->bad, sizeof(rd->bad), "line longer than %d bytes",
				         num - 2);
			return NULL;
		}
		str[n++] = (char)c;
		if (c == '\n')
			break;
	}
	if (n == 0)
		return NULL;
	str[n] = '\0';
	rd->lineno++;
	return str;
}

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

/* p's position among all the tables' keys. */
static size_t index_of(const struct mod_conf_param *const *tables, const struct mod_conf_param *p)
{
	size_t i = 0;

	for (; *tables; tables++)
		for (const struct mod_conf_param *q = *tables; q->name; q++, i++)
			if (q == p)
				return i;
	return i;
}

/* The i-th key among all the tables', or NULL past the last. */
static const struct mod_conf_param *nth(const struct mod_conf_param *const *tables, size_t i)
{
	for (; *tables; tables++)
		for (const struct mod_conf_param *q = *tables; q->name; q++)
			if (i-- == 0)
				return q;
	return NULL;
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
		ps->changed[index_of(ps->tables, p)] = !same_value(p, text);
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
		if (!ps->err_line) {
			snprintf(ps->err, ps->errlen, "[%s] %s: unknown %s", section, name,
			         section_known(ps->tables, section) ? "key" : "section");
			ps->err_line = ps->rd.lineno;
		}
		return 0;
	}
	if (apply(ps, p, value, why, sizeof(why))) {
		if (!ps->err_line) {
			snprintf(ps->err, ps->errlen, "[%s] %s: %s", section, name, why);
			ps->err_line = ps->rd.lineno;
		}
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

/* The first error of a reading as "file:line: what"; 0 if there was none. */
static int first_error(const char *path, int rc, const struct reader *rd, int key_line,
                       const char *key_err, char *err, size_t errlen)
{
	char msg[512];

	if (rc < 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		return ENOMEM;
	}
	if (ferror(rd->f)) {
		snprintf(err, errlen, "%s: cannot read", path);
		return EIO;
	}
	/* inih's rc is its first bad line: a key refused there, or not a line it can read */
	if (rc > 0 && rc != key_line)
		snprintf(msg, sizeof(msg), "%s:%d: not a key = value line or [section]", path, rc);
	else if (rc > 0)
		snprintf(msg, sizeof(msg), "%s:%d: %s", path, rc, key_err);
	else if (rd->bad_line)
		snprintf(msg, sizeof(msg), "%s:%d: %s", path, rd->bad_line, rd->bad);
	else
		return 0;
	snprintf(err, errlen, "%s", msg);
	return EINVAL;
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
	ps->err_line = 0;
	ps->rd = (struct reader){.f = f};
	rc = ini_parse_stream(read_line, &ps->rd, on_key, ps);
	rc = first_error(ps->path, rc, &ps->rd, ps->err_line, ps->err, ps->err, ps->errlen);
	fclose(f);
	return rc;
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
	if (mode == RELOAD) {
		ps.changed = calloc(index_of(tables, NULL) + 1, 1);
		if (!ps.changed) {
			snprintf(err, errlen, "%s: out of memory", path);
			return ENOMEM;
		}
	}
	rc = set_defaults(&ps);
	if (!rc)
		rc = parse_file(&ps);
	for (size_t i = 0; ps.changed && !rc; i++) {
		const struct mod_conf_param *p = nth(tables, i);

		if (!p)
			break;
		if (ps.changed[i])
			fprintf(stderr,
			        "qrxfer: conf: %s: [%s] %s changed: takes effect on restart\n",
			        path, p->section, p->name);
	}
	free(ps.changed);
	return rc;
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
	struct reader rd = {0};
	int rc;

	rd.f = fopen(path, "r");
	if (!rd.f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return EIO;
	}
	rc = ini_parse_stream(read_line, &rd, on_peek, &pk);
	rc = first_error(path, rc, &rd, 0, NULL, err, errlen);
	fclose(rd.f);
	if (rc)
		return rc == EINVAL ? EINVAL : EIO;
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
