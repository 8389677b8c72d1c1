/*
 * RFC 6035 voice quality reports (Event: vq-rtcpxr, Content-Type: application/vq-rtcpxr) as
 * a phone PUBLISHes them: a strict, bounded reader of the text body. The first line names the
 * report (VQSessionReport, VQIntervalReport or VQAlertReport, optionally ": <why>"); then
 * "Name: value" lines; LocalMetrics: and RemoteMetrics: open the reporter's own metrics and
 * what it learned of the far end's. Required: CallID, LocalID, RemoteID, LocalAddr,
 * RemoteAddr, and in LocalMetrics a PacketLoss line with NLR=<0..100> (the share of the
 * packets sent to the reporter that the network lost: 100 means nothing arrived).
 */
#ifndef QRXFER_MOVE_XR_H
#define QRXFER_MOVE_XR_H

#include <stddef.h>

#define XR_BODY_MAX    4096 /* bytes */
#define XR_LINE_MAX    512  /* characters in one line */
#define XR_LINES_MAX   64
#define XR_CALL_ID_MAX 255

struct xr_report {
	char kind[20]; /* VQSessionReport, VQIntervalReport, VQAlertReport */
	char call_id[XR_CALL_ID_MAX + 1];
	int local_nlr;  /* per mille of the packets towards the reporter lost: 1000 = none came */
	int remote_nlr; /* the same for the far end, from RemoteMetrics; -1 when not said */
};

/* Reads body (len bytes) into r: 0, or EINVAL with why (one line, our words only: nothing of
 * the body is copied into it) saying what was wrong. */
int xr_parse(const char *body, size_t len, struct xr_report *r, char *why, size_t wlen);

#endif
