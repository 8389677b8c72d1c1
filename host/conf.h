/* Configuration: tables of {section, name, type, &variable, default}, read from one INI file. */
#ifndef QRXFER_MODULE_CONF_H
#define QRXFER_MODULE_CONF_H

#include <stddef.h>

enum mod_conf_type { MOD_CONF_STR, MOD_CONF_INT, MOD_CONF_BOOL, MOD_CONF_ENUM };

enum mod_conf_flags {
	MOD_CONF_RELOAD = 1,   /* SIGHUP may change it */
	MOD_CONF_REQUIRED = 2, /* an empty value is an error */
};

struct mod_conf_param {
	const char *section;
	const char *name;
	enum mod_conf_type type;
	void *var;                  /* char ** (malloc'd), int *, int *, int * (index) */
	const char *def;            /* the value when the file has none; NULL: none */
	int min, max;               /* MOD_CONF_INT bounds */
	const char *const *choices; /* MOD_CONF_ENUM names, NULL-terminated */
	unsigned flags;
};

/* Read path into the tables' variables; on error fill err with "file:line: what". */
int mod_conf_load(const char *path, const struct mod_conf_param *const *tables, char *err,
                  size_t errlen);

/* Re-read path: validate all, change only MOD_CONF_RELOAD keys, warn about the others. */
int mod_conf_reload(const char *path, const struct mod_conf_param *const *tables, char *err,
                    size_t errlen);

/* Read one key without the tables (how the host finds its module): 0, ENOENT if absent,
 * or EIO/EINVAL with err filled. */
int mod_conf_peek(const char *path, const char *section, const char *name, char *out, size_t outlen,
                  char *err, size_t errlen);

/* Free the strings the tables' variables hold. */
void mod_conf_free(const struct mod_conf_param *const *tables);

#endif
