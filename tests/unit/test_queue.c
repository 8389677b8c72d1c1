/* util/queue: order, urgent jobs, completions on the loop thread, bounds and shutdown. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sofia-sip/su_wait.h>

#include "tests/unit/leakcheck.h"
#include "util/queue.h"

#define NJOBS 64

/* The loop under test and what the jobs saw. */
static su_root_t *root;
static pthread_t loop_thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int gate_open; /* jobs that wait on the gate block until it opens */
static int started, ran[NJOBS], nran;
static int completed[NJOBS], ncompleted;
static int work_on_loop, done_off_loop;

struct job {
	int id;
	int gated;
	struct queue *q; /* for a done that submits again */
	int resubmit;
	int resubmit_err;
};

static void setup(void)
{
	cr_assert_eq(su_init(), 0);
	root = su_root_create(NULL);
	cr_assert_not_null(root);
	loop_thread = pthread_self();
	gate_open = started = nran = ncompleted = work_on_loop = done_off_loop = 0;
}

static void teardown(void)
{
	su_root_destroy(root);
	root = NULL;
	su_deinit();
	leakcheck();
}

TestSuite(queue, .init = setup, .fini = teardown);

static void gate_set(int open)
{
	pthread_mutex_lock(&lock);
	gate_open = open;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void work(void *arg)
{
	struct job *j = arg;

	if (pthread_equal(pthread_self(), loop_thread))
		work_on_loop++;
	pthread_mutex_lock(&lock);
	started++;
	pthread_cond_broadcast(&cond);
	while (j->gated && !gate_open)
		pthread_cond_wait(&cond, &lock);
	ran[nran++] = j->id;
	pthread_mutex_unlock(&lock);
}

static void work_and_free(void *arg)
{
	work(arg);
	free(arg);
}

static void done(void *arg)
{
	struct job *j = arg;

	if (!pthread_equal(pthread_self(), loop_thread))
		done_off_loop++;
	completed[ncompleted++] = j->id;
	if (j->resubmit) {
		j->resubmit = 0;
		j->id += 100;
		j->resubmit_err = queue_submit(j->q, 0, work, done, j);
	}
}

/* Steps the loop until n completions arrived, or about 10 s. */
static void wait_completed(int n)
{
	for (int spins = 0; ncompleted < n && spins < 1000; spins++)
		su_root_step(root, 10);
	cr_assert_eq(ncompleted, n, "completions: %d of %d", ncompleted, n);
}

/* Waits until a worker has taken n jobs. */
static void wait_started(int n)
{
	pthread_mutex_lock(&lock);
	while (started < n)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
}

static int ran_count(void)
{
	int n;

	pthread_mutex_lock(&lock);
	n = nran;
	pthread_mutex_unlock(&lock);
	return n;
}

Test(queue, jobs_run_in_order_and_complete_on_the_loop_thread)
{
	struct job jobs[NJOBS];
	struct queue *q = NULL;

	cr_assert_eq(queue_alloc(&q, root, 1, 0), 0);
	for (int i = 0; i < NJOBS; i++) {
		jobs[i] = (struct job){.id = i};
		cr_assert_eq(queue_submit(q, 0, work, done, &jobs[i]), 0);
	}
	wait_completed(NJOBS);
	for (int i = 0; i < NJOBS; i++) {
		cr_assert_eq(ran[i], i, "ran %d at %d", ran[i], i);
		cr_assert_eq(completed[i], i, "completed %d at %d", completed[i], i);
	}
	cr_assert_eq(work_on_loop, 0, "work ran on the loop thread");
	cr_assert_eq(done_off_loop, 0, "done ran off the loop thread");
	queue_free(q);
}

Test(queue, urgent_jobs_overtake_queued_ones_in_their_own_order)
{
	struct job first = {.id = 0, .gated = 1}, a = {.id = 1}, b = {.id = 2};
	struct job u1 = {.id = 3}, u2 = {.id = 4};
	struct queue *q = NULL;
	static const int want[] = {0, 3, 4, 1, 2};

	cr_assert_eq(queue_alloc(&q, root, 1, 0), 0);
	cr_assert_eq(queue_submit(q, 0, work, done, &first), 0);
	wait_started(1); /* the worker holds first: the others queue behind it */
	cr_assert_eq(queue_submit(q, 0, work, done, &a), 0);
	cr_assert_eq(queue_submit(q, 0, work, done, &b), 0);
	cr_assert_eq(queue_submit(q, QUEUE_URGENT, work, done, &u1), 0);
	cr_assert_eq(queue_submit(q, QUEUE_URGENT, work, done, &u2), 0);
	gate_set(1);
	wait_completed(5);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(ran[i], want[i], "ran %d at %d, not %d", ran[i], i, want[i]);
	queue_free(q);
}

/* Closing runs what is still queued and delivers every completion on the closing thread. */
Test(queue, free_drains_pending_jobs_and_refuses_new_ones)
{
	struct job jobs[8];
	struct queue *q = NULL;

	cr_assert_eq(queue_alloc(&q, root, 1, 0), 0);
	for (int i = 0; i < 8; i++) {
		jobs[i] = (struct job){.id = i, .gated = i == 0, .q = q, .resubmit = i == 7};
		cr_assert_eq(queue_submit(q, 0, work, done, &jobs[i]), 0);
	}
	cr_assert_eq(ran_count(), 0);
	gate_set(1); /* no loop step from here on: queue_free must deliver */
	queue_free(q);
	cr_assert_eq(nran, 8);
	cr_assert_eq(ncompleted, 8);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(completed[i], i);
	cr_assert_eq(done_off_loop, 0);
	cr_assert_eq(jobs[7].resubmit_err, ESHUTDOWN, "a done submitting while closing");
}

Test(queue, a_done_may_submit_again)
{
	struct job j = {.id = 1, .resubmit = 1};
	struct queue *q = NULL;

	cr_assert_eq(queue_alloc(&q, root, 1, 0), 0);
	j.q = q;
	cr_assert_eq(queue_submit(q, 0, work, done, &j), 0);
	wait_completed(2);
	cr_assert_eq(j.resubmit_err, 0);
	cr_assert_eq(completed[1], 101);
	queue_free(q);
}

Test(queue, fire_and_forget_jobs_need_no_loop)
{
	struct queue *q = NULL;

	cr_assert_eq(queue_alloc(&q, root, 1, 0), 0);
	for (int i = 0; i < 4; i++) {
		struct job *j = calloc(1, sizeof(*j));

		cr_assert_not_null(j);
		j->id = i;
		cr_assert_eq(queue_submit(q, 0, work_and_free, NULL, j), 0);
	}
	for (int spins = 0; ran_count() < 4 && spins < 1000; spins++)
		usleep(10000);
	cr_assert_eq(ran_count(), 4);
	cr_assert_eq(ncompleted, 0);
	queue_free(q);
}

Test(queue, a_bounded_queue_refuses_past_its_limit_until_jobs_complete)
{
	struct job a = {.id = 0, .gated = 1}, b = {.id = 1}, c = {.id = 2};
	struct queue *q = NULL;

	cr_assert_eq(queue_alloc(&q, root, 1, 2), 0);
	cr_assert_eq(queue_submit(q, 0, work, done, &a), 0);
	cr_assert_eq(queue_submit(q, QUEUE_URGENT, work, done, &b), 0);
	cr_assert_eq(queue_submit(q, 0, work, done, &c), ENOSPC);
	gate_set(1);
	wait_completed(2);
	cr_assert_eq(queue_submit(q, 0, work, done, &c), 0, "room again once completed");
	wait_completed(3);
	queue_free(q);
}

Test(queue, several_workers_complete_every_job_once)
{
	struct job jobs[NJOBS];
	struct queue *q = NULL;
	int seen[NJOBS] = {0};

	cr_assert_eq(queue_alloc(&q, root, 4, 0), 0);
	for (int i = 0; i < NJOBS; i++) {
		jobs[i] = (struct job){.id = i};
		cr_assert_eq(queue_submit(q, 0, work, done, &jobs[i]), 0);
	}
	wait_completed(NJOBS);
	for (int i = 0; i < NJOBS; i++)
		seen[completed[i]]++;
	for (int i = 0; i < NJOBS; i++)
		cr_assert_eq(seen[i], 1, "job %d completed %d times", i, seen[i]);
	cr_assert_eq(done_off_loop, 0);
	queue_free(q);
}

Test(queue, bad_arguments)
{
	struct queue *q = NULL;

	cr_assert_eq(queue_alloc(&q, NULL, 1, 0), EINVAL);
	cr_assert_null(q);
	cr_assert_eq(queue_alloc(&q, root, 0, 0), 0, "0 workers means one");
	cr_assert_eq(queue_submit(q, 0, NULL, done, NULL), EINVAL);
	queue_free(q);
	queue_free(NULL);
}

/* util/soon: work for the loop's next turn. */
#include "util/soon.h"

struct slices {
	struct soon *soon;
	int runs, left;
};

/* A slice of work that asks for the next while some is left. */
static void slice(void *arg)
{
	struct slices *sl = arg;

	sl->runs++;
	if (--sl->left > 0)
		soon_run(sl->soon);
}

Test(queue, soon_runs_once_a_turn_while_asked_and_never_after_free)
{
	struct slices sl = {.left = 3};

	cr_assert_eq(soon_alloc(&sl.soon, root, slice, &sl), 0);
	soon_run(sl.soon);
	soon_run(sl.soon); /* asked twice before it ran: it runs once */
	cr_assert_eq(sl.runs, 0, "never inside soon_run()");
	/* a slice a turn, each turn without a wait (timeout 0): the eventfd is ready */
	for (int turn = 1; turn <= 3; turn++) {
		su_root_step(root, 0);
		cr_assert_eq(sl.runs, turn, "turn %d ran %d slices", turn, sl.runs);
	}
	su_root_step(root, 0);
	cr_assert_eq(sl.runs, 3, "no slice asked for: none runs");
	soon_run(sl.soon);
	soon_free(sl.soon); /* freed before its turn: it never runs */
	su_root_step(root, 0);
	cr_assert_eq(sl.runs, 3);
	cr_assert_eq(soon_alloc(&sl.soon, NULL, slice, &sl), EINVAL);
	cr_assert_null(sl.soon);
}
