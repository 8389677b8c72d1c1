/* Internal to the context, meetings and resume codes (context.c, meet.c, resume.c). */
#ifndef QRXFER_MOVE_CONTEXT_INT_H
#define QRXFER_MOVE_CONTEXT_INT_H

#include <sys/queue.h>
#include <time.h>

#include "move/context.h"
#include "move/move_int.h"

/* Store jobs in flight that strangers can cause (a resume code dialled: in all and per
 * source; note MESSAGEs count in all): past these a request is answered 503 with no job, so a
 * flood cannot queue the store's worker without bound (as move/lookups.c budgets lookups). */
#define CONTEXT_PENDING_MAX       64
#define CONTEXT_RESUME_MAX        32
#define CONTEXT_RESUME_PER_SOURCE 8

/* A resume code dialled by its digits: sip:*87<16 digits>@<domain>. */
#define RESUME_PREFIX "*87"
#define RESUME_DIGITS 16

/* The context's part of one stack. Owned by its hooks: freed by their stop, or by the last
 * store answer still to come after it (pending). */
struct context_stack {
	struct sip *sip;
	int slot;             /* its place in every call (struct call's slot[]) */
	unsigned resume_ttl;  /* seconds; 0: no resume codes */
	char *url_template;   /* [meet] url_template, or NULL */
	char *conference_uri; /* [meet] conference_uri, or NULL */
	int meet_sms;         /* join links to a party with a number go by SMS */
	int summary; /* [context] summary: 0 no, 1 yes, 2 auto (a device whose Allow lists MESSAGE)
	              */
	int far_call_info;            /* [context] far_call_info: the far party may read the page */
	unsigned pending;             /* store answers still to come (notes, resume codes) */
	unsigned resume_waiting;      /* resume_waits */
	struct log_limit refused_log; /* resume codes and notes refused */
	unsigned stopped : 1;         /* the stack stopped: the last store answer frees this */
	LIST_HEAD(, note_wait) note_waits;
	LIST_HEAD(, resume_wait) resume_waits;
	LIST_HEAD(, ood_message) messages; /* out-of-dialog MESSAGEs until answered */
};

/* A meeting's bridge, per call (bridge.c). */
enum bridge_phase {
	BRIDGE_NONE,
	BRIDGE_DIALING,       /* both legs to the bridge are on their way, without an offer */
	BRIDGE_REINVITE_NEAR, /* the near party is re-INVITEd with its bridge leg's offer */
	BRIDGE_REINVITE_FAR,  /* then the far party */
	BRIDGE_DONE,
	BRIDGE_FAILED, /* the bridge refused: the call stayed as it was */
};

/* One call's context on this node. Owned by the call (its slot), freed by call_gone. */
struct cctx {
	char secret[CODE_SECRET_LEN + 1]; /* the page's: told to the devices that take the call */
	uint8_t hash[CODE_HASH_LEN];
	char far_identity[256]; /* P-Asserted-Identity or From of the far party */
	time_t started;
	unsigned moves, notes;          /* seen on this node */
	char room[CODE_SECRET_LEN + 1]; /* the meeting's, once asked */
	char resumed_from[33];          /* the call this one continues */
	unsigned saved : 1;             /* its page secret's hash went to the store */
	enum bridge_phase bridge;
	struct leg *bridge_leg[2]; /* to the bridge: for the near party, for the far party */
	char *bridge_offer[2];     /* what each bridge leg offered (malloc) */
	char bridge_uri[256];
	/* Resume by link (resume.c): qrxfer calls the device, then the far party. */
	enum { LINK_NONE, LINK_DEVICE, LINK_FAR, LINK_DONE } link;
	char *link_offer; /* the device's offer (malloc), for the far party */
};

/* context.c */
struct context_stack *context_stack_of(struct sip *s);
struct cctx *context_of(struct call *c, int create);
int context_secret_new(struct cctx *x);
void context_link(struct sip *s, const struct cctx *x, char *out, size_t len);
void context_addr_uri(const char *name_addr, char *out, size_t len);
/* One store answer came for cs: frees it when it stopped and nothing else is to come. */
void context_pending_done(struct context_stack *cs);

/* bridge.c */
int context_bridge_start(struct context_stack *cs, struct call *c, struct cctx *x, const char *uri);
int context_bridge_response(struct call *c, struct leg *leg, int status, const sip_t *sip);
int context_bridge_leg_gone(struct call *c, struct leg *leg);
void context_bridge_free(struct cctx *x);
/* A call read back after a restart: its bridge legs are read back too, then served again. */
void context_bridge_restore(struct context_stack *cs, struct call *c);

/* resume.c */
int context_resume_invite(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip,
                          msg_t *req);
void context_resume_give(struct context_stack *cs, struct call *c);
void context_resume_stop(struct context_stack *cs);
/* A response on a call the link set up: 1 when it was the link's business. */
int context_link_response(struct call *c, struct leg *leg, int status, const sip_t *sip);
/* Sends text to a device outside any dialog (its contact), from sip:<user>@<domain>. */
void context_message_out(struct context_stack *cs, const char *target, const char *user,
                         const char *text);

/* Whether qrxfer's own MESSAGEs about the call (the summary when a device takes it, the
 * resume code when it ends) go to the device on leg: [context] summary. */
static inline int context_tells(const struct context_stack *cs, const struct leg *leg)
{
	return cs->summary == 1 || (cs->summary == 2 && leg && leg->takes_message);
}

#endif
