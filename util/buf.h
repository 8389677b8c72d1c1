/* A growing byte buffer, always NUL-terminated. After a failed allocation it stays failed
 * (buf.failed) and ignores further writes, so a caller checks once at the end. */
#ifndef QRXFER_UTIL_BUF_H
#define QRXFER_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len, cap;
	bool failed;
};

void buf_add(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with & < > " ' as entities: safe in HTML text and quoted attributes. */
void buf_html(struct buf *b, const char *s);
/* Hands the bytes over (caller frees) and empties b; NULL if it failed. */
char *buf_take(struct buf *b, size_t *lenp);
void buf_release(struct buf *b);

#endif
