/* client/: outgoing HTTP on the su_root loop (curl multi), and the SMS gateway client on it. */
/*
 * client/curlm: HTTP client requests on the su_root loop (libcurl multi, never blocking).
 * Generic: retries and back-off belong to the caller (the SMS client).
 */
#ifndef QRXFER_CLIENT_CURLM_H
#define QRXFER_CLIENT_CURLM_H

#include <stddef.h>

/* As in <sofia-sip/su_wait.h>, without fixing the includer's SU_ROOT_MAGIC_T. */
typedef struct su_root_s su_root_t;

struct mod_curlm;

/* How a request ended; valid only during the callback. */
struct mod_curlm_res {
	int err;          /* 0 if a response came (any status); ETIMEDOUT, ECONNREFUSED, ECANCELED,
	                     EHOSTUNREACH (no such host), EMSGSIZE (body over the cap), EIO */
	long status;      /* HTTP status, 0 without a response */
	const char *why;  /* libcurl's error text, "" when err is 0 */
	const char *body; /* response body, NUL-terminated */
	size_t len;
};

/* Called once per request, on the loop. Do not call mod_curlm_free() from here. */
typedef void(mod_curlm_h)(const struct mod_curlm_res *res, void *arg);

/* Makes a client driven by root. */
int mod_curlm_alloc(struct mod_curlm **mp, su_root_t *root);
/* Ends every pending request (callbacks get ECANCELED) and frees; NULL is fine. */
void mod_curlm_free(struct mod_curlm *m);

/*
 * Starts a request; body (copied) may be NULL for none. headers is a NULL-terminated list
 * of "Name: value" lines or NULL. timeout_ms bounds the whole exchange (0: 30 s). done is
 * called exactly once, later, never from inside this call.
 */
int mod_curlm_request(struct mod_curlm *m, const char *method, const char *url,
                      const char *const *headers, const void *body, size_t len, unsigned timeout_ms,
                      mod_curlm_h *done, void *arg);
/* mod_curlm_request() with "POST". */
int mod_curlm_post(struct mod_curlm *m, const char *url, const char *const *headers,
                   const void *body, size_t len, unsigned timeout_ms, mod_curlm_h *done, void *arg);
/* Drops pending requests made with arg without calling their callbacks; returns how many. */
unsigned mod_curlm_cancel(struct mod_curlm *m, void *arg);
/* Pending requests. */
unsigned mod_curlm_pending(const struct mod_curlm *m);
/* Caps response bodies (default 1 MiB); longer ones end with EMSGSIZE. */
void mod_curlm_set_body_max(struct mod_curlm *m, size_t max);

#endif
