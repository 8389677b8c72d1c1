/*
 * codes/: the scanner's image work, shared by scan.c (the passes), prep.c (whole-image
 * preprocessing) and region.c (where a code may be, and reading it resampled).
 */
#ifndef QRXFER_CODES_SCAN_INT_H
#define QRXFER_CODES_SCAN_INT_H

#include "codes/code.h"

int prep_copy(const struct code_grey *in, struct code_grey *out);
/* 2x2 box downscale. */
int prep_half(const struct code_grey *in, struct code_grey *out);
/* Stretches the 1st..99th percentile to 0..255 in place. */
void prep_stretch(struct code_grey *g);
/* 3x3 box blur in place (borders kept). */
int prep_blur(struct code_grey *g);
/* Vertical 9-tap mean: smooths along a barcode's bars (near upright) without blurring them. */
int prep_vsmooth(struct code_grey *g);
/* Local-mean binarisation: dark where a pixel is below the mean of its (2r+1)^2 square. */
int prep_adaptive_r(struct code_grey *g, unsigned r);
int prep_adaptive(struct code_grey *g);
/*
 * 3x3 majority on a binarised image (borders kept): a screen's pixel grid leaves dots in the
 * quiet zone that zbar takes for bars; bars and QR modules are wider and stay.
 */
int prep_despeckle(struct code_grey *g);
/*
 * Unsharp mask in place: p + amount% of (p - the mean of its (2r+1)^2 square). Undoes some of
 * a blur about r px wide; amount -100 is the mean itself (smooths noise).
 */
int prep_sharpen(struct code_grey *g, unsigned r, int amount);
/*
 * prep_sharpen(g, r1, amount) then prep_adaptive_r(g, r2) in one go, from one integral image: the
 * wide mean of the sharpened image is, r2 being several times r1, the wide mean of the image.
 */
int prep_sharp_adaptive(struct code_grey *g, unsigned r1, int amount, unsigned r2);

/* Where a code may be: a square of side px around (cx, cy) in the full image, to be read at
 * scale times its size, turned by angle (radians) so a barcode's bars stand upright. */
struct region {
	double cx, cy, side, scale, angle;
	/* Keystone: offsets from the centre are divided by 1 + kx dx + ky dy (dx, dy in half
	 * sides), so one side of the view takes in more of the image than the opposite one. */
	double kx, ky;
	double score;
};

#define REGION_MAX    2   /* regions tried, the busiest first (a third read none of 600) */
#define REGION_BLOCK  8   /* px of the image regions are looked for in, a block */
#define REGION_OUT    512 /* cap on the side of a region as read */
#define REGION_TARGET 300 /* a region's code as read, px: ~6.7 a module for 45 modules */
#define KEY_OUT       320 /* cap on the side of a keystone view */
#define KEY_STRENGTH  0.3 /* a keystone view's divisor runs 0.7 .. 1.3 side to side */

/*
 * Finds up to REGION_MAX regions of g (the image reduced by f) busy with edges: blocks well
 * above the frame's typical activity, joined 8-connected, the largest sums first.
 */
int region_find(const struct code_grey *g, unsigned f, struct region *out, unsigned *np);
/*
 * The region as read: r->side * r->scale px square from g, turned by r->angle and seen with
 * r's keystone: bilinear then (cheap, and the turned cases are the rarer ones), bicubic if not.
 */
int region_resample(const struct code_grey *g, const struct region *r, struct code_grey *out);

#endif
