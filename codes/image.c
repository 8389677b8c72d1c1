/* Image decoding (PNG, JPEG, raw grey) to 8-bit grey, with caps checked before allocating. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "codes/code.h"
#include "codes/internal.h"

void code_limits_default(struct code_limits *lim)
{
	lim->max_bytes = 16u << 20;
	lim->max_width = 8192;
	lim->max_height = 8192;
	lim->max_pixels = 40000000;
}

void code_grey_release(struct code_grey *g)
{
	if (!g)
		return;
	free(g->px);
	g->px = NULL;
	g->w = g->h = 0;
}

static int dims_ok(const struct code_limits *lim, uint64_t w, uint64_t h)
{
	if (w == 0 || h == 0)
		return CODE_ETRUNCATED;
	if (w > lim->max_width || h > lim->max_height || w * h > lim->max_pixels)
		return CODE_ETOOLARGE;
	return 0;
}

static int decode_png(const uint8_t *buf, size_t len, const struct code_limits *lim,
                      struct code_grey *out)
{
	png_image img;
	uint8_t *px = NULL;
	int err;

	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&img, buf, len)) {
		err = CODE_ETRUNCATED;
		goto out;
	}
	err = dims_ok(lim, img.width, img.height);
	if (err)
		goto out;
	img.format = PNG_FORMAT_GRAY;
	px = malloc((size_t)img.width * img.height);
	if (!px) {
		err = ENOMEM;
		goto out;
	}
	/* Transparent pixels composite onto white, as a page would show them. */
	png_color white = {255, 255, 255};
	if (!png_image_finish_read(&img, &white, px, (png_int_32)img.width, NULL)) {
		err = CODE_ETRUNCATED;
		goto out;
	}
	out->w = img.width;
	out->h = img.height;
	out->px = px;
	px = NULL;
out:
	png_image_free(&img);
	free(px);
	return err;
}

struct jpeg_err {
	struct jpeg_error_mgr mgr;
	jmp_buf jmp;
	int truncated;
};

static void jpeg_fail(j_common_ptr cinfo)
{
	struct jpeg_err *je = (struct jpeg_err *)cinfo->err;

	longjmp(je->jmp, 1);
}

static void jpeg_msg(j_common_ptr cinfo, int level)
{
	struct jpeg_err *je = (struct jpeg_err *)cinfo->err;

	/* Warnings: data ending early, or a marker inside a scan, mean the file was cut. */
	if (level < 0 &&
	    (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER))
		je->truncated = 1;
}

static int decode_jpeg(const uint8_t *buf, size_t len, const struct code_limits *lim,
                       struct code_grey *out)
{
	struct jpeg_decompress_struct cinfo;
	struct jpeg_err je;
	uint8_t *volatile px = NULL;
	volatile int err = 0;

	memset(&cinfo, 0, sizeof(cinfo));
	memset(&je, 0, sizeof(je));
	cinfo.err = jpeg_std_error(&je.mgr);
	je.mgr.error_exit = jpeg_fail;
	je.mgr.emit_message = jpeg_msg;
	if (setjmp(je.jmp)) {
		if (!err)
			err = CODE_ETRUNCATED;
		goto out;
	}
	jpeg_create_decompress(&cinfo);
	jpeg_mem_src(&cinfo, buf, (unsigned long)len);
	if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) {
		err = CODE_ETRUNCATED;
		goto out;
	}
	err = dims_ok(lim, cinfo.image_width, cinfo.image_height);
	if (err)
		goto out;
	/* A progressive file's coefficient buffer is a bomb of its own: cap it too. */
	cinfo.mem->max_memory_to_use = 256L << 20;
	cinfo.out_color_space = JCS_GRAYSCALE;
	cinfo.dct_method = JDCT_ISLOW;
	jpeg_start_decompress(&cinfo);
	if (cinfo.output_components != 1) {
		err = CODE_ENOTIMAGE;
		goto out;
	}
	px = malloc((size_t)cinfo.output_width * cinfo.output_height);
	if (!px) {
		err = ENOMEM;
		goto out;
	}
	while (cinfo.output_scanline < cinfo.output_height && !je.truncated) {
		JSAMPROW row = px + (size_t)cinfo.output_scanline * cinfo.output_width;

		jpeg_read_scanlines(&cinfo, &row, 1);
	}
	if (je.truncated) {
		err = CODE_ETRUNCATED;
		goto out;
	}
	jpeg_finish_decompress(&cinfo);
	out->w = cinfo.output_width;
	out->h = cinfo.output_height;
	out->px = px;
	px = NULL;
out:
	jpeg_destroy_decompress(&cinfo);
	free(px);
	return err;
}

int code_image_decode(const void *buf, size_t len, const struct code_limits *lim,
                      struct code_grey *out)
{
	struct code_limits def;
	const uint8_t *b = buf;

	if (!out || (!buf && len))
		return EINVAL;
	if (!lim) {
		code_limits_default(&def);
		lim = &def;
	}
	if (len > lim->max_bytes)
		return CODE_ETOOLARGE;
	if (len >= 8 && png_sig_cmp(b, 0, 8) == 0)
		return decode_png(b, len, lim, out);
	if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		return decode_jpeg(b, len, lim, out);
	if ((len < 8 && len > 0 && png_sig_cmp(b, 0, len) == 0) ||
	    (len > 0 && len < 3 && b[0] == 0xff))
		return CODE_ETRUNCATED;
	return CODE_ENOTIMAGE;
}

int code_image_check(size_t len, unsigned w, unsigned h, const struct code_limits *lim)
{
	struct code_limits def;

	if (!lim) {
		code_limits_default(&def);
		lim = &def;
	}
	if (len > lim->max_bytes)
		return CODE_ETOOLARGE;
	return dims_ok(lim, w, h) == CODE_ETOOLARGE ? CODE_ETOOLARGE : 0;
}

/* A JPEG's size is in its first SOFn segment; markers before it are skipped by length. */
static int jpeg_size(const uint8_t *b, size_t len, unsigned *w, unsigned *h)
{
	size_t i = 2;

	while (i + 4 <= len) {
		unsigned marker, seglen;

		if (b[i] != 0xff)
			return CODE_ETRUNCATED;
		marker = b[i + 1];
		if (marker == 0xff) {
			i++;
			continue;
		}
		if (marker == 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker == 0x01) {
			i += 2;
			continue;
		}
		if (marker == 0xd9 || marker == 0xda)
			return CODE_ETRUNCATED; /* end, or a scan before any frame header */
		seglen = (unsigned)b[i + 2] << 8 | b[i + 3];
		if (seglen < 2)
			return CODE_ETRUNCATED;
		if (marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 &&
		    marker != 0xcc) {
			if (seglen < 7 || i + 9 > len)
				return CODE_ETRUNCATED;
			*h = (unsigned)b[i + 5] << 8 | b[i + 6];
			*w = (unsigned)b[i + 7] << 8 | b[i + 8];
			return 0;
		}
		i += 2 + seglen;
	}
	return CODE_ETRUNCATED;
}

int code_image_size(const void *buf, size_t len, unsigned *w, unsigned *h)
{
	const uint8_t *b = buf;

	if (!w || !h || (!buf && len))
		return EINVAL;
	if (len >= 8 && png_sig_cmp(b, 0, 8) == 0) {
		/* The IHDR chunk comes first: length, "IHDR", width, height (big-endian). */
		if (len < 24 || memcmp(b + 12, "IHDR", 4))
			return CODE_ETRUNCATED;
		*w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
		*h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
		return 0;
	}
	if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		return jpeg_size(b, len, w, h);
	return CODE_ENOTIMAGE;
}

int code_image_raw(const void *buf, size_t len, unsigned w, unsigned h,
                   const struct code_limits *lim, struct code_grey *out)
{
	struct code_limits def;
	int err;

	if (!out || !buf)
		return EINVAL;
	if (!lim) {
		code_limits_default(&def);
		lim = &def;
	}
	if (len > lim->max_bytes)
		return CODE_ETOOLARGE;
	err = dims_ok(lim, w, h);
	if (err)
		return err;
	if ((uint64_t)w * h != len)
		return CODE_ETRUNCATED;
	out->px = malloc(len);
	if (!out->px)
		return ENOMEM;
	memcpy(out->px, buf, len);
	out->w = w;
	out->h = h;
	return 0;
}

int code_grey_png(const struct code_grey *g, uint8_t **out, size_t *outlen)
{
	png_image img;
	png_alloc_size_t n = 0;
	uint8_t *buf;

	if (!g || !g->px || !out || !outlen)
		return EINVAL;
	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	img.width = g->w;
	img.height = g->h;
	img.format = PNG_FORMAT_GRAY;
	if (!png_image_write_get_memory_size(img, n, 0, g->px, (png_int_32)g->w, NULL))
		return EIO;
	buf = malloc(n);
	if (!buf)
		return ENOMEM;
	if (!png_image_write_to_memory(&img, buf, &n, 0, g->px, (png_int_32)g->w, NULL)) {
		free(buf);
		return EIO;
	}
	*out = buf;
	*outlen = n;
	return 0;
}
