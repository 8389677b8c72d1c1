/* Test set: codes rendered then distorted like a phone photo of a screen (deterministic). */
#ifndef QRXFER_TESTS_CODES_PHOTO_H
#define QRXFER_TESTS_CODES_PHOTO_H

#include <stddef.h>
#include <stdint.h>

#include "codes/code.h"

#define PHOTO_W     1280
#define PHOTO_H     720
#define PHOTO_COUNT 1600 /* the bench's set */
#define PHOTO_SEED  20261122u

/* How a frame was blurred; its size in px is the motion length, disc diameter or Gaussian FWHM. */
enum photo_blur { PHOTO_BLUR_NONE, PHOTO_BLUR_MOTION, PHOTO_BLUR_DEFOCUS, PHOTO_BLUR_GAUSS };

/* The physical conditions of one frame, kept in the manifest so results can be bucketed. */
struct photo_cond {
	double ppm;     /* camera px per module at the code's centre (sqrt of the local area) */
	double blur_px; /* blur kernel size in px (0: none) */
	int blur_kind;  /* enum photo_blur */
	int quality;    /* JPEG quality */
	double rot;     /* in-plane rotation, degrees */
	double tilt;    /* perspective: angle between the screen and the sensor, degrees */
	double moire;   /* screen px per module (the screen's pixel grid the camera aliases) */
	int low_light;  /* dim and noisy */
	int glare;      /* a bright spot added */
};

/* One generated image: a JPEG and the text its code holds. */
struct photo {
	uint8_t *jpeg; /* malloc'd */
	size_t len;
	int barcode;      /* 1: Code 128 of a numeric code, 0: QR of a token URI */
	char expect[256]; /* the URI or the digits */
	char token[CODE_TOKEN_LEN + 1];
	struct photo_cond cond;
};

/* Renders image number index of the set made from seed, signing tokens with kr. An image
 * depends only on (index, seed): the first n images of any larger set are the same. */
int photo_make(unsigned index, uint32_t seed, const struct code_keyring *kr, struct photo *p);
void photo_release(struct photo *p);
/* The keyring the set's tokens are signed with. */
int photo_keyring(struct code_keyring **krp);

/*
 * Makes sure dir holds the set (n images, seed): NNNN.jpg files and a manifest "set.txt" of
 * "FILE<TAB>barcode<TAB>conditions...<TAB>EXPECTED" lines. Written to a temporary dir then
 * renamed into place.
 */
int photo_set_ensure(const char *dir, unsigned n, uint32_t seed);

struct photo_entry {
	char file[64];
	int barcode;
	char expect[256];
	struct photo_cond cond;
};

/* Reads dir's manifest; *list is malloc'd. */
int photo_set_load(const char *dir, struct photo_entry **list, unsigned *n);

/*
 * Buckets, by physical conditions only. Size: px per module < 2.5, 2.5-3.5, 3.5-5, >= 5.
 * Blur: kernel size in modules (blur_px / ppm) none (< 0.25), light (0.25-1), heavy (> 1).
 *
 * Legible ("a phone camera would still show it legibly"), fixed before the reader was tuned:
 * at least 2.5 px per module and a blur kernel of at most one module. Sampling needs two px a
 * module at the very least; the half px more is what a 45 degree turn and JPEG's 8x8 blocks
 * take. A kernel wider than a module spreads a lone light module over its dark neighbours.
 */
#define PHOTO_SIZE_BUCKETS 4
#define PHOTO_BLUR_BUCKETS 3
unsigned photo_size_bucket(const struct photo_cond *c);
unsigned photo_blur_bucket(const struct photo_cond *c);
const char *photo_size_name(unsigned b);
const char *photo_blur_name(unsigned b);
int photo_legible(const struct photo_cond *c);

#endif
