#!/usr/bin/env python3
"""Drive baresip through qrxferd for tests/baresip/relay.test and check what it reports.

  relay.py mwi --log FILE [--timeout S]
      baresip A registers through qrxferd; its mwi module's SUBSCRIBE must be answered and
      the PBX's NOTIFY (Messages-Waiting: yes) reported (ctrl_tcp event MWI_NOTIFY); its
      presence module's subscription to the buddy must bring NOTIFYs, the second changing
      the buddy from Online to Busy (A's log: "changed status from Online to Busy").
  relay.py transfer --a-ctrl PORT --c-ctrl PORT --a-log FILE --dial URI --target URI
      A calls C through qrxferd, then transfers it (menu 'transfer', an in-dialog REFER);
      C must get the REFER (event TRANSFER), call the target, and its NOTIFY 200 must reach
      A, which closes the call as transferred (CALL_CLOSED "Call transfered").

Prints one "FAIL: ..." line per unmet check (with what baresip said instead) and exits 1,
or exits 0 when all hold.
"""
import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from bctl import Ctrl, CtrlError  # noqa: E402


def read_log(path):
    try:
        with open(path, "rb") as f:
            return re.sub(r"\x1b\[[0-9;]*m", "", f.read().decode("utf-8", "replace"))
    except OSError:
        return ""


def last_lines(text, pattern, n=2):
    hits = [ln.strip() for ln in text.splitlines() if re.search(pattern, ln)]
    return "; ".join(hits[-n:]) if hits else "nothing"


def mwi(args):
    """Checked in A's log (menu prints the MWI body, contact.c the status change): A's
    REGISTER_OK and first MWI_NOTIFY may come before this client connects to ctrl_tcp."""
    failures = []
    deadline = time.monotonic() + args.timeout
    mwi_re = re.compile(r"----- MWI for sip:alice@qrxfer\.test -----\s*\n[^\n]*?"
                        r"Messages-Waiting: yes", re.S)
    status_re = re.compile(r"changed status from Online to Busy")
    while time.monotonic() < deadline:
        log = read_log(args.log)
        if mwi_re.search(log) and status_re.search(log):
            break
        time.sleep(0.2)
    log = read_log(args.log)
    if not re.search(r"alice@qrxfer\.test: \{[^}]*\} 200 OK", log):
        failures.append("alice: not registered through qrxferd (log: %s)"
                        % last_lines(log, r"reg|[0-9]{3} [A-Z]"))
    if not mwi_re.search(log):
        failures.append("alice: no MWI report with Messages-Waiting: yes in %gs (log: %s)"
                        % (args.timeout, last_lines(log, r"mwi|MWI")))
    if not status_re.search(log):
        failures.append("alice: buddy sip:bob@qrxfer.test never went Online -> Busy "
                        "(log: %s)" % last_lines(log, r"presence|status"))
    return failures


def transfer(args):
    failures = []
    a = Ctrl("alice", args.a_ctrl)
    c = Ctrl("carol", args.c_ctrl)

    def pump(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            a.pump(0.05)
            c.pump(0.05)

    def wait(pred, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if pred():
                return True
            pump(0.1)
        return pred()

    try:
        r = a.command("dial", args.dial)
        if not r.get("ok"):
            failures.append("alice: dial refused: %s" % r.get("data"))
            return failures
        if not wait(lambda: a.seen("CALL_ESTABLISHED") and c.seen("CALL_ESTABLISHED"),
                    args.timeout):
            failures.append("call alice -> qrxferd -> carol not established in %gs"
                            % args.timeout)
            return failures
        pump(1.0)
        r = a.command("transfer", args.target)
        if not r.get("ok"):
            failures.append("alice: transfer refused: %s" % r.get("data"))
        wait(lambda: a.seen("CALL_CLOSED") or a.seen("TRANSFER_FAILED"), args.timeout)
        if not c.seen("TRANSFER"):
            failures.append("carol: never got the REFER (no TRANSFER event)")
        closed = [e.get("param") or "" for e in a.seen("CALL_CLOSED")]
        failed = [e.get("param") or "" for e in a.seen("TRANSFER_FAILED")]
        if not any("transfer" in p.lower() for p in closed):
            failures.append("alice: call not closed as transferred (CALL_CLOSED %s, "
                            "TRANSFER_FAILED %s; log: %s)"
                            % (closed or "none", failed or "none",
                               last_lines(read_log(args.a_log), r"transfer")))
        # carol's new call to the target must be up
        if not wait(lambda: len(c.seen("CALL_ESTABLISHED")) >= 2, 5):
            failures.append("carol: no established call to the transfer target")
    except CtrlError as e:
        failures.append(str(e))
    finally:
        a.close()
        c.close()
    return failures


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("mwi")
    m.add_argument("--log", required=True)
    m.add_argument("--timeout", type=float, default=12.0)
    t = sub.add_parser("transfer")
    t.add_argument("--a-ctrl", type=int, required=True)
    t.add_argument("--c-ctrl", type=int, required=True)
    t.add_argument("--a-log", required=True)
    t.add_argument("--dial", required=True)
    t.add_argument("--target", required=True)
    t.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    failures = mwi(args) if args.what == "mwi" else transfer(args)
    for f in failures:
        print("FAIL: " + f, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
