/* util/: the growing buffer, the rate-limited log line, the hash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "util/buf.h"
#include "util/hash.h"
#include "util/log.h"

Test(buf, grows_past_its_first_block_and_stays_terminated)
{
	struct buf b = {0};
	size_t len;
	char *s;

	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%04d,", i);
	cr_assert_eq(b.len, 5000);
	cr_assert_eq(b.data[b.len], '\0');
	cr_assert(!strncmp(b.data + 4995, "0999,", 5));
	s = buf_take(&b, &len);
	cr_assert_eq(len, 5000);
	cr_assert_null(b.data);
	free(s);
}

Test(buf, long_printf_is_whole)
{
	struct buf b = {0};
	char big[3000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf_printf(&b, "<%s>", big);
	cr_assert_eq(b.len, sizeof(big) + 1);
	cr_assert_eq(b.data[0], '<');
	cr_assert_eq(b.data[b.len - 1], '>');
	buf_release(&b);
}

Test(buf, html_escapes_the_five_and_keeps_the_rest)
{
	struct buf b = {0};

	buf_html(&b, "a<b>&\"c'd");
	cr_assert_str_eq(b.data, "a&lt;b&gt;&amp;&quot;c&#39;d");
	buf_release(&b);
}

Test(buf, empty_take_is_an_empty_string)
{
	struct buf b = {0};
	size_t len = 7;
	char *s = buf_take(&b, &len);

	cr_assert_not_null(s);
	cr_assert_str_eq(s, "");
	cr_assert_eq(len, 0);
	free(s);
}

Test(buf, a_failed_buffer_takes_as_null)
{
	struct buf b = {0};

	buf_puts(&b, "abc");
	b.failed = true;
	buf_puts(&b, "def");
	cr_assert_eq(b.len, 3);
	cr_assert_null(buf_take(&b, NULL));
}

Test(hash, is_fnv1a)
{
	/* FNV-1a 32-bit test vectors (draft-eastlake-fnv): "" and "a" and "foobar". */
	cr_assert_eq(hash_str(""), 0x811c9dc5u);
	cr_assert_eq(hash_str("a"), 0xe40c292cu);
	cr_assert_eq(hash_str("foobar"), 0xbf9cf968u);
	cr_assert_eq(hash_bytes("foobar", 6), hash_str("foobar"));
}

/* log_limited writes at most per_second lines a second, then one line counting the rest. */
Test(log, limited_lines_then_a_count)
{
	struct log_limit l = {.per_second = 3};
	char path[] = "/tmp/qrxfer-test-util.XXXXXX", line[256];
	int fd = mkstemp(path), saved = dup(2), lines = 0, counted = 0;
	time_t start = time(NULL);
	FILE *f;

	cr_assert_geq(fd, 0);
	/* Start at the beginning of a second so the ten lines fall in one. */
	while (time(NULL) == start)
		usleep(1000);
	dup2(fd, 2);
	for (int i = 0; i < 10; i++)
		log_limited(&l, LOG_LEVEL_INFO, "test", "line %d", i);
	while (time(NULL) == start + 1)
		usleep(1000);
	log_limited(&l, LOG_LEVEL_INFO, "test", "next second");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fdopen(fd, "r");
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "qrxfer: test: line "))
			lines++;
		if (strstr(line, "7 more such lines in the second before"))
			counted++;
	}
	fclose(f);
	unlink(path);
	cr_assert_eq(lines, 3);
	cr_assert_eq(counted, 1);
}
