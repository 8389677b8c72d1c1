/*
 * Replays a fuzz corpus (<FUZZ_CORPUS_DIR>/<FUZZ_CORPUS>/, tests/codes/corpus/ unless told)
 * through a harness's LLVMFuzzerTestOneInput, without libFuzzer, so make check runs it under
 * ASan/UBSan.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_CORPUS_DIR
#define FUZZ_CORPUS_DIR "tests/codes/corpus"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	const char *top = getenv("top_srcdir");
	char dir[1024];
	unsigned n = 0;
	struct dirent *de;
	DIR *d;

	if (argc > 1)
		snprintf(dir, sizeof(dir), "%s", argv[1]);
	else
		snprintf(dir, sizeof(dir), "%s/%s/%s", top ? top : ".", FUZZ_CORPUS_DIR,
		         FUZZ_CORPUS);
	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "fuzz_replay: cannot open %s\n", dir);
		return 1;
	}
	while ((de = readdir(d))) {
		char path[2048];
		uint8_t *buf;
		long len;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "rb");
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		rewind(f);
		buf = malloc(len > 0 ? (size_t)len : 1);
		if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
			LLVMFuzzerTestOneInput(buf, (size_t)len);
			n++;
		}
		free(buf);
		fclose(f);
	}
	closedir(d);
	if (n == 0) {
		fprintf(stderr, "fuzz_replay: %s: empty corpus\n", dir);
		return 1;
	}
	return 0;
}
