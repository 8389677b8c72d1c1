/* gen_codes DIR [N [SEED]]: writes the phone-photo-like test set (see photo.h). */
#include <stdio.h>
#include <stdlib.h>

#include "tests/codes/photo.h"

int main(int argc, char **argv)
{
	unsigned n = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : PHOTO_COUNT;
	uint32_t seed = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : PHOTO_SEED;
	int err;

	if (argc < 2) {
		fprintf(stderr, "usage: gen_codes DIR [N [SEED]]\n");
		return 2;
	}
	err = photo_set_ensure(argv[1], n, seed);
	if (err) {
		fprintf(stderr, "gen_codes: %s: %s\n", argv[1], code_strerror(err));
		return 1;
	}
	return 0;
}
