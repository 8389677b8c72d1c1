/* Bilevel rendering (QR codes, barcodes) to PNG and SVG in memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <zlib.h>

#include "codes/internal.h"

int code_buf_put(struct code_buf *b, const void *p, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len)
		return ENOMEM;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *d;

		while (cap < b->len + n)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int code_buf_printf(struct code_buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return EINVAL;
	return code_buf_put(b, tmp, (size_t)n);
}

struct png_out {
	struct code_buf buf;
	int err;
};

static void png_out_write(png_structp png, png_bytep data, png_size_t n)
{
	struct png_out *po = png_get_io_ptr(png);

	if (!po->err)
		po->err = code_buf_put(&po->buf, data, n);
}

static void png_out_flush(png_structp png)
{
	(void)png;
}

static void png_out_error(png_structp png, png_const_charp msg)
{
	(void)msg;
	png_longjmp(png, 1);
}

static void png_out_warn(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

int code_png_bilevel(const uint8_t *mod, unsigned mw, unsigned mh, unsigned sx, unsigned sy,
                     unsigned qx, unsigned qy, uint8_t **out, size_t *outlen)
{
	struct png_out po = {{0}, 0};
	png_structp png = NULL;
	png_infop info = NULL;
	uint8_t *volatile row = NULL;
	uint64_t w64, h64;
	unsigned w, h, rowbytes;
	volatile int err = 0;

	if (!mod || !out || !outlen || !mw || !mh || !sx || !sy)
		return EINVAL;
	w64 = (uint64_t)(mw + 2 * qx) * sx;
	h64 = (uint64_t)(mh + 2 * qy) * sy;
	if (w64 > 65535 || h64 > 65535)
		return EINVAL;
	w = (unsigned)w64;
	h = (unsigned)h64;
	rowbytes = (w + 7) / 8;
	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_out_error, png_out_warn);
	if (!png)
		return ENOMEM;
	info = png_create_info_struct(png);
	row = malloc(rowbytes);
	if (!info || !row) {
		err = ENOMEM;
		goto out;
	}
	if (setjmp(png_jmpbuf(png))) {
		err = po.err ? po.err : EIO;
		goto out;
	}
	png_set_write_fn(png, &po, png_out_write, png_out_flush);
	/* Speed over size: the rows repeat, so fast deflate already compresses them well. */
	png_set_compression_level(png, Z_BEST_SPEED);
	png_set_filter(png, 0, PNG_FILTER_NONE);
	png_set_IHDR(png, info, w, h, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
	             PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (unsigned y = 0; y < mh + 2 * qy; y++) {
		/* 1-bit grey: a set bit is white. */
		memset(row, 0xff, rowbytes);
		if (y >= qy && y < qy + mh) {
			const uint8_t *m = mod + (size_t)(y - qy) * mw;

			for (unsigned x = 0; x < mw; x++) {
				if (!m[x])
					continue;
				for (unsigned p = (qx + x) * sx, e = p + sx; p < e; p++)
					row[p >> 3] &= (uint8_t) ~(0x80 >> (p & 7));
			}
		}
		for (unsigned r = 0; r < sy; r++)
			png_write_row(png, row);
	}
	png_write_end(png, NULL);
	if (po.err) {
		err = po.err;
		goto out;
	}
	*out = po.buf.data;
	*outlen = po.buf.len;
	po.buf.data = NULL;
out:
	png_destroy_write_struct(&png, &info);
	free(row);
	free(po.buf.data);
	return err;
}

int code_svg_bilevel(const uint8_t *mod, unsigned mw, unsigned mh, unsigned sx, unsigned sy,
                     unsigned qx, unsigned qy, char **out)
{
	struct code_buf b = {0};
	unsigned w, h;
	int err;

	if (!mod || !out || !mw || !mh || !sx || !sy || mw > 65535 || mh > 65535 || sx > 1000 ||
	    sy > 10000 || qx > 100 || qy > 100)
		return EINVAL;
	w = (mw + 2 * qx) * sx;
	h = (mh + 2 * qy) * sy;
	err =
	    code_buf_printf(&b,
	                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	                    "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
	                    "width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" "
	                    "shape-rendering=\"crispEdges\">\n"
	                    "<rect x=\"0\" y=\"0\" width=\"%u\" height=\"%u\" fill=\"#ffffff\"/>\n"
	                    "<g fill=\"#000000\">\n",
	                    w, h, w, h, w, h);
	for (unsigned y = 0; !err && y < mh; y++) {
		const uint8_t *m = mod + (size_t)y * mw;

		for (unsigned x = 0; !err && x < mw;) {
			unsigned e = x;

			if (!m[x]) {
				x++;
				continue;
			}
			while (e < mw && m[e])
				e++;
			err = code_buf_printf(
			    &b, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\"/>\n",
			    (qx + x) * sx, (qy + y) * sy, (e - x) * sx, sy);
			x = e;
		}
	}
	if (!err)
		err = code_buf_put(&b, "</g>\n</svg>\n", 13);
	if (err) {
		free(b.data);
		return err;
	}
	*out = (char *)b.data;
	return 0;
}
