/* libFuzzer harness: token and URI parsing (verify, hash, extraction from either URI form). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codes/code.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = "fuzz-key-0123456789abcdef0123456";
	static struct code_keyring *kr;
	char tok[CODE_TOKEN_LEN + 1];
	uint8_t hash[CODE_HASH_LEN];
	uint64_t move;
	time_t exp;
	char *s;

	if (!kr && (code_keyring_alloc(&kr) || code_keyring_add(kr, 0, key, sizeof(key))))
		abort();
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (code_token_verify(kr, s, 0, &move, &exp) == 0 && code_token_hash(s, hash) != 0)
		abort(); /* what verifies must hash */
	code_token_hash(s, hash);
	if (code_uri_token(s, tok, sizeof(tok)) == 0) {
		if (strlen(tok) != CODE_TOKEN_LEN || code_token_hash(tok, hash) != 0)
			abort(); /* an extracted token is always well formed */
		code_token_verify(kr, tok, 0, NULL, NULL);
	}
	free(s);
	return 0;
}
