/*
 * web/assets: the files of web/assets/ (pages, style, script), compiled in by web/embed.sh
 * (web/assets.c is generated). A page is a .html file whose {{name}} marks take values and
 * whose {{>file}} marks take other assets; web/pages.c fills them.
 */
#ifndef QRXFER_WEB_ASSETS_H
#define QRXFER_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
	const char *name; /* the file's name, "show.html" */
	const char *text; /* its lines, each without its leading tabs and its newline */
};

extern const struct web_asset web_assets[];
extern const size_t web_nassets;

#endif
