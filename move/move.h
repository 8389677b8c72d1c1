/* The move: a new device takes the near leg of a call while its far dialog stays. */
#ifndef QRXFER_MOVE_MOVE_H
#define QRXFER_MOVE_MOVE_H

#include <sofia-sip/sip.h>

#include "sip/sip.h"

/*
 * Hook the move and the calls' records into a stack just made by sip_alloc(): its sip_move_*
 * and sip_sms_* functions (sip/sip.h) work from then on; sip_free() frees what it holds.
 * ENOMEM, or ENOSPC when the stack has no room for more hooks.
 */
int move_init(struct sip *s);

/*
 * A DTMF code (digits as SIP INFO in a call) for a feature beside the move: fn is called on the
 * loop with the leg it came on once the last digit is in (and answered), with the sender's
 * address key as source. sides: which legs may send it. The move's own [move] feature_code is
 * one of them (near side); a code that a longer one starts with waits 1.5 s for more digits.
 * EINVAL (empty, too long, not DTMF), EEXIST, ENOMEM. Call after move_init().
 */
enum { MOVE_DTMF_NEAR = 1, MOVE_DTMF_FAR = 2 };

/*
 * The words a MESSAGE's body says (the move's and its neighbours'): when the body, blanks
 * around it aside, starts with word (any case) and then a blank or its end, what follows the
 * word, blanks around it aside (*restp bytes; 0 for the word alone); else NULL. move_body_is:
 * the body is word alone.
 */
const char *move_body_word(const sip_t *sip, const char *word, size_t *restp);
int move_body_is(const sip_t *sip, const char *word);
struct leg;
typedef void move_dtmf_h(void *arg, struct leg *leg, const char *code, const char *source);
int move_dtmf_add(struct sip *s, const char *code, unsigned sides, move_dtmf_h *fn, void *arg);

/*
 * The media anchor: rtpengine at addr (udp:host:port) relays every call's media, so a move
 * re-points only the near side; A is held until B's media is seen both ways within
 * verify_secs, then may take the call back for undo_secs. Nothing when addr is empty. EINVAL
 * for a malformed addr.
 */
int move_anchor_init(struct sip *s, const char *addr, unsigned verify_secs, unsigned undo_secs);
/* Unanchored moves proved by the new device's RTCP-XR PUBLISH (RFC 6035) when on: A is held
 * until B's report, for up to verify_secs. Call after move_anchor_init(). */
int move_xr_init(struct sip *s, int on, unsigned verify_secs);

/*
 * What a feature beside the move hears of every move (code, pull, push, meeting) and adds to
 * it. Both may be NULL; they run on the loop in the order added.
 */
struct call;
struct move_observer {
	/* Header lines ("Name: value", CRLF between two) for the INVITE or the 200 toward the
	 * device about to take the near leg of c: appended to out, which holds len bytes. */
	void (*new_device_headers)(void *arg, struct call *c, char *out, size_t len);
	/* A move of c is done: leg is the near leg now (the new device's). */
	void (*moved)(void *arg, struct call *c, struct leg *leg);
};
#define MOVE_OBSERVERS_MAX 4

/* Add an observer (kept by pointer, with arg); ENOSPC past MOVE_OBSERVERS_MAX. */
int move_observer_add(struct sip *s, const struct move_observer *o, void *arg);

#endif
