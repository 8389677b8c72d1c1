/* The move: a new device takes the near leg of a call while its far dialog stays. */
#ifndef QRXFER_MOVE_MOVE_H
#define QRXFER_MOVE_MOVE_H

#include "sip/b2bua.h"

/* An INVITE that presents a code (m.<token>, *88<digits>, Replaces): 1 if taken. */
int move_invite(struct sip *s, nua_handle_t *nh, const sip_t *sip, msg_t *req);

/* A response on a leg of a call with a move: 1 if it was the move's. */
int move_invite_response(struct move *m, struct leg *leg, int status, const char *phrase,
                         const sip_t *sip);

/* An ACK on a leg of a call with a move: 1 if it was the move's. */
int move_ack(struct move *m, struct leg *leg, const sip_t *sip);

/* A BYE or CANCEL on leg: 1 if the move keeps the call going without it. */
int move_leg_left(struct move *m, struct leg *leg);

/* The stack let go of leg: 1 if the move keeps the call going without it. */
int move_leg_terminated(struct move *m, struct leg *leg);

/* The call is ending (C hung up, shutdown): the move fails cleanly. */
void move_call_ending(struct move *m);

/* The call is freed: forget it. */
void move_call_gone(struct move *m);

/* In-dialog REFER, MESSAGE and INFO that ask for a move or answer a question: 1 if taken. */
int move_refer(struct sip *s, struct leg *leg, nua_handle_t *nh, const sip_t *sip, tagi_t tags[]);
/* Where a code holder may have us call: out is the URI, *direct says not through the upstream;
 * EPERM for a target outside our domain and [move] dial_domains, EINVAL for a malformed one. */
int move_dial_target(struct sip *s, const char *target, char *out, size_t len, int *direct);
int move_message(struct sip *s, struct leg *leg, nua_handle_t *nh, const sip_t *sip);
int move_info(struct sip *s, struct leg *leg, const sip_t *sip);

/* Events on handles a move made or holds outside a call (redeeming INVITEs, REFER to B). */
void move_bound_event(struct sip *s, nua_event_t ev, int status, const char *phrase,
                      nua_handle_t *nh, struct bound *b, const sip_t *sip, tagi_t tags[]);

/* Free every move (at shutdown). */
void move_free_all(struct sip *s);

#endif
