/*
 * Own devices (issue 13): the bindings that pass through us (AOR -> contacts, each with the flow
 * its REGISTER came on), a pull by another device of the same AOR (it dials [own] pull_code),
 * and a push to the user's other devices (MESSAGE "mine", REFER to sip:mine@, *81, HTTP), the
 * nearest first when a proximity hint says which. Both are moves: the move's state machine,
 * media switch and rollback, with the code check replaced by the binding check.
 */
#ifndef QRXFER_MOVE_OWN_H
#define QRXFER_MOVE_OWN_H

#include <stdint.h>

#include "sip/sip.h"

struct own_conf {
	const char *pull_code; /* the user part a device dials to pull its AOR's call ("*11") */
	const char *push_code; /* DTMF asking for a push ("*81"); NULL or "": none */
	int confirm;           /* a pull asks as [confirm] policy says; else it goes at once */
	unsigned near_ttl;     /* seconds a proximity hint counts */
	unsigned near_ring;    /* seconds the nearest device rings alone before the others */
	unsigned ring_timeout; /* seconds a push rings before it gives up (A keeps the call) */
};

/* Hook own devices into a stack after move_init(). ENOMEM, ENOSPC (no room for hooks). */
int own_init(struct sip *s, const struct own_conf *conf);

/*
 * Ring the other devices of the AOR of call_id's near party, to take the call (a push). cb
 * gets the move once the devices ring, or an error: ENOENT no such call, EAGAIN not answered
 * yet, EBUSY a move under way, ENODEV no other live device, ENOTSUP no store or no own devices.
 */
int own_push(struct sip *s, const char *call_id, const char *source, sip_move_h *cb, void *arg);

/*
 * A proximity hint: device (a registered contact URI or flow) of aor was seen near its user at
 * seen_at (seconds since the epoch; 0: now). EINVAL for an empty or too long field.
 */
int own_near(struct sip *s, const char *aor, const char *device, int64_t seen_at);

#endif
