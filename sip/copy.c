/*
 * What passes from a message to the one made from it on the other leg: every header that is
 * end to end (RFC 3261 16.6: all but what names the hop or the dialog), so that features the
 * phones and the PBX agree on (100rel, session timers, Replaces, Refer-To, events, unknown
 * headers) work through us. The dialog's own headers are the other leg's, set by nta.
 */
#include <string.h>
#include <strings.h>

#include "sip/b2bua.h"

/* Headers that belong to a hop or a dialog, or that we set ourselves. */
static int hop_header(const msg_hclass_t *hc)
{
	return hc == sip_request_class || hc == sip_status_class || hc == sip_via_class ||
	       hc == sip_route_class || hc == sip_record_route_class || hc == sip_call_id_class ||
	       hc == sip_from_class || hc == sip_to_class || hc == sip_cseq_class ||
	       hc == sip_contact_class || hc == sip_max_forwards_class ||
	       hc == sip_content_length_class || hc == sip_content_type_class ||
	       hc == sip_payload_class || hc == sip_separator_class || hc == sip_rseq_class ||
	       hc == sip_rack_class || hc == sip_path_class || hc == sip_service_route_class ||
	       hc == sip_timestamp_class || hc == sip_error_class;
}

/* Unknown headers pass, but for an identity a phone would forge toward the PBX. */
static int unknown_passes(const sip_unknown_t *un, int from_near)
{
	if (!un->un_name)
		return 0;
	if (from_near && (!strcasecmp(un->un_name, "P-Asserted-Identity") ||
	                  !strcasecmp(un->un_name, "P-Preferred-Identity")))
		return 0;
	return 1;
}

static int set_before(const msg_hclass_t *const *set, unsigned n, const msg_hclass_t *hc)
{
	for (unsigned i = 0; i < n; i++)
		if (set[i] == hc)
			return 1;
	return 0;
}

int copy_e2e(msg_t *dst, sip_t *dsip, msg_t *src, int from_near)
{
	msg_header_t **head = src ? msg_chain_head(src) : NULL;
	su_home_t *home = msg_home(dst);
	const msg_hclass_t *set[32];
	unsigned nset = 0;

	/* What dst has before anything is copied (its fragment chain is not built yet). */
	for (msg_header_t *h = head ? *head : NULL; h && nset < 32; h = h->sh_succ) {
		msg_header_t **hh;

		if (h->sh_class == sip_unknown_class || set_before(set, nset, h->sh_class))
			continue;
		hh = msg_hclass_offset(msg_mclass(dst), (msg_pub_t *)dsip,
		                       (msg_hclass_t *)h->sh_class);
		if (hh && *hh)
			set[nset++] = h->sh_class;
	}

	for (msg_header_t *h = head ? *head : NULL; h; h = h->sh_succ) {
		msg_header_t *copy;
		const msg_hclass_t *hc = h->sh_class;

		if (hc == sip_unknown_class) {
			if (!unknown_passes((const sip_unknown_t *)h, from_near))
				continue;
		} else if (hop_header(hc)) {
			continue;
		}
		/* Replaces names a dialog of the other side: the caller maps it. */
		if (hc == sip_replaces_class)
			continue;
		/* A header the new message had already was set by us on purpose (an Event with
		 * its id mapped, say): it stays. */
		if (set_before(set, nset, hc))
			continue;
		copy = msg_header_dup_one(home, h);
		if (!copy || msg_header_insert(dst, (msg_pub_t *)dsip, copy) < 0)
			return ENOMEM;
	}
	return 0;
}

/* The body: pl (maybe rewritten toward far) with the source's Content-Type. */
int copy_body(msg_t *dst, sip_t *dsip, const sip_t *src, const sip_payload_t *pl)
{
	if (!pl)
		return 0;
	if (sip_add_tl(dst, dsip, TAG_IF(body_ct(src), SIPTAG_CONTENT_TYPE(body_ct(src))),
	               SIPTAG_PAYLOAD(pl), TAG_END()) < 0)
		return ENOMEM;
	return 0;
}
