/*
 * Workers report to the loop through an eventfd registered with su_root, not su_msg/su_clone:
 * the SIP root runs with su_root_threading(root, 0), under which su_clone_start() starts no
 * thread, and su_msg needs a su task on the sending side; a plain thread writing an eventfd
 * needs neither, and queue_free() can deliver the last completions by a direct call.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#define SU_WAKEUP_ARG_T struct queue
#include <sofia-sip/su_wait.h>

#include "util/log.h"
#include "util/queue.h"

/* One job. Owner: the list it is on, then the worker running it. */
struct item {
	STAILQ_ENTRY(item) link;
	queue_h *work, *done;
	void *arg;
};

/* A FIFO: items join at the tail and leave at the head. */
STAILQ_HEAD(fifo, item);

struct queue {
	su_root_t *root;
	su_wait_t wait;
	int reg;              /* su_root_register()'s index, 0 until registered */
	int efd;              /* "completions ready", from the workers to the loop */
	pthread_mutex_t lock; /* guards the three lists, inflight and stopping */
	pthread_cond_t cond;
	struct fifo urgent, todo; /* for the workers: urgent first */
	struct fifo done;         /* for the loop */
	unsigned max, inflight;   /* submitted and not yet completed */
	int stopping;
	unsigned nthreads; /* started */
	pthread_t *threads;
};

static void fifo_init(struct fifo *f)
{
	STAILQ_INIT(f);
}

static void fifo_push(struct fifo *f, struct item *it)
{
	STAILQ_INSERT_TAIL(f, it, link);
}

static struct item *fifo_pop(struct fifo *f)
{
	struct item *it = STAILQ_FIRST(f);

	if (it)
		STAILQ_REMOVE_HEAD(f, link);
	return it;
}

static void *worker(void *arg)
{
	struct queue *q = arg;
	struct item *it;
	uint64_t one = 1;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (STAILQ_EMPTY(&q->urgent) && STAILQ_EMPTY(&q->todo) && !q->stopping)
			pthread_cond_wait(&q->cond, &q->lock);
		if (!(it = fifo_pop(&q->urgent)) && !(it = fifo_pop(&q->todo)))
			break; /* stopping, and nothing left to run */
		pthread_mutex_unlock(&q->lock);
		it->work(it->arg);
		pthread_mutex_lock(&q->lock);
		if (!it->done) {
			q->inflight--;
			free(it);
			continue;
		}
		fifo_push(&q->done, it);
		/* A full counter means a wake-up is pending already. */
		if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			LOG_ERR("queue", "wake the loop: %s", strerror(errno));
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* Runs the completions that are ready, one at a time so that each may submit again. */
static void deliver(struct queue *q)
{
	struct item *it;

	for (;;) {
		pthread_mutex_lock(&q->lock);
		it = fifo_pop(&q->done);
		pthread_mutex_unlock(&q->lock);
		if (!it)
			return;
		it->done(it->arg);
		pthread_mutex_lock(&q->lock);
		q->inflight--;
		pthread_mutex_unlock(&q->lock);
		free(it);
	}
}

static int on_ready(su_root_magic_t *magic, su_wait_t *w, struct queue *q)
{
	uint64_t count;

	if (read(q->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		LOG_ERR("queue", "read completions: %s", strerror(errno));
	deliver(q);
	return 0;
}

int queue_alloc(struct queue **qp, su_root_t *root, unsigned nthreads, unsigned max)
{
	struct queue *q;
	int e = 0;

	if (!root)
		return EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return ENOMEM;
	q->root = root;
	q->max = max;
	fifo_init(&q->urgent);
	fifo_init(&q->todo);
	fifo_init(&q->done);
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	q->threads = calloc(nthreads ? nthreads : 1, sizeof(*q->threads));
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!q->threads || q->efd < 0) {
		e = q->threads ? errno : ENOMEM;
		goto out;
	}
	if (su_wait_create(&q->wait, q->efd, SU_WAIT_IN) < 0) {
		e = EIO;
		goto out;
	}
	q->reg = su_root_register(root, &q->wait, on_ready, q, 0);
	if (q->reg <= 0) {
		q->reg = 0;
		e = EIO;
		goto out;
	}
	for (; q->nthreads < (nthreads ? nthreads : 1); q->nthreads++) {
		e = pthread_create(&q->threads[q->nthreads], NULL, worker, q);
		if (e)
			goto out;
	}
out:
	if (e) {
		queue_free(q); /* the caller logs */
		return e;
	}
	*qp = q;
	return 0;
}

int queue_submit(struct queue *q, unsigned flags, queue_h *work, queue_h *done, void *arg)
{
	struct item *it;
	int e = 0;

	if (!q || !work)
		return EINVAL;
	it = malloc(sizeof(*it));
	if (!it)
		return ENOMEM;
	it->work = work;
	it->done = done;
	it->arg = arg;
	pthread_mutex_lock(&q->lock);
	if (q->stopping)
		e = ESHUTDOWN;
	else if (q->max && q->inflight >= q->max)
		e = ENOSPC;
	if (!e) {
		fifo_push(flags & QUEUE_URGENT ? &q->urgent : &q->todo, it);
		q->inflight++;
		pthread_cond_signal(&q->cond);
	}
	pthread_mutex_unlock(&q->lock);
	if (e)
		free(it);
	return e;
}

void queue_free(struct queue *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->stopping = 1;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	for (unsigned i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	deliver(q);
	if (q->reg)
		su_root_deregister(q->root, q->reg);
	if (q->efd >= 0)
		close(q->efd);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q->threads);
	free(q);
}
