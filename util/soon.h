/*
 * Work the loop runs on its next turn, after the I/O that is ready then: for work cut into
 * slices (a restart reading thousands of calls back) that must neither hold the loop nor wait.
 *
 * Why not a su_timer set to 0 ms: su_timer_expire() compares a timer re-armed inside a
 * callback with the time it read before the callbacks ran, so the loop then sleeps as long as
 * the slice took (a slice of 20 ms, then 20 ms asleep). An eventfd registered with su_root
 * wakes the next su_port_wait() at once.
 */
#ifndef QRXFER_UTIL_SOON_H
#define QRXFER_UTIL_SOON_H

struct su_root_s;
struct soon;

typedef void(soon_h)(void *arg);

/* Makes one for root (on root's thread): f(arg) runs on a turn after each soon_run(). */
int soon_alloc(struct soon **sp, struct su_root_s *root, soon_h *f, void *arg);

/* Asks for f to run on the loop's next turn; asked again before it ran, it runs once. */
void soon_run(struct soon *s);

/* Unregisters and frees it (NULL is fine); f does not run after this. */
void soon_free(struct soon *s);

#endif
