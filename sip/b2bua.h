/* The stack, calls and legs: internal to sip/, and the leg API features above it use. */
#ifndef QRXFER_SIP_B2BUA_H
#define QRXFER_SIP_B2BUA_H

#define NTA_LEG_MAGIC_T      void
#define NTA_OUTGOING_MAGIC_T void
#define NTA_INCOMING_MAGIC_T void
#define NTA_RELIABLE_MAGIC_T struct leg
#define NTA_AGENT_MAGIC_T    struct sip
#define SU_TIMER_ARG_T       void

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tag_io.h>
#include <sofia-sip/su_tagarg.h>

#include "sip/sip.h"
#include "sip/hook.h"
#include "metrics/metrics.h"
#include "util/log.h"

/*
 * One dialog of a call, on an nta leg. Owned by its call. Its whole dialog state (Call-ID,
 * both tags, both CSeqs, route set, remote target) is the nta leg's; leg_state() reads it out.
 */
struct leg {
	struct call *call;
	nta_leg_t *dlg;              /* the dialog; NULL until made */
	nta_incoming_t *inv;         /* the peer's INVITE (first or re-) until answered and ACKed */
	nta_outgoing_t *oinv;        /* our INVITE (first or re-) until its final answer */
	uint32_t ack_cseq;           /* CSeq of our INVITE whose 2xx we ACK */
	unsigned ack_own_branch : 1; /* that INVITE died with a previous run: no transaction */
	unsigned near : 1;           /* faces the device the user holds */
	unsigned answered : 1;       /* its initial INVITE got a 2xx */
	unsigned terminated : 1;     /* the dialog is over: no request goes on it any more */
	unsigned ending : 1;         /* we sent BYE or CANCEL on it */
	unsigned incoming : 1;       /* the peer sent the initial INVITE */
	unsigned cancel_sent : 1;
	unsigned secure : 1;        /* it runs over TLS: our Contact is sips */
	unsigned tcp : 1;           /* it runs over TCP */
	unsigned takes_message : 1; /* its peer's INVITE or 2xx listed MESSAGE in Allow */
	SLIST_ENTRY(leg) link;      /* in the call's list of every leg it has */
	char dtmf[12];              /* the last DTMF digits from this leg, for the feature code */
	size_t dtmf_len;
	long long dtmf_at;
	char *call_id;     /* in the call's home */
	char *ltag, *rtag; /* our tag and the peer's in this dialog, once confirmed */
	unsigned pending;  /* our requests on it still without a final answer */
	char *uri;
	char *local, *remote; /* our address and the peer's (From/To as we see them) */
	uint32_t acked_cseq;  /* the INVITE we ACKed last: its 2xx sent again is ACKed again */
	msg_t *rel_resp;      /* the last reliable provisional it sent us (RFC 3262), to PRACK */
	uint32_t lseq_saved;  /* our CSeq in the dialog when its state was last written */
	/* The flow the peer's messages came on ("udp:192.0.2.1:5060"): its INVITE's for a leg it
	 * called in on, its answer's for one we dialled. In the call's home; NULL: not known. */
	char *flow;
	/* Where every request on the leg goes whatever its route set says (a device's registered
	 * flow: the edge proxy rule, RFC 5626 5.3), or NULL. In the call's home. */
	url_t *next_hop;
};

/* A leg's dialog as it can be written out and read back (sip/state.c). */
struct leg_state {
	char call_id[128];
	char ltag[64], rtag[64];
	uint32_t lseq, rseq;          /* our last CSeq in the dialog, the peer's */
	char local[256], remote[256]; /* our address, the peer's (name-addr, with tags) */
	char route[512];              /* the route set, as a Route header's value */
	char target[256];             /* the peer's Contact */
	unsigned secure : 1, tcp : 1, incoming : 1, near : 1, answered : 1;
};

int leg_state_get(const struct leg *leg, struct leg_state *st);
struct leg *leg_restore(struct call *c, const struct leg_state *st);

/* A live answered call's state as JSON (free() it), or NULL (not answered, no memory). */
char *call_state_dump(struct call *c);
/* A call rebuilt under id from what call_state_dump wrote; why says what was wrong. EEXIST
 * when a call of that id is served here already. */
int call_state_load(struct sip *s, const char *id, const char *text, struct call **cp, char *why,
                    size_t len);
/* Hand a request the unknown_dialog hook took back to the stack: to the call's leg if it is
 * served here now (rebuilt), else answered as a dialog nobody has (481). */
void sip_dialog_resume(struct sip *s, nta_incoming_t *irq);
/* The answer the call_answering hook held goes to the caller now (if the call still waits for
 * it); nothing when none is held. */
void sip_call_answer_release(struct call *c);
/* relay.c: whether a request was routed through us (its top Route names us) */
int relay_routed_us(struct sip *s, const sip_t *sip);

/* A client transaction of a call: relayed (irq is answered with its answer) or our own. */
typedef void leg_answer_h(void *arg, struct leg *leg, int status, const char *phrase,
                          const sip_t *sip);

struct ctx {
	LIST_ENTRY(ctx) link; /* in the call's list */
	struct leg *to;       /* the leg it went out on */
	struct leg *from;     /* relayed: the leg whose request it carries */
	nta_incoming_t *irq;  /* relayed: the request its answer answers */
	nta_outgoing_t *orq;
	enum { CTX_RELAY, CTX_INVITE, CTX_BYE, CTX_OWN } kind;
	unsigned offer : 1; /* a relayed UPDATE with an offer: the call's offer is busy */
	sip_method_t method;
	leg_answer_h *cb; /* CTX_OWN: who wants the answer */
	void *arg;
};

/* A near leg bridged to a far leg. Owned by the sip's call list; memory in home. */
struct call {
	su_home_t home[1];
	TAILQ_ENTRY(call) link; /* in the sip's list, in creation order */
	struct call *hnext;     /* in the sip's table by id */
	struct sip *sip;
	char id[33];
	struct leg *near, *far; /* NULL until made */
	SLIST_HEAD(, leg) legs; /* near, far, and legs joining or leaving in a move */
	LIST_HEAD(, ctx) ctxs;  /* client transactions still waiting for a final answer */
	struct leg *in, *out;   /* the leg the INVITE came in on, the one we made */
	void *feature;          /* what a hooked feature keeps for this call (a move), or NULL */
	void *slot[SIP_CALL_SLOTS]; /* what the other features keep (sip_call_slot_new) */
	enum sip_call_state state;
	unsigned ack_pending : 1;      /* out's 2xx waits for in's ACK */
	unsigned offer_busy : 1;       /* a re-INVITE or UPDATE is in flight */
	unsigned reinvite_ack : 1;     /* the relayed re-INVITE's 2xx waits for an ACK */
	unsigned reinvite_offered : 1; /* the relayed re-INVITE carried an offer */
	unsigned freeing : 1;
	struct leg *reinvite_from;
	msg_t *held_answer;           /* the called side's 2xx, held by call_answering */
	const sip_payload_t *held_pl; /* its body as the caller gets it */
	su_timer_t *max_timer;
	time_t created, answered;
	char *far_origin;      /* the far party's o= line: user and session id */
	char *far_origin_tail; /* and nettype, addrtype, address; the version is far_version */
	unsigned long long far_version;
	char *far_body;       /* the last SDP sent to far, as it came */
	char *near_sdp;       /* the last SDP the near device sent, for a rollback */
	const sip_t *sdp_msg; /* a held message going on now: its body is sdp_pl */
	sip_payload_t *sdp_pl;
	unsigned recorded : 1;    /* its row is in the store (the records' hooks say so) */
	unsigned dirty : 1;       /* its state changed since it was last written */
	unsigned had_feature : 1; /* read back: its state said a feature (a move) was under way */
	TAILQ_ENTRY(call) dirty_link; /* in the sip's list of calls to write */
	/* REFERs relayed in the call (RFC 3515): the NOTIFYs for one name it by the CSeq its
	 * recipient saw (Event: refer;id=), which its sender knows by its own CSeq. */
	struct {
		struct leg *to;
		uint32_t out, in;
	} refers[4];
	unsigned refer_next;
};

/* An out-of-dialog request passed on statefully, proxy-like (REGISTER, SUBSCRIBE, ...). */
struct txn {
	struct sip *sip;
	nta_incoming_t *irq;
	nta_outgoing_t *orq;
	LIST_ENTRY(txn) link;
	su_timer_t *timer; /* REGISTER: [sip] register_timeout */
	char *node; /* passed on to the node serving its call: its 2xx's ACK goes there too */
	unsigned registering : 1;
};

struct sip {
	su_root_t *root;
	su_home_t home[1];
	nta_agent_t *nta;
	nta_leg_t *default_leg; /* every request outside our dialogs comes here */
	struct sip_conf conf;   /* strings in home */
	url_t *upstream;
	char *upstream_route; /* <sip:upstream;lr> */
	sip_route_t *upstream_rt;
	char *path;      /* <sip:us;lr> for REGISTER and Record-Route */
	url_t *self;     /* conf.listen, parsed once */
	url_t *self_tls; /* conf.tls_listen, parsed once, or NULL */
	char *node;      /* sip:host:port: how other nodes reach this one */
	sip_contact_t *contact_udp, *contact_tcp, *contact_tls;
	struct sockaddr_storage upstream_addr;
	socklen_t upstream_addrlen;
	TAILQ_HEAD(, call) calls;
	TAILQ_HEAD(, call) dirty; /* calls whose state waits for the next write (a second) */
	su_timer_t *dirty_timer;
	unsigned draining : 1;    /* new calls go elsewhere: OPTIONS and new INVITEs get 503 */
	struct call **call_table; /* CALL_BUCKETS chains by id */
	LIST_HEAD(, txn) txns;
	struct sip_work *work; /* a worker for slow jobs (image decoding) */
	struct {
		const struct sip_call_hooks *h;
		void *arg;
	} hooks[SIP_HOOKS_MAX]; /* what features registered, in order */
	unsigned nhooks;
	unsigned nslots; /* call slots taken by features */
	sip_done_h *done;
	void *done_arg;
	su_timer_t *shutdown_timer;
	su_timer_t *trim_timer;
	unsigned shutting_down : 1;
	unsigned detached : 1; /* the store is closing: its callbacks touch nothing */
	unsigned stopped : 1;
};

#define CALL_BUCKETS 16384

/* b2bua.c */
void b2bua_check_done(struct sip *s);
sip_contact_t *b2bua_contact(struct sip *s, int secure, int tcp);
void b2bua_transport_of(struct sip *s, nta_incoming_t *irq, int *secure, int *tcp);

/* sofialog.c */
void sofia_log_init(void);

/* call.c */
int call_alloc(struct call **cp, struct sip *s);
int call_alloc_id(struct call **cp, struct sip *s, const char *id);
void call_touch(struct call *c, int now);
struct call *call_find(struct sip *s, const char *id);
struct leg *call_leg_new(struct call *c, int near, int incoming);
void call_end(struct call *c, int status, const char *reason);
void call_leg_terminated(struct leg *leg);
void call_leg_end(struct leg *leg, const char *reason);
void call_leg_tags(struct leg *leg, const sip_t *sip);
struct leg *call_other(struct leg *leg);
const char *call_side(const struct leg *leg);
struct ctx *ctx_new(struct call *c, struct leg *to, int kind);
void ctx_free(struct ctx *x);
struct leg *leg_by_dialog(struct sip *s, const char *call_id, const char *ltag, const char *rtag);

/* leg.c: the narrow API features use to work a leg */
int leg_request_cb(void *arg, nta_leg_t *dlg, nta_incoming_t *irq, const sip_t *sip);
void leg_dispatch(struct leg *leg, nta_incoming_t *irq, const sip_t *sip);
struct ctx *leg_forward(struct leg *to, struct leg *from, nta_incoming_t *irq, const sip_t *sip,
                        const sip_payload_t *pl, tagi_t *tags);
int leg_on_answer(void *arg, nta_outgoing_t *orq, const sip_t *sip);
void leg_take_invite(struct leg *leg, nta_incoming_t *irq);
struct leg *leg_accept(struct call *c, int near, nta_incoming_t *irq, const sip_t *sip);
struct leg *leg_dial(struct call *c, int near, const url_t *target, const sip_addr_t *from,
                     const sip_addr_t *to, int via_upstream);
int leg_invite(struct leg *leg, msg_t *like, const sip_payload_t *pl, tag_type_t tag,
               tag_value_t value, ...);
int leg_ack(struct leg *leg, msg_t *like, const sip_payload_t *pl);
int leg_ack_again(struct leg *leg, uint32_t cseq);
int leg_branch(char *buf, size_t len);
int leg_answer(struct leg *leg, int status, const char *phrase, msg_t *like,
               const sip_payload_t *pl, tag_type_t tag, tag_value_t value, ...);
int leg_answer_as(struct leg *leg, int status, const char *phrase, msg_t *like,
                  const sip_payload_t *pl, int reliable, tagi_t *tags);
int leg_send(struct leg *leg, sip_method_t method, const char *name, leg_answer_h *cb, void *arg,
             tag_type_t tag, tag_value_t value, ...);
void leg_bye(struct leg *leg, const char *reason);
void leg_release(struct leg *leg);

/* Answer an incoming request; a final answer lets go of it. */
void sip_reply(nta_incoming_t *irq, int status, const char *phrase, tag_type_t tag,
               tag_value_t value, ...);

/* work.c: jobs run on a worker thread; done runs on the loop afterwards */
struct sip_work;
typedef void sip_work_h(void *arg);
int sip_work_alloc(struct sip_work **wp, su_root_t *root);
int sip_work_submit(struct sip_work *w, sip_work_h *run, sip_work_h *done, void *arg);
void sip_work_free(struct sip_work *w);

/* hook.c: the core's calls into the hooks features registered (sip/hook.h) */
int hook_invite(struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
int hook_invite_response(struct call *c, struct leg *leg, int status, const char *phrase,
                         const sip_t *sip);
int hook_ack(struct call *c, struct leg *leg, const sip_t *sip);
int hook_leg_left(struct call *c, struct leg *leg);
int hook_leg_terminated(struct call *c, struct leg *leg);
void hook_call_active(struct call *c);
void hook_call_ending(struct call *c);
void hook_call_gone(struct call *c);
int hook_refer(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
int hook_message(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
int hook_info(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
void hook_stop(struct sip *s);
void hook_call_changed(struct call *c);
int hook_unknown_dialog(struct sip *s, nta_incoming_t *irq, const sip_t *sip);
void hook_call_restored(struct call *c);
int hook_call_answering(struct call *c);
int hook_sdp(struct call *c, struct leg *from, struct leg *to, int offer, const char *body,
             size_t len, struct sip_sdp_wait *w);
int hook_has_sdp(struct sip *s);
int hook_reinvite(struct call *c, struct leg *leg, nta_incoming_t *irq, const sip_t *sip);
void hook_registered(struct sip *s, const sip_t *req, const sip_t *resp, const char *flow);
int hook_publish(struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req);

/* sdp.c */
/* The origin (o=) one party has seen from us: its user and session id, the rest, the version
 * and the last body sent (RFC 3264 8). Strings in the home sdp_origin_apply is given. */
struct sdp_origin {
	char *origin, *tail, *body;
	unsigned long long version;
};
char *sdp_origin_apply(su_home_t *home, struct sdp_origin *o, const char *body, size_t len,
                       size_t *outlen);
/* A message's SDP is about to go from leg from to leg to without a hook able to hold it (an
 * UPDATE, a PRACK, their answers, an ACK): the sdp hooks are told (w NULL). */
void sdp_note(struct leg *from, struct leg *to, const sip_t *sip, int offer);
sip_payload_t *sdp_to_far(struct call *c, const sip_payload_t *pl);
sip_payload_t *body_for(struct leg *dst, const sip_t *sip);

/* A message held while a hook rewrites its SDP (the media anchor): go sends it on. */
struct sip_sdp_wait {
	struct call *c;
	struct leg *from, *to;
	msg_t *msg; /* a reference to the request or response held */
	int status;
	char phrase[64];
	void (*go)(struct sip_sdp_wait *w);
	char mf[16];        /* invite_bridge: Max-Forwards */
	sip_replaces_t *rp; /* invite_bridge: the Replaces, in the call's home */
};
/* 1 when a hook holds the message (w is copied); 0: send it now (no SDP hook, no SDP body, or
 * this is the held message going on). */
int sdp_hold(const struct sip_sdp_wait *w, const sip_t *sip, int offer);

/* route.c */
int route_from_upstream(struct sip *s, msg_t *req);
int route_is_self(struct sip *s, const url_t *url);

/* copy.c: what passes from a message to the one made from it on the other side */
int copy_e2e(msg_t *dst, sip_t *dsip, msg_t *src, int from_near);
int copy_body(msg_t *dst, sip_t *dsip, const sip_t *src, const sip_payload_t *pl);

/* invite.c */
sip_addr_t *invite_addr_untagged(su_home_t *home, const sip_addr_t *a);
void invite_note_near_sdp(struct leg *from, const sip_t *sip);
void invite_new(struct sip *s, nta_incoming_t *irq, const sip_t *sip);
void invite_max_timer(struct call *c);
void invite_bridge(struct sip *s, nta_incoming_t *irq, const sip_t *sip, int from_up,
                   const url_t *target, int via_upstream);
void invite_again(struct leg *leg, nta_incoming_t *irq, const sip_t *sip);
void invite_response(struct leg *leg, int status, const char *phrase, const sip_t *sip,
                     msg_t *resp);
void invite_ack(struct leg *leg, const sip_t *sip);
void invite_cancel(struct leg *leg);
void invite_bye(struct leg *leg, nta_incoming_t *irq);
void invite_prack(struct leg *leg, nta_incoming_t *irq, const sip_t *sip);

/* relay.c: requests in a dialog passed to the other leg; out-of-dialog ones passed on */
void relay_in_dialog(struct leg *leg, nta_incoming_t *irq, const sip_t *sip);
void relay_out_of_dialog(struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
void relay_to_node(struct sip *s, nta_incoming_t *irq, const char *node);
void relay_answer(struct ctx *x, int status, const char *phrase, const sip_t *sip,
                  nta_outgoing_t *orq);
struct txn *txn_new(struct sip *s, nta_incoming_t *irq);
/* A device's flow, the transport and source its request came on: "udp:192.0.2.1:5060",
 * "tcp:[2001:db8::1]:40312". EINVAL when the request has no source address. */
int sip_flow_key(struct sip *s, nta_incoming_t *irq, msg_t *req, char *out, size_t len);
/* The same for any message that came to us, on a transport known to be TLS, TCP or else UDP.
 * EXDEV for a request with more than one Via: it came through a proxy, whose address is not
 * the device's flow (every device behind it would share it). */
int sip_flow_of(msg_t *msg, int secure, int tcp, char *out, size_t len);
void txn_free(struct txn *t);

static inline sip_content_type_t *body_ct(const sip_t *sip)
{
	return sip && sip->sip_payload ? sip->sip_content_type : NULL;
}

static inline sip_payload_t *body_pl(const sip_t *sip)
{
	return sip ? sip->sip_payload : NULL;
}

/* Tags for a body already chosen with body_for(). */
#define BODY_TAGS_PL(sip, pl)                                                                      \
	TAG_IF(pl &&body_ct(sip), SIPTAG_CONTENT_TYPE(body_ct(sip))), TAG_IF(pl, SIPTAG_PAYLOAD(pl))

/* The same, as the entries of a tagi_t array. */
#define BODY_TAGI(sip, pl)                                                                         \
	{TAG_IF(pl && body_ct(sip), SIPTAG_CONTENT_TYPE(body_ct(sip)))},                           \
	{                                                                                          \
		TAG_IF(pl, SIPTAG_PAYLOAD(pl))                                                     \
	}

#endif
