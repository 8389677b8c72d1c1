/* Test set: codes rendered then distorted like a phone photo of a screen (deterministic). */
#ifndef QRXFER_TESTS_CODES_PHOTO_H
#define QRXFER_TESTS_CODES_PHOTO_H

#include <stddef.h>
#include <stdint.h>

#include "codes/code.h"

#define PHOTO_W     1280
#define PHOTO_H     720
#define PHOTO_COUNT 320
#define PHOTO_SEED  20261122u

/* One generated image: a JPEG and the text its code holds. */
struct photo {
	uint8_t *jpeg; /* malloc'd */
	size_t len;
	int barcode;      /* 1: Code 128 of a numeric code, 0: QR of a token URI */
	char expect[256]; /* the URI or the digits */
	char token[CODE_TOKEN_LEN + 1];
	double coverage; /* fraction of the frame the code (with quiet zone) covers */
};

/* Renders image number index of the set made from seed, signing tokens with kr. */
int photo_make(unsigned index, uint32_t seed, const struct code_keyring *kr, struct photo *p);
void photo_release(struct photo *p);
/* The keyring the set's tokens are signed with. */
int photo_keyring(struct code_keyring **krp);

/*
 * Makes sure dir holds the set (n images, seed): NNN.jpg files and a manifest "set.txt" of
 * "FILE<TAB>barcode<TAB>EXPECTED" lines. Written to a temporary dir then renamed into place.
 */
int photo_set_ensure(const char *dir, unsigned n, uint32_t seed);

struct photo_entry {
	char file[64];
	int barcode;
	char expect[256];
};

/* Reads dir's manifest; *list is malloc'd. */
int photo_set_load(const char *dir, struct photo_entry **list, unsigned *n);

#endif
