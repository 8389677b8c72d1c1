/* A worker thread for slow work (image decoding), reporting back to the loop by a pipe. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "sip/b2bua.h"

struct job {
	struct job *next;
	sip_work_h *run, *done;
	void *arg;
};

struct sip_work {
	su_root_t *root;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *todo, **todo_tail; /* for the worker */
	struct job *done, **done_tail; /* for the loop */
	int pipe[2];
	int wait_index;
	int stop;
	int started;
};

static void *worker(void *arg)
{
	struct sip_work *w = arg;
	struct job *j;
	char b = 1;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->todo && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->todo)
			break;
		j = w->todo;
		w->todo = j->next;
		if (!w->todo)
			w->todo_tail = &w->todo;
		pthread_mutex_unlock(&w->lock);
		j->run(j->arg);
		pthread_mutex_lock(&w->lock);
		j->next = NULL;
		*w->done_tail = j;
		w->done_tail = &j->next;
		if (write(w->pipe[1], &b, 1) < 0) {
			/* The pipe is full: the loop has a wake-up pending already. */
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int on_done(su_root_magic_t *m, su_wait_t *wt, su_wakeup_arg_t *arg)
{
	struct sip_work *w = (struct sip_work *)arg;
	struct job *list, *j;
	char buf[64];

	while (read(w->pipe[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&w->lock);
	list = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	pthread_mutex_unlock(&w->lock);
	while ((j = list)) {
		list = j->next;
		j->done(j->arg);
		free(j);
	}
	return 0;
}

int sip_work_alloc(struct sip_work **wp, su_root_t *root)
{
	struct sip_work *w = calloc(1, sizeof(*w));
	su_wait_t wt[1];
	int err;

	if (!w)
		return ENOMEM;
	w->root = root;
	w->todo_tail = &w->todo;
	w->done_tail = &w->done;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (pipe(w->pipe)) {
		err = errno;
		goto fail;
	}
	fcntl(w->pipe[0], F_SETFL, O_NONBLOCK);
	fcntl(w->pipe[1], F_SETFL, O_NONBLOCK);
	su_wait_create(wt, w->pipe[0], SU_WAIT_IN);
	w->wait_index = su_root_register(root, wt, on_done, (su_wakeup_arg_t *)w, 0);
	if (w->wait_index <= 0) {
		err = EIO;
		goto fail;
	}
	err = pthread_create(&w->thread, NULL, worker, w);
	if (err)
		goto fail;
	w->started = 1;
	*wp = w;
	return 0;
fail:
	sip_work_free(w);
	return err;
}

int sip_work_submit(struct sip_work *w, sip_work_h *run, sip_work_h *done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return ENOMEM;
	j->run = run;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->lock);
	*w->todo_tail = j;
	w->todo_tail = &j->next;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

/* Finishes queued jobs, delivers their completions, and frees the worker. */
void sip_work_free(struct sip_work *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = 1;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
		on_done(NULL, NULL, (su_wakeup_arg_t *)w);
	}
	if (w->wait_index > 0)
		su_root_deregister(w->root, w->wait_index);
	if (w->pipe[0] > 0) {
		close(w->pipe[0]);
		close(w->pipe[1]);
	}
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
