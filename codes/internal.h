/* codes/: helpers shared between the files of this folder only. */
#ifndef QRXFER_CODES_INTERNAL_H
#define QRXFER_CODES_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer; data is malloc'd. */
struct code_buf {
	uint8_t *data;
	size_t len, cap;
};

int code_buf_put(struct code_buf *b, const void *p, size_t n);
int code_buf_printf(struct code_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Encodes a bilevel image as a 1-bit PNG: dark(ctx, x, y) for modules of mw x mh, each drawn
 * as sx x sy pixels, with a light margin of qx/qy modules around.
 */
int code_png_bilevel(const uint8_t *mod, unsigned mw, unsigned mh, unsigned sx, unsigned sy,
                     unsigned qx, unsigned qy, uint8_t **out, size_t *outlen);
/* SVG of the same bilevel image: one rect a horizontal dark run. */
int code_svg_bilevel(const uint8_t *mod, unsigned mw, unsigned mh, unsigned sx, unsigned sy,
                     unsigned qx, unsigned qy, char **out);

#endif
