/* The B2BUA: one sofia-sip stack on the caller's su_root, bridging near and far legs. */
#ifndef QRXFER_SIP_H
#define QRXFER_SIP_H

#include <stddef.h>
#include <time.h>

#include <sys/socket.h>

#include <sofia-sip/su_wait.h>

struct sip;
struct store;
struct code_keyring;

struct sip_conf {
	const char *listen;        /* sip:host:port, UDP and TCP */
	const char *tls_listen;    /* sips:host:port, or NULL for no TLS */
	const char *tls_cert_dir;  /* holds agent.pem and cafile.pem */
	const char *domain;        /* our service domain */
	const char *upstream;      /* the PBX or trunk: the far side */
	unsigned max_call_secs;    /* end calls older than this; 0 = never */
	unsigned register_timeout; /* seconds to wait for the registrar */
	unsigned udp_rcvbuf;       /* SO_RCVBUF of the UDP listener in bytes; 0: the kernel's */

	/* Moves (all optional but the keyring and the store). */
	struct store *store;       /* calls and moves are recorded here */
	struct code_keyring *keys; /* signs and verifies tokens */
	const char *public_url;    /* https://host: links in messages and QR codes */
	int qr_uri_https;          /* the QR holds the https link rather than sip:m.<token>@ */
	unsigned code_ttl;         /* seconds a code is valid */
	unsigned code_digits;      /* length of the numeric code, 6..10 */
	const char *move_feature;  /* DTMF feature code that asks for a move, e.g. "*8" */
	int send_qr_image;         /* add the QR as image/png to the code MESSAGE */
	int send_barcode_image;    /* add the numeric code's Code 128 as image/png too */
	unsigned code_pool;        /* codes made ahead on a worker; 0: made on the loop */
	enum sip_confirm {
		SIP_CONFIRM_NONE,
		SIP_CONFIRM_NEAR,
		SIP_CONFIRM_FAR,
		SIP_CONFIRM_BOTH
	} confirm;
	int confirm_sms_near, confirm_sms_far; /* ask that side by SMS rather than MESSAGE */
	unsigned confirm_timeout;              /* seconds; no answer means no */
	int scans_both;                 /* images from A and from B must both decode to the code */
	unsigned scan_queue;            /* images waiting for or in the decoder; more get 503 */
	unsigned scan_rate, scan_burst; /* images per second per source address (IPv6: /64) */
	size_t scan_max_bytes;          /* an image's encoded size */
	unsigned long scan_max_pixels;  /* width x height, read from the header before decoding */
	/* Domains a code holder may have us dial directly (comma or space separated); any other
	 * target must be in our domain and goes through the upstream. */
	const char *dial_domains;
	unsigned store_timeout;   /* seconds a move may wait for the store before it fails */
	int on_stop_keep;         /* a stop leaves the calls up for the next start (else BYE) */
	unsigned lease_secs;      /* a node silent this long is dead: its calls go to another */
	int hold_answer;          /* an answer waits for its call's state to be in the store */
	unsigned answer_group_ms; /* answers held this long to share one store transaction */
	int no_call_state;       /* the calls' dialogs are not written: they end with the process */
	struct sip_hooks *hooks; /* what the module does for us; may be NULL */
};

/* What the move asks of the module around it. */
struct sip_hooks {
	/* Send an SMS; done later calls sip_sms_result(). 0 if queued. */
	int (*sms_send)(void *arg, const char *to, const char *text, unsigned long ref);
	void *arg;
};

enum sip_call_state { SIP_CALL_EARLY, SIP_CALL_ANSWERED, SIP_CALL_ENDING };

/* What the outside may read of one live call. */
struct sip_call_info {
	const char *id;
	enum sip_call_state state;
	const char *near_call_id, *near_uri;
	const char *far_call_id, *far_uri;
	int near_is_caller;
	time_t created, answered;
};

typedef void sip_call_h(const struct sip_call_info *info, void *arg);
typedef void sip_done_h(void *arg);

/* Counters for /metrics, updated on the loop thread. */
/* Start the stack on root; conf strings are copied. */
int sip_alloc(struct sip **sp, su_root_t *root, const struct sip_conf *conf);

/* End live calls with BYE and stop the stack; done runs on the loop when finished. */
void sip_shutdown(struct sip *s, sip_done_h *done, void *arg);

/* New calls go elsewhere (OPTIONS and new INVITEs get 503); live calls go on. */
void sip_drain(struct sip *s);
int sip_draining(const struct sip *s);

/* Stop using the store: its later callbacks only let go (call before store_close at exit). */
void sip_detach_store(struct sip *s);

/* Apply the reloadable fields of conf (codes, confirm, scans) to a running stack. */
void sip_reconf(struct sip *s, const struct sip_conf *conf);

/* Free a stack whose shutdown has completed. */
void sip_free(struct sip *s);

/* Call fn for the live call id; ENOENT if there is none here. */
int sip_call_get(struct sip *s, const char *id, sip_call_h *fn, void *arg);

/* Call fn for each live call, in creation order. */
void sip_calls_foreach(struct sip *s, sip_call_h *fn, void *arg);

const char *sip_call_state_name(enum sip_call_state st);

/* ---- moves (implemented in move/, which move_init() hooks into the stack) ---- */

enum sip_move_state {
	SIP_MOVE_STORING,    /* being written to the store */
	SIP_MOVE_OFFERED,    /* the code is out, waiting for a device */
	SIP_MOVE_REDEEMED,   /* a device presented the code */
	SIP_MOVE_CONFIRMING, /* waiting for yes from A and/or C (or for scans) */
	SIP_MOVE_MOVING,     /* re-INVITE towards C in flight */
	SIP_MOVE_DONE,
	SIP_MOVE_FAILED,
};

/* What the outside may read of one move on this node. */
struct sip_move_info {
	const char *id;
	const char *call_id;
	enum sip_move_state state;
	const char *token;    /* only while offered */
	const char *code;     /* numeric, only while offered */
	const char *qr_uri;   /* what the QR holds */
	const char *reason;   /* why it failed */
	const char *taken_by; /* the new device's URI */
	time_t created, expires;
	long long ms_redeem_to_reinvite, ms_redeem_to_answer; /* -1 until known */
	const char *show;     /* the show page's secret: only in the answer that made it */
	unsigned retry_after; /* with EAGAIN or EBUSY: seconds until the source may try again */
};

typedef void sip_move_h(int err, const struct sip_move_info *info, void *arg);

/* Start a move on a live call (or return the one offered); cb runs on the loop. */
int sip_move_start(struct sip *s, const char *call_id, const char *source, sip_move_h *cb,
                   void *arg);

/* Read a move of this node by id; ENOENT if not here. */
int sip_move_get(struct sip *s, const char *move_id, sip_move_h *cb, void *arg);

/* Redeem token and dial target without an offer (RFC 3725 flow); cb when B is ringing. */
int sip_move_dial(struct sip *s, const char *token, const char *target, const char *source,
                  sip_move_h *cb, void *arg);

/* Send target an out-of-dialog REFER so that it dials the move's code itself. */
int sip_move_refer(struct sip *s, const char *move_id, const char *target, sip_move_h *cb,
                   void *arg);

/* Read a move of this node by its show page's secret; ENOENT if none here. */
int sip_move_show(struct sip *s, const char *secret, sip_move_h *cb, void *arg);

/*
 * A camera image (PNG, JPEG) from who: "near" (A) or "new" (B), sent by peer. "near" needs
 * show, the move's show secret (only A was sent it). Refused before decoding: ENOENT when no
 * code is on offer here (or show names no move), EAGAIN over the source's rate, ENOSPC when
 * the decode queue is full, CODE_ETOOLARGE/CODE_ENOTIMAGE/CODE_ETRUNCATED by the header.
 * Otherwise it is decoded on a worker, never on the loop, and compared with the codes on
 * offer; for "new", target (a SIP URI) is dialled when the image redeems a code. cb gets 0
 * (taken; info holds nothing but the state), EAGAIN (the source is over its budget of wrong
 * guesses: it must wait) or CODE_ENOCODE (no live code in the image, which counts as a wrong
 * guess when it held some other symbol).
 */
int sip_move_scan(struct sip *s, const void *image, size_t len, const char *who, const char *target,
                  const char *show, const struct sockaddr *peer, sip_move_h *cb, void *arg);

/* An SMS reply arrived from number (message_id: the gateway's, may be NULL); EINVAL if it is not
 * yes or no, ENOENT if nobody asked, EALREADY if that message was taken before. */
int sip_sms_reply(struct sip *s, const char *number, const char *body, const char *message_id);

/* What became of an SMS sip_hooks.sms_send queued. */
void sip_sms_result(struct sip *s, unsigned long ref, int ok);

const char *sip_move_state_name(enum sip_move_state st);

#endif
