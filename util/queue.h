/*
 * The one worker-to-loop queue: work(arg) runs on a worker thread, then done(arg) on the thread
 * of the su_root the queue reports to.
 *
 * Contract. Jobs start in the order they were submitted, except that QUEUE_URGENT jobs overtake
 * the queued ordinary ones (in order among themselves). With one worker, completions come back
 * in the order the jobs ran; with more, in the order they finished. arg belongs to the caller
 * throughout: the queue never frees it. done may be NULL (fire and forget): then nothing runs
 * on the loop and work must let go of arg itself. queue_submit() and queue_free() are called
 * on the loop thread; done may submit again.
 */
#ifndef QRXFER_UTIL_QUEUE_H
#define QRXFER_UTIL_QUEUE_H

struct su_root_s;
struct queue;

/* Runs a job's work on a worker, or its completion on the loop. */
typedef void(queue_h)(void *arg);

enum queue_flags {
	QUEUE_URGENT = 1, /* overtakes the ordinary jobs still queued */
};

/* Starts nthreads workers (at least 1) reporting to root; at most max jobs submitted and not
 * yet completed (0: no bound). */
int queue_alloc(struct queue **qp, struct su_root_s *root, unsigned nthreads, unsigned max);

/* Queues a job: 0, ENOSPC when max jobs are in flight, ESHUTDOWN once queue_free() began, or
 * ENOMEM. */
int queue_submit(struct queue *q, unsigned flags, queue_h *work, queue_h *done, void *arg);

/* Runs every job still queued, delivers their completions, stops the workers and frees the
 * queue; never from inside a done. Submitting meanwhile (from a done) gets ESHUTDOWN. */
void queue_free(struct queue *q);

#endif
