/* FNV-1a, 32 bits: the hash of our in-memory tables (not for anything a stranger must not
 * predict: keys hashed here are ids we made or values already checked). */
#ifndef QRXFER_UTIL_HASH_H
#define QRXFER_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t hash_bytes(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *b++) * 16777619u;
	return h;
}

static inline uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

#endif
