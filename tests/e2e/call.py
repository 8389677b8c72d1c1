#!/usr/bin/env python3
"""Drive one call between two headless baresip instances and check it.

alice dials, bob auto-answers; after --hold seconds one side hangs up. Checks:
both sides report CALL_ESTABLISHED, both report CALL_CLOSED after the hang-up,
and baresip's rtp_stats summary (printed at hang-up into each log) shows RTP
packets sent and received on both sides. Exit 0 when all hold, 1 otherwise.
"""
import argparse
import json
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bctl import Ctrl, CtrlError  # noqa: E402


def pump_both(a, b, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        a.pump(0.05)
        b.pump(0.05)


def wait_for(a, b, want, since, timeout):
    """Wait until each Ctrl in want (dict ctrl->etype) has seen its event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c.seen(t, since[c]) for c, t in want.items()):
            return True
        pump_both(a, b, 0.1)
    return all(c.seen(t, since[c]) for c, t in want.items())


def live_calls(url, token):
    """Number of live calls qrxferd lists at GET /v1/calls, or an error string."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return len(json.load(r)["calls"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"GET {url}: {e}"


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# rtp_stats at hang-up prints "packets:   <transmit>   <receive>"
PACKETS = re.compile(r"^\s*packets:\s+(\d+)\s+(\d+)", re.M)
ERRORS = re.compile(r"^\s*errors:\s+(-?\d+)\s+(-?\d+)", re.M)


def rtp_summary(path, offset, timeout):
    deadline = time.monotonic() + timeout
    while True:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        m = PACKETS.search(text)
        if m or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not m:
        return None
    err = ERRORS.search(text, m.end())
    return (int(m.group(1)), int(m.group(2)), "/".join(err.groups()) if err else "?")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alice-ctrl", type=int, required=True)
    ap.add_argument("--bob-ctrl", type=int, required=True)
    ap.add_argument("--alice-log", required=True)
    ap.add_argument("--bob-log", required=True)
    ap.add_argument("--dial", required=True, help="URI alice dials")
    ap.add_argument("--hold", type=float, default=4.0)
    ap.add_argument("--hangup-by", choices=["alice", "bob"], default="alice")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--calls-url", help="qrxferd GET /v1/calls: one live call while up, none after")
    ap.add_argument("--token-file", help="file holding the admin bearer token")
    args = ap.parse_args()

    failures = []
    alice = bob = None
    try:
        alice = Ctrl("alice", args.alice_ctrl)
        bob = Ctrl("bob", args.bob_ctrl)
        since = {alice: len(alice.events), bob: len(bob.events)}
        offs = {"alice": log_size(args.alice_log), "bob": log_size(args.bob_log)}

        print(f"alice dials {args.dial}", flush=True)
        r = alice.command("dial", args.dial)
        if not r.get("ok"):
            failures.append(f"alice: dial refused: {r.get('data')}")
            raise CtrlError("dial failed")

        if not wait_for(alice, bob, {alice: "CALL_ESTABLISHED", bob: "CALL_ESTABLISHED"},
                        since, args.timeout):
            for c in (alice, bob):
                if not c.seen("CALL_ESTABLISHED", since[c]):
                    closed = c.seen("CALL_CLOSED", since[c])
                    why = closed[0].get("param") if closed else "nothing"
                    failures.append(f"{c.name}: no CALL_ESTABLISHED within "
                                    f"{args.timeout}s (got CALL_CLOSED: {why})"
                                    if closed else
                                    f"{c.name}: no CALL_ESTABLISHED within {args.timeout}s")
            raise CtrlError("call not established")
        print("call established on both sides", flush=True)

        token = open(args.token_file).read().strip() if args.token_file else ""
        pump_both(alice, bob, args.hold / 2)
        if args.calls_url:
            n = live_calls(args.calls_url, token)
            print(f"qrxferd lists {n} live call(s) while the call is up", flush=True)
            if n != 1:
                failures.append(f"qrxferd GET /v1/calls while the call is up: {n}, expected 1")
        pump_both(alice, bob, args.hold / 2)
        for c in (alice, bob):
            early = c.seen("CALL_CLOSED", since[c])
            if early:
                failures.append(f"{c.name}: call closed before hang-up: {early[0].get('param')}")

        hanger = alice if args.hangup_by == "alice" else bob
        print(f"{hanger.name} hangs up", flush=True)
        r = hanger.command("hangup")
        if not r.get("ok"):
            failures.append(f"{hanger.name}: hangup refused: {r.get('data')}")
        if not wait_for(alice, bob, {alice: "CALL_CLOSED", bob: "CALL_CLOSED"}, since,
                        args.timeout):
            for c in (alice, bob):
                if not c.seen("CALL_CLOSED", since[c]):
                    failures.append(f"{c.name}: no CALL_CLOSED within {args.timeout}s "
                                    f"after {hanger.name} hung up")
        else:
            for c in (alice, bob):
                print(f"{c.name}: CALL_CLOSED {c.seen('CALL_CLOSED', since[c])[0].get('param')}",
                      flush=True)

        if args.calls_url:
            deadline = time.monotonic() + 5
            while True:
                n = live_calls(args.calls_url, token)
                if n == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            print(f"qrxferd lists {n} live call(s) after the hang-up", flush=True)
            if n != 0:
                failures.append(f"qrxferd GET /v1/calls 5 s after the hang-up: {n}, expected 0")

        for name, path in (("alice", args.alice_log), ("bob", args.bob_log)):
            s = rtp_summary(path, offs[name], 5.0)
            if s is None:
                failures.append(f"{name}: no rtp_stats summary in {path}")
                continue
            tx, rx, errs = s
            print(f"{name}: RTP packets transmitted {tx}, received {rx}, errors tx/rx {errs}", flush=True)
            if tx <= 0:
                failures.append(f"{name}: sent no RTP packets")
            if rx <= 0:
                failures.append(f"{name}: received no RTP packets")
    except (CtrlError, OSError) as e:
        if not failures:
            failures.append(str(e))
    finally:
        for c in (alice, bob):
            if c:
                c.close()

    for f in failures:
        print(f"FAIL: {f}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
