#!/usr/bin/env python3
"""Drive a move between three headless baresip instances through qrxferd (issue 4).

A (near phone) calls C (far party, auto-answer) through qrxferd; a move is started with
POST /v1/calls/{id}/moves; B dials the move's sip:m.<token>@<domain> URI (B's account sends
it to qrxferd through its outbound proxy). Checks: A and C established with RTP, the move
offered, B established, A closed by the far end, the move 'done' with a 'moved' event,
then after --hold seconds B hangs up and C sees the BYE. RTP figures (rtp_stats) and
recorded tones (sndfile -dec.wav, Goertzel over the last seconds) are printed and checked:
B received C's tone, C received B's tone after the move. Exit 0 when all hold, 1 otherwise.
"""
import argparse
import glob
import json
import math
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.request
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bctl import Ctrl, CtrlError  # noqa: E402
from call import log_size, rtp_summary  # noqa: E402

TONES = (440, 660, 880)


class Fail(Exception):
    pass


def pump(ctrls, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for c in ctrls:
            c.pump(0.03)


def wait_events(ctrls, want, since, timeout):
    """want: list of (ctrl, event type). True when every one was seen after since[ctrl]."""
    deadline = time.monotonic() + timeout
    while True:
        if all(c.seen(t, since[c]) for c, t in want):
            return True
        if time.monotonic() > deadline:
            return False
        pump(ctrls, 0.1)


def api(port, token, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300]


def goertzel(samples, rate, freq):
    w = 2 * math.pi * freq / rate
    k = 2 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


def tone_of(path, last_seconds):
    """(duration s, rms, zero-crossing Hz, tone of TONES with most energy, its share) over
    the last last_seconds of a WAV (first channel)."""
    with wave.open(path, "rb") as w:
        rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        if width != 2 or n == 0:
            raise Fail(f"{path}: {width}-byte samples, {n} frames")
        take = min(n, int(rate * last_seconds))
        w.setpos(n - take)
        raw = w.readframes(take)
    vals = struct.unpack(f"<{take * ch}h", raw)[::ch]
    x = [v / 32768.0 for v in vals]
    rms = math.sqrt(sum(v * v for v in x) / len(x))
    zc = sum(1 for a, b in zip(x, x[1:]) if (a < 0) != (b < 0))
    zhz = zc / 2 / (len(x) / rate)
    # Energy per candidate tone over 20 ms blocks (keeps Goertzel cheap and robust).
    blk = rate // 50
    energy = {f: 0.0 for f in TONES}
    for i in range(0, len(x) - blk + 1, blk):
        for f in TONES:
            energy[f] += goertzel(x[i:i + blk], rate, f)
    total = sum(energy.values()) or 1.0
    best = max(energy, key=energy.get)
    return n / rate, rms, zhz, best, energy[best] / total


def newest(pattern, after):
    files = [f for f in glob.glob(pattern) if os.path.getmtime(f) >= after]
    return max(files, key=os.path.getmtime) if files else None


def main():
    ap = argparse.ArgumentParser()
    for who in ("a", "b", "c"):
        ap.add_argument(f"--{who}-ctrl", type=int, required=True)
        ap.add_argument(f"--{who}-log", required=True)
        ap.add_argument(f"--{who}-rec", required=True, help="sndfile snd_path")
        ap.add_argument(f"--{who}-tone", type=int, required=True)
        ap.add_argument(f"--{who}-rtp", required=True, help="RTP port range LO-HI")
    ap.add_argument("--dial", required=True, help="URI A dials (qrxferd, then C)")
    ap.add_argument("--http", type=int, required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--qrxferd-log", required=True)
    ap.add_argument("--hold", type=float, default=5.0, help="seconds B and C talk after the move")
    ap.add_argument("--min-packets", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--anchored", help="rtpengine's RTP ports LO-HI: media goes through them "
                    "and C gets no re-INVITE")
    args = ap.parse_args()
    token = open(args.token_file).read().strip()
    t0 = time.time()

    failures = []
    a = b = c = None
    try:
        a = Ctrl("A", args.a_ctrl)
        b = Ctrl("B", args.b_ctrl)
        c = Ctrl("C", args.c_ctrl)
        ctrls = (a, b, c)
        since = {x: 0 for x in ctrls}

        print(f"A dials {args.dial}", flush=True)
        r = a.command("dial", args.dial)
        if not r.get("ok"):
            raise Fail(f"A: dial refused: {r.get('data')}")
        if not wait_events(ctrls, [(a, "CALL_ESTABLISHED"), (c, "CALL_ESTABLISHED")], since,
                           args.timeout):
            raise Fail("A -> qrxferd -> C: not established on both sides within "
                       f"{args.timeout}s (A closed: {a.seen('CALL_CLOSED')}, "
                       f"C closed: {c.seen('CALL_CLOSED')})")
        if not wait_events(ctrls, [(a, "CALL_RTPESTAB"), (c, "CALL_RTPESTAB")], since,
                           args.timeout):
            raise Fail("A <-> C: no CALL_RTPESTAB on both sides (no RTP before the move)")
        print("A <-> C established, RTP flowing both ways", flush=True)
        pump(ctrls, 1.5)

        st, body = api(args.http, token, "GET", "/v1/calls")
        calls = body.get("calls", []) if st == 200 and isinstance(body, dict) else []
        answered = [x["id"] for x in calls if x.get("state") == "answered"]
        if len(answered) != 1:
            raise Fail(f"GET /v1/calls: {st}, answered calls {answered}, expected one")
        call_id = answered[0]
        deadline = time.monotonic() + 5
        while True:
            st, body = api(args.http, token, "POST", f"/v1/calls/{call_id}/moves", b"")
            if st != 429 or time.monotonic() > deadline:
                break
            pump(ctrls, 0.1)
        if st != 201 or not isinstance(body, dict):
            raise Fail(f"POST /v1/calls/{call_id}/moves: {st} {body}")
        move_id, uri, code = body["id"], body["qr_uri"], body.get("code")
        print(f"move {move_id} on call {call_id}: qr_uri {uri}, code {code}", flush=True)
        if not re.fullmatch(r"sip:m\.[A-Za-z0-9]+@" + re.escape(args.domain), uri):
            failures.append(f"qr_uri {uri} is not sip:m.<token>@{args.domain}")
        pump(ctrls, 0.5)

        # B dials the QR's URI as it is; its outbound proxy is qrxferd.
        offs = {"B": log_size(args.b_log), "C": log_size(args.c_log)}
        since = {x: len(x.events) for x in ctrls}
        t_move = time.time()
        print(f"B dials {uri}", flush=True)
        r = b.command("dial", uri)
        if not r.get("ok"):
            raise Fail(f"B: dial refused: {r.get('data')}")
        ok = wait_events(ctrls, [(b, "CALL_ESTABLISHED"), (a, "CALL_CLOSED")], since,
                         args.timeout)
        closed_b = b.seen("CALL_CLOSED", since[b])
        if not b.seen("CALL_ESTABLISHED", since[b]):
            raise Fail(f"B: no CALL_ESTABLISHED within {args.timeout}s"
                       + (f" (CALL_CLOSED: {closed_b[0].get('param')})" if closed_b else ""))
        print("B established", flush=True)
        if not ok:
            failures.append(f"A: no CALL_CLOSED within {args.timeout}s after B answered")
        else:
            print(f"A: CALL_CLOSED {a.seen('CALL_CLOSED', since[a])[0].get('param')}", flush=True)

        st, mv = api(args.http, token, "GET", f"/v1/moves/{move_id}")
        state = mv.get("state") if isinstance(mv, dict) else None
        steps = [e.get("step") for e in mv.get("events", [])] if isinstance(mv, dict) else []
        print(f"move state {state}, steps {' '.join(map(str, steps))}", flush=True)
        if state != "done":
            failures.append(f"GET /v1/moves/{move_id}: state {state} ({st}), expected done")
        if "moved" not in steps:
            failures.append(f"move {move_id}: no 'moved' event")
        with open(args.qrxferd_log, errors="replace") as f:
            qlog = f.read()
        if not re.search(rf"qrxfer: move:? {re.escape(move_id)}: moved", qlog):
            failures.append(f"qrxferd log: no '{move_id}: moved' line")
        if c.seen("CALL_CLOSED", since[c]):
            failures.append(f"C: call closed by the move: {c.seen('CALL_CLOSED', since[c])}")

        # A's dialog is gone: qrxferd lists one call, and it is still the same call (C's side).
        st, body = api(args.http, token, "GET", "/v1/calls")
        ids = [x.get("id") for x in body.get("calls", [])] if isinstance(body, dict) else None
        print(f"qrxferd lists calls {ids} after the move", flush=True)
        if ids != [call_id]:
            failures.append(f"GET /v1/calls after the move: {ids}, expected [{call_id}]")

        print(f"B and C talk for {args.hold}s", flush=True)
        pump(ctrls, args.hold)
        if c.seen("CALL_CLOSED", since[c]) or b.seen("CALL_CLOSED", since[b]):
            failures.append("B or C closed before B hung up")
        print("B hangs up", flush=True)
        r = b.command("hangup")
        if not r.get("ok"):
            failures.append(f"B: hangup refused: {r.get('data')}")
        if not wait_events(ctrls, [(b, "CALL_CLOSED"), (c, "CALL_CLOSED")], since, args.timeout):
            failures.append("B hung up: no CALL_CLOSED on both B and C")

        # RTP figures: B's are for its call alone (all after the move); C's cover the whole call.
        for name, path in (("B", args.b_log), ("C", args.c_log)):
            s = rtp_summary(path, offs[name], 5.0)
            if s is None:
                failures.append(f"{name}: no rtp_stats summary in {path}")
                continue
            tx, rx, errs = s
            print(f"{name}: RTP packets transmitted {tx}, received {rx}, errors tx/rx {errs}",
                  flush=True)
            if name == "B" and rx <= args.min_packets:
                failures.append(f"B received {rx} RTP packets, expected > {args.min_packets}")
            if name == "B" and tx <= args.min_packets:
                failures.append(f"B sent {tx} RTP packets, expected > {args.min_packets}")
        # Where the RTP came from, as each baresip logged it: B from C's ports, and C, after
        # its re-INVITE, from B's ports (media goes end to end, not through qrxferd).
        def in_range(addr, rng):
            lo, hi = (int(v) for v in rng.split("-"))
            host, port = addr.rsplit(":", 1)
            return host == "127.0.0.1" and lo <= int(port) <= hi

        def tail_of(path, off):
            with open(path, "rb") as f:
                f.seek(off)
                return f.read().decode("utf-8", "replace")

        b_text, c_text = tail_of(args.b_log, offs["B"]), tail_of(args.c_log, offs["C"])
        b_src = re.findall(r"receiving from ([0-9.]+:\d+)", b_text)
        c_src = re.findall(r"(?:receiving|bytes) from ([0-9.]+:\d+)", c_text)
        print(f"B: incoming RTP from {', '.join(b_src) or 'nobody'} (C's RTP ports {args.c_rtp})",
              flush=True)
        print(f"C: re-INVITE {'seen' if 'got re-INVITE' in c_text else 'NOT seen'}; incoming "
              f"RTP after it from {', '.join(c_src) or 'nobody'} (B's RTP ports {args.b_rtp})",
              flush=True)
        if args.anchored:
            # Anchored: every stream comes from rtpengine's ports; C is never re-INVITEd.
            with open(args.a_log, errors="replace") as f:
                a_src = re.findall(r"receiving from ([0-9.]+:\d+)", f.read())
            print(f"A: incoming RTP from {', '.join(a_src) or 'nobody'} (rtpengine's ports "
                  f"{args.anchored})", flush=True)
            for name, src in (("A", a_src), ("B", b_src), ("C", c_src)):
                if not src or not all(in_range(x, args.anchored) for x in src):
                    failures.append(f"{name}'s RTP came from {src}, not from rtpengine's "
                                    f"ports {args.anchored}")
            if "got re-INVITE" in c_text:
                failures.append("C got a re-INVITE: the anchored move must not send one")
        else:
            if not b_src or not all(in_range(x, args.c_rtp) for x in b_src):
                failures.append(f"B's RTP came from {b_src}, not from C's ports {args.c_rtp}")
            if "got re-INVITE" not in c_text:
                failures.append("C's log shows no re-INVITE after B dialed")
            # A keeps sending until qrxferd's BYE reaches it, so a last packet or two of A's
            # may reach C after the re-INVITE (C logs the SSRC change): what C ends up with
            # counts.
            if not c_src or not in_range(c_src[-1], args.b_rtp):
                failures.append(f"C's RTP after the move came last from {c_src[-1:]}, not "
                                f"from B's ports {args.b_rtp}")

        # Tones: B's received audio is C's tone; C's received audio at the end is B's tone.
        wants = (("B", args.b_rec, t_move, args.c_tone, "C"),
                 ("C", args.c_rec, t0, args.b_tone, "B"))
        for name, rec, after, want, src_name in wants:
            deadline = time.monotonic() + 3
            f = None
            while f is None and time.monotonic() < deadline:
                f = newest(os.path.join(rec, "*-dec.wav"), after - 1)
                if f is None:
                    time.sleep(0.2)
            if f is None:
                failures.append(f"{name}: no -dec.wav recording in {rec}")
                continue
            dur, rms, zhz, best, share = tone_of(f, min(2.0, args.hold / 2))
            print(f"{name} received ({os.path.basename(f)}, {dur:.2f} s): last seconds RMS "
                  f"{rms:.3f}, zero-crossing {zhz:.0f} Hz, strongest of {TONES} Hz: {best} Hz "
                  f"({share:.0%} of their energy)", flush=True)
            if rms < 0.01:
                failures.append(f"{name}: received silence at the end (RMS {rms:.4f})")
            elif best != want:
                failures.append(f"{name} received {best} Hz, expected {src_name}'s {want} Hz")
            if name == "C":
                # The same recording began with A's tone: the switch is in C's stream.
                _, rms0, _, best0, _ = tone_of_head(f, 1.0)
                print(f"C received at the start of the call: {best0} Hz (RMS {rms0:.3f})",
                      flush=True)
                if rms0 < 0.01:
                    failures.append(f"C first received silence (RMS {rms0:.4f}), not A's "
                                    f"{args.a_tone} Hz")
                elif best0 != args.a_tone:
                    failures.append(f"C first received {best0} Hz, expected A's {args.a_tone} Hz")
    except Fail as e:
        failures.append(str(e))
    except (CtrlError, OSError) as e:
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        for x in (a, b, c):
            if x:
                x.close()

    for f in failures:
        print(f"FAIL: {f}", flush=True)
    return 1 if failures else 0


def tone_of_head(path, seconds):
    """tone_of over the first seconds of a WAV (after the first 0.5 s of jitter buffer)."""
    tmp = path + ".head.wav"
    with wave.open(path, "rb") as w:
        rate = w.getframerate()
        w.setpos(min(w.getnframes(), rate // 2))
        frames = w.readframes(int(rate * seconds))
        params = w.getparams()
    with wave.open(tmp, "wb") as o:
        o.setparams(params)
        o.writeframes(frames)
    try:
        return tone_of(tmp, seconds)
    finally:
        os.unlink(tmp)


if __name__ == "__main__":
    sys.exit(main())
