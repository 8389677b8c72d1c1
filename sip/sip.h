/* The B2BUA: one sofia-sip stack on the caller's su_root, bridging near and far legs. */
#ifndef QRXFER_SIP_H
#define QRXFER_SIP_H

#include <stddef.h>
#include <time.h>

#include <sofia-sip/su_wait.h>

struct sip;

struct sip_conf {
	const char *listen;        /* sip:host:port, UDP and TCP */
	const char *tls_listen;    /* sips:host:port, or NULL for no TLS */
	const char *tls_cert_dir;  /* holds agent.pem and cafile.pem */
	const char *domain;        /* our service domain */
	const char *upstream;      /* the PBX or trunk: the far side */
	unsigned max_call_secs;    /* end calls older than this; 0 = never */
	unsigned register_timeout; /* seconds to wait for the registrar */
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
struct sip_stats {
	unsigned long calls_total, calls_answered, calls_failed, calls_active;
	unsigned long registers_total, requests_total, requests_rejected;
};

/* Start the stack on root; conf strings are copied. */
int sip_alloc(struct sip **sp, su_root_t *root, const struct sip_conf *conf);

/* End live calls with BYE and stop the stack; done runs on the loop when finished. */
void sip_shutdown(struct sip *s, sip_done_h *done, void *arg);

/* Free a stack whose shutdown has completed. */
void sip_free(struct sip *s);

/* Call fn for each live call, in creation order. */
void sip_calls_foreach(struct sip *s, sip_call_h *fn, void *arg);

const struct sip_stats *sip_stats(const struct sip *s);

const char *sip_call_state_name(enum sip_call_state st);

#endif
