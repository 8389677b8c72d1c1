/*
 * What a feature above the core (the move, the calls' records) registers: hooks the core calls
 * at a call's events, so that the core never names a feature. Every hook may be NULL. They run
 * on the loop, in the order the tables were added; for those that return int, the first that
 * returns 1 has taken the event and the core does nothing more with it.
 */
#ifndef QRXFER_SIP_HOOK_H
#define QRXFER_SIP_HOOK_H

#include <sofia-sip/nua.h>
#include <sofia-sip/sip.h>

struct sip;
struct call;
struct leg;
struct bound;

struct sip_call_hooks {
	/* An INVITE outside any dialog, before it becomes a new call (a device presenting a code).
	 */
	int (*invite)(void *arg, struct sip *s, nua_handle_t *nh, const sip_t *sip, msg_t *req);
	/* A response to an INVITE we sent on a leg of c. */
	int (*invite_response)(void *arg, struct call *c, struct leg *leg, int status,
	                       const char *phrase, const sip_t *sip);
	/* An ACK on a leg of c. */
	int (*ack)(void *arg, struct call *c, struct leg *leg, const sip_t *sip);
	/* A BYE or CANCEL on a leg of c: 1 keeps the call going without it. */
	int (*leg_left)(void *arg, struct call *c, struct leg *leg);
	/* The stack let go of a leg of c: 1 keeps the call going without it. */
	int (*leg_terminated)(void *arg, struct call *c, struct leg *leg);
	/* The call is established: the caller's ACK for the answer came. */
	void (*call_active)(void *arg, struct call *c);
	/* The call is ending (a side hung up, shutdown); its legs are ended after this. */
	void (*call_ending)(void *arg, struct call *c);
	/* The call is being freed: let go of it. */
	void (*call_gone)(void *arg, struct call *c);
	/* A REFER, in a dialog (leg) or out of one (leg NULL): 1 if taken (and answered). */
	int (*refer)(void *arg, struct sip *s, struct leg *leg, nua_handle_t *nh, const sip_t *sip,
	             tagi_t tags[]);
	/* A MESSAGE, in a dialog (leg) or out of one (leg NULL): 1 if taken (and answered). */
	int (*message)(void *arg, struct sip *s, struct leg *leg, nua_handle_t *nh,
	               const sip_t *sip);
	/* An INFO in a dialog; it is relayed whatever the hook does. */
	void (*info)(void *arg, struct sip *s, struct leg *leg, const sip_t *sip);
	/* An event on a handle bound to a struct bound of kind BOUND_HOOK (the feature's own). */
	void (*bound_event)(void *arg, struct sip *s, nua_event_t ev, int status,
	                    const char *phrase, nua_handle_t *nh, struct bound *b, const sip_t *sip,
	                    tagi_t tags[]);
	/* The stack is being freed: free what the feature holds. */
	void (*stop)(void *arg, struct sip *s);
};

#define SIP_HOOKS_MAX 4

/* Add a table of hooks (kept by pointer, with arg); ENOSPC past SIP_HOOKS_MAX. */
int sip_call_hooks_add(struct sip *s, const struct sip_call_hooks *h, void *arg);

/* The arg registered with table h, or NULL if h is not registered. */
void *sip_call_hooks_arg(struct sip *s, const struct sip_call_hooks *h);

#endif
