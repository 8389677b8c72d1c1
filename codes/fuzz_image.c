/* libFuzzer harness: image decoding (PNG, JPEG) under small caps, then scanning. */
#include <stdint.h>
#include <stdlib.h>

#include "codes/code.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct code_scan_opts o;
	struct code_grey g = {0};
	struct code_scan_result res;

	code_scan_opts_default(&o);
	o.lim.max_bytes = 1 << 20;
	o.lim.max_width = o.lim.max_height = 2048;
	o.lim.max_pixels = 1 << 20;
	o.budget_ms = 50;
	if (code_image_decode(data, size, &o.lim, &g) == 0) {
		if (!g.px || g.w == 0 || g.h == 0 || g.w > 2048 || g.h > 2048)
			abort(); /* success means a real image within the caps */
		/* Scanning is slow on big frames; the decoder is what is under test. */
		if ((uint64_t)g.w * g.h <= 256 * 256)
			code_scan_grey(&g, &o, &res);
		code_grey_release(&g);
	}
	return 0;
}
