/*
 * What a feature above the core (the move, the calls' records) registers: hooks the core calls
 * at a call's events, so that the core never names a feature. Every hook may be NULL. They run
 * on the loop, in the order the tables were added; for those that return int, the first that
 * returns 1 has taken the event and the core does nothing more with it.
 */
#ifndef QRXFER_SIP_HOOK_H
#define QRXFER_SIP_HOOK_H

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

struct sip;
struct call;
struct leg;
struct sip_sdp_wait;

struct sip_call_hooks {
	/* An INVITE outside any dialog, before it becomes a new call (a device presenting a code).
	 */
	int (*invite)(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
	/* A response to an INVITE we sent on a leg of c. */
	int (*invite_response)(void *arg, struct call *c, struct leg *leg, int status,
	                       const char *phrase, const sip_t *sip);
	/* An ACK on a leg of c. */
	int (*ack)(void *arg, struct call *c, struct leg *leg, const sip_t *sip);
	/* A BYE or CANCEL on a leg of c: 1 keeps the call going without it. */
	int (*leg_left)(void *arg, struct call *c, struct leg *leg);
	/* The stack let go of a leg of c: 1 keeps the call going without it. */
	int (*leg_terminated)(void *arg, struct call *c, struct leg *leg);
	/*
	 * The called side answered (2xx) and the call is about to be up: 1 holds the answer back
	 * from the caller until the hook calls sip_call_answer_release(c). For the calls' state:
	 * written where a restart finds it before the caller hears of the answer, a crash cannot
	 * lose a call both sides were told is up.
	 */
	int (*call_answering)(void *arg, struct call *c);
	/* The call is established: the caller's ACK for the answer came. */
	void (*call_active)(void *arg, struct call *c);
	/* The call is ending (a side hung up, shutdown); its legs are ended after this. */
	void (*call_ending)(void *arg, struct call *c);
	/* The call is being freed: let go of it. */
	void (*call_gone)(void *arg, struct call *c);
	/*
	 * A REFER or MESSAGE, in a dialog (leg) or out of one (leg NULL), with its message (req):
	 * 1 if taken, and then the hook answers irq (sip_reply) now or later. A request no hook
	 * takes is relayed. An INFO in a dialog comes to info once it was relayed and its sender
	 * has the answer (irq NULL); what info returns is not looked at.
	 */
	int (*refer)(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
	             const sip_t *sip, msg_t *req);
	int (*message)(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
	               const sip_t *sip, msg_t *req);
	int (*info)(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
	            const sip_t *sip, msg_t *req);
	/* The call's dialogs changed (CSeqs, targets, the session the far party saw): write its
	 * state (call_state_dump) where a restart finds it. Soon after the change: at once when
	 * the session changed, within a second for the rest. */
	void (*call_changed)(void *arg, struct call *c);
	/*
	 * A request in a dialog the stack does not know and that was not routed through it (a
	 * call of a previous run, or of a dead node): 1 if taken, and then the hook later either
	 * rebuilds the call (call_state_load) or not, and hands the request back
	 * (sip_dialog_resume).
	 */
	int (*unknown_dialog)(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip);
	/* A call rebuilt from the store (call_state_load) is served again; c->had_feature says
	 * whether a feature (a move) was under way when its state was last written. */
	void (*call_restored)(void *arg, struct call *c);
	/* The stack is being freed: free what the feature holds. */
	void (*stop)(void *arg, struct sip *s);
	/*
	 * An SDP offer (offer 1) or answer from leg from is about to go out on leg to (the media
	 * anchor): 1 if taken. The core holds the message; the hook later calls, never from within
	 * this call, sip_sdp_resume(w, ...) once with the body to send instead, or sip_sdp_drop(w)
	 * when the call is gone (its call_gone hook). w NULL: the message cannot be held (an
	 * UPDATE, a PRACK, their answers, an ACK): the hook is only told, and returns 0.
	 */
	int (*sdp)(void *arg, struct call *c, struct leg *from, struct leg *to, int offer,
	           const char *body, size_t len, struct sip_sdp_wait *w);
	/* A re-INVITE on a leg of c that is neither near nor far (a device a move put on hold):
	 * 1 if taken, and then the hook answers irq. Untaken, it gets 491 as before. */
	int (*reinvite)(void *arg, struct call *c, struct leg *leg, nta_incoming_t *irq,
	                const sip_t *sip);
	/*
	 * The upstream (the registrar) answered 2xx to a REGISTER we relayed with our Path: req is
	 * the REGISTER as the device sent it, resp the answer, flow the device's flow as
	 * sip_flow_key() writes it. Before the device hears the answer.
	 */
	void (*registered)(void *arg, struct sip *s, const sip_t *req, const sip_t *resp,
	                   const char *flow);
	/* A PUBLISH outside any dialog, with its message (req): 1 if taken, and then the hook
	 * answers irq. A PUBLISH no hook takes is relayed. */
	int (*publish)(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
};

/* Send the held message on with body (len bytes; NULL: the body as it came); frees w. */
void sip_sdp_resume(struct sip_sdp_wait *w, const char *body, size_t len);
/* Let go of a held message without sending it (its call is gone); frees w. */
void sip_sdp_drop(struct sip_sdp_wait *w);

#define SIP_HOOKS_MAX 8

/* Per-call places for what features keep (struct call's slot[]), one taken per feature. */
#define SIP_CALL_SLOTS 8

/* Add a table of hooks (kept by pointer, with arg); ENOSPC past SIP_HOOKS_MAX. */
int sip_call_hooks_add(struct sip *s, const struct sip_call_hooks *h, void *arg);

/* The arg registered with table h, or NULL if h is not registered. */
void *sip_call_hooks_arg(struct sip *s, const struct sip_call_hooks *h);

/*
 * A place of its own in every call of s for a feature (the index into struct call's slot[]),
 * or -1 when all SIP_CALL_SLOTS are taken. A feature takes one at its init and frees what it
 * put there in its call_gone hook; the core never looks into a slot.
 */
int sip_call_slot_new(struct sip *s);

#endif
