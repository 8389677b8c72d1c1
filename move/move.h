/* The move: a new device takes the near leg of a call while its far dialog stays. */
#ifndef QRXFER_MOVE_MOVE_H
#define QRXFER_MOVE_MOVE_H

#include "sip/sip.h"

/*
 * Hook the move and the calls' records into a stack just made by sip_alloc(): its sip_move_*
 * and sip_sms_* functions (sip/sip.h) work from then on; sip_free() frees what it holds.
 * ENOMEM, or ENOSPC when the stack has no room for more hooks.
 */
int move_init(struct sip *s);

#endif
