/* libFuzzer harness: what strangers send to the reactions, move/react_parse.c. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "move/react.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char emoji[REACT_EMOJI_MAX + 1], why[160] = "", *url;
	double x = -1, y = -1;
	int err;

	err = react_parse((const char *)data, size, emoji, &x, &y, why, sizeof(why));
	if (!err &&
	    (!react_emoji_ok(emoji, strlen(emoji)) || !(x >= 0 && x <= 1) || !(y >= 0 && y <= 1)))
		abort(); /* what is taken is one emoji at a position in the frame */
	if (err && (err != EINVAL || !why[0]))
		abort(); /* a refusal says why */
	for (const char *p = why; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			abort(); /* and says it in printable ASCII (a SIP reason phrase) */
	url = malloc(size + 1);
	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';
	why[0] = '\0';
	err = react_url_ok(url, why, sizeof(why));
	if (!err && (strncasecmp(url, "https://", 8) || strpbrk(url, " \"<>")))
		abort(); /* what is shared is https and no markup */
	if (err && !why[0])
		abort();
	free(url);
	return 0;
}
