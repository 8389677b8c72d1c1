/* The image worker: one util/queue thread (sip/move.c bounds the images it queues itself). */
#include <errno.h>
#include <stdlib.h>

#include "sip/b2bua.h"
#include "util/queue.h"

struct sip_work {
	struct queue *q;
};

int sip_work_alloc(struct sip_work **wp, su_root_t *root)
{
	struct sip_work *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return ENOMEM;
	err = queue_alloc(&w->q, root, 1, 0);
	if (err) {
		free(w);
		return err;
	}
	*wp = w;
	return 0;
}

int sip_work_submit(struct sip_work *w, sip_work_h *run, sip_work_h *done, void *arg)
{
	return queue_submit(w->q, 0, run, done, arg);
}

void sip_work_free(struct sip_work *w)
{
	if (!w)
		return;
	queue_free(w->q);
	free(w);
}
