/* libFuzzer harness: the API's JSON bodies (POST /v1/moves/{id}/refer), web/forms.c. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web/forms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mod_api_refer r;
	char why[256] = "";
	int err;

	err = mod_api_refer_parse((const char *)data, size, &r, why, sizeof(why));
	if (err == 0 && !mod_api_valid_uri(r.target))
		abort(); /* what is accepted is a URI we would send */
	if (err && ((err != EBADMSG && err != EINVAL) || !why[0]))
		abort(); /* a refusal says why */
	return 0;
}
