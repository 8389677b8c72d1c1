/* Work for the loop's next turn: an eventfd registered with su_root (util/soon.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SU_WAKEUP_ARG_T struct soon
#include <sofia-sip/su_wait.h>

#include "util/log.h"
#include "util/soon.h"

struct soon {
	su_root_t *root;
	su_wait_t wait;
	int reg; /* su_root_register()'s index, 0 until registered */
	int efd;
	int asked; /* written to efd, not yet run */
	soon_h *f;
	void *arg;
};

static int on_ready(su_root_magic_t *magic, su_wait_t *w, struct soon *s)
{
	uint64_t count;

	(void)magic;
	(void)w;
	if (read(s->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		LOG_ERR("soon", "read: %s", strerror(errno));
	s->asked = 0;
	s->f(s->arg);
	return 0;
}

int soon_alloc(struct soon **sp, su_root_t *root, soon_h *f, void *arg)
{
	struct soon *s;
	int e = 0;

	*sp = NULL;
	if (!root || !f)
		return EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return ENOMEM;
	s->root = root;
	s->f = f;
	s->arg = arg;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0)
		e = errno;
	else if (su_wait_create(&s->wait, s->efd, SU_WAIT_IN) < 0)
		e = EIO;
	else if ((s->reg = su_root_register(root, &s->wait, on_ready, s, 0)) <= 0) {
		s->reg = 0;
		e = EIO;
	}
	if (e) {
		soon_free(s);
		return e;
	}
	*sp = s;
	return 0;
}

void soon_run(struct soon *s)
{
	uint64_t one = 1;

	if (!s || s->asked)
		return;
	if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
		LOG_ERR("soon", "write: %s", strerror(errno));
		return;
	}
	s->asked = 1;
}

void soon_free(struct soon *s)
{
	if (!s)
		return;
	if (s->reg)
		su_root_deregister(s->root, s->reg); /* destroys s->wait */
	else if (s->efd >= 0)
		su_wait_destroy(&s->wait);
	if (s->efd >= 0)
		close(s->efd);
	free(s);
}
