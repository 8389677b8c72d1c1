/*
 * Criterion counts a test as passed even when LeakSanitizer finds a leak in its worker, so a
 * suite's .fini calls this: a leak then crashes the test, and the suite fails.
 */
#ifndef QRXFER_TESTS_LEAKCHECK_H
#define QRXFER_TESTS_LEAKCHECK_H

#include <stdlib.h>

#include <sanitizer/lsan_interface.h>

static inline void leakcheck(void)
{
	if (__lsan_do_recoverable_leak_check())
		abort();
}

#endif
