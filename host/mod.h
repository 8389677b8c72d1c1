/* The contract between the host daemon and a loadable module. */
#ifndef QRXFER_MODULE_MOD_H
#define QRXFER_MODULE_MOD_H

#include <sofia-sip/su_wait.h>

#include "host/conf.h"

#define MOD_ABI_VERSION 2

/* What the host gives a module. */
struct mod_host {
	su_root_t *root;
	const char *conf_path;
	void (*stopped)(void); /* the module has finished shutting down */
};

/* One exported, const descriptor per module, named mod_export. */
struct mod_export {
	unsigned abi;
	const char *name;
	const char *version;
	const struct mod_conf_param *params; /* terminated by an entry with name NULL */
	int (*init)(const struct mod_host *host);
	void (*reload)(void);   /* after the host re-read the config */
	void (*shutdown)(void); /* end calls; call host->stopped when done */
	void (*drain)(void);    /* take no new calls (SIGUSR1); may be NULL */
	void (*close)(void);    /* free everything; the loop has stopped */
};

#endif
