#!/usr/bin/env python3
"""Own devices (issue 13) with real baresip phones registered through qrxferd to Kamailio.

Alice has three phones (A1, A2, A3) registered through qrxferd; Carol (C, the far party,
auto-answer) is registered at Kamailio directly. Raw SIP sockets play a device of another AOR
(dave), a stranger with a forged From, a forged REGISTER 200 and a device whose binding
expired. In order:
  1. A1 calls C; RTP both ways.
  2. Refused, the call staying with A1: *11 from dave's registered device (403), from a
     stranger whose From says alice (403), after a forged 200 to a REGISTER (403), from a
     device whose binding expired (403).
  3. Pull: A2 dials *11: A2 established with RTP from C, A1's call closed, C re-INVITEd and
     getting A2's RTP, the move done.
  4. Push, no hint (all at once): POST /v1/calls/{id}/moves?to=mine; A1 (auto) and A3
     (manual) ring, A1 takes the call, A3 is cancelled, A2 is hung up.
  5. A hint changes the order: POST /v1/devices/near names A3; the push rings A3 alone (A2,
     who would answer at once, does not ring), A3 accepts and takes the call.
  6. Nobody answers: A1 and A2 ring unanswered until [own] ring_timeout; both are cancelled,
     A3 and C stay in the call, the move failed.
  7. A raw phone of alice calls C and asks for the push in its dialog by MESSAGE "mine",
     REFER to sip:mine@ (202, NOTIFY 200 sipfrag) and DTMF *81 as INFO: each time A3 (still
     hinted) takes the call with RTP and the phone gets BYE "Call moved".
  8. The nearest (a newer hint: A1, manual) rings alone and does not answer; after
     [own] near_ring A2 and A3 ring too, A2 takes the call, A1 and A3 are cancelled.
Exit 0 when all hold, 1 otherwise.
"""
import argparse
import json
import os
import random
import re
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bctl import Ctrl, CtrlError  # noqa: E402
from call import log_size  # noqa: E402
from move import Fail, api, pump, wait_events  # noqa: E402


class Raw:
    """A SIP user agent on one UDP socket: enough to register and send an INVITE."""

    def __init__(self, qport, user):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]
        self.q = ("127.0.0.1", qport)
        self.user = user
        self.n = 0

    def send(self, text):
        self.s.sendto(text.replace("\n", "\r\n").encode(), self.q)

    def request(self, method, ruri, from_user, headers="", body=""):
        self.n += 1
        branch = f"z9hG4bK-{self.port}-{self.n}-{random.randrange(1 << 30)}"
        to = ruri if method != "REGISTER" else f"sip:{self.user}@qrxfer.test"
        self.send(
            f"{method} {ruri} SIP/2.0\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\n"
            f"Max-Forwards: 70\n"
            f"From: <sip:{from_user}@qrxfer.test>;tag=t{self.port}{self.n}\n"
            f"To: <{to}>\n"
            f"Call-ID: own-{self.port}-{self.n}@127.0.0.1\n"
            f"CSeq: {self.n} {method}\n"
            f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>\n"
            f"{headers}"
            f"Content-Length: {len(body)}\n\n{body}")
        return self.final(5.0)

    def final(self, timeout):
        """The status of the next final response (ACKing a non-2xx INVITE answer), or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.s.recv(65535).decode("utf-8", "replace")
            except socket.timeout:
                return None
            m = re.match(r"SIP/2\.0 (\d+)", data)
            if not m:
                continue
            st = int(m.group(1))
            if st < 200:
                continue
            if "INVITE" in re.search(r"CSeq:\s*\d+\s+(\w+)", data, re.I).group(1):
                hdr = {k.lower(): v for k, v in re.findall(r"^(Via|From|To|Call-ID):\s*(.*?)\r?$",
                                                          data, re.M | re.I)}
                self.send(f"ACK sip:*11@qrxfer.test SIP/2.0\nVia: {hdr['via']}\n"
                          f"Max-Forwards: 70\nFrom: {hdr['from']}\nTo: {hdr['to']}\n"
                          f"Call-ID: {hdr['call-id']}\nCSeq: {self.n} ACK\n"
                          f"Content-Length: 0\n\n")
            return st
        return None

    def close(self):
        self.s.close()


SDP = ("v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


class RawPhone(Raw):
    """A registered phone of alice on a raw socket that places a call and speaks in it:
    MESSAGE, REFER and INFO in its dialog; every request it gets is answered 200."""

    def __init__(self, qport):
        super().__init__(qport, "alice")
        self.got = []  # (method, text) of the requests it received

    def _fields(self, data):
        return {k.lower(): v for k, v in re.findall(
            r"^(Via|From|To|Call-ID|CSeq|Contact):\s*(.*?)\r?$", data, re.M | re.I)}

    def pump(self, seconds, want=None):
        """Answer requests for a while; the first response whose CSeq method is want is
        returned as (status, text) once final."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.s.recv(65535).decode("utf-8", "replace")
            except socket.timeout:
                break
            m = re.match(r"SIP/2\.0 (\d+)", data)
            if m:
                meth = re.search(r"CSeq:\s*\d+\s+(\w+)", data, re.I).group(1)
                if want and meth == want and int(m.group(1)) >= 200:
                    return int(m.group(1)), data
                continue
            meth = data.split(" ", 1)[0]
            self.got.append((meth, data))
            if meth == "ACK":
                continue
            f = self._fields(data)
            vias = re.findall(r"^Via:\s*(.*?)\r?$", data, re.M | re.I)
            self.send("SIP/2.0 200 OK\n" + "".join(f"Via: {v}\n" for v in vias) +
                      f"From: {f['from']}\nTo: {f['to']}\nCall-ID: {f['call-id']}\n"
                      f"CSeq: {f['cseq']}\nContent-Length: 0\n\n")
        return None

    def call(self, ruri):
        """INVITE with an offer; True once answered and ACKed."""
        self.n += 1
        self.cid = f"own-call-{self.port}-{self.n}@127.0.0.1"
        self.ltag = f"p{self.port}{self.n}"
        self.cseq = 1
        body = SDP.format(port=self.port + 2)
        branch = f"z9hG4bK-c{self.port}-{self.n}"
        self.send(f"INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\n"
                  f"Max-Forwards: 70\nFrom: <sip:alice@qrxfer.test>;tag={self.ltag}\n"
                  f"To: <{ruri}>\nCall-ID: {self.cid}\nCSeq: 1 INVITE\n"
                  f"Contact: <sip:alice@127.0.0.1:{self.port}>\nContent-Type: application/sdp\n"
                  f"Content-Length: {len(body)}\n\n" + body.replace("\r\n", "\n"))
        r = self.pump(10.0, "INVITE")
        if not r or r[0] != 200:
            return False
        f = self._fields(r[1])
        self.to = f["to"]
        self.target = re.search(r"<([^>]+)>", f["contact"]).group(1)
        self.dialog_send("ACK", cseq=1)
        return True

    def dialog_send(self, method, headers="", body="", ctype=None, cseq=None):
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        self.n += 1
        hdr = headers + (f"Content-Type: {ctype}\n" if ctype else "")
        self.send(f"{method} {self.target} SIP/2.0\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-d{self.port}-{self.n};rport\n"
                  f"Max-Forwards: 70\nFrom: <sip:alice@qrxfer.test>;tag={self.ltag}\nTo: {self.to}\n"
                  f"Call-ID: {self.cid}\nCSeq: {cseq} {method}\n"
                  f"Contact: <sip:alice@127.0.0.1:{self.port}>\n{hdr}"
                  f"Content-Length: {len(body)}\n\n{body}")

    def ask(self, method, headers="", body="", ctype=None):
        self.dialog_send(method, headers, body, ctype)
        r = self.pump(5.0, method)
        return r[0] if r else None

    def bye_seen(self):
        return [d for m, d in self.got if m == "BYE" and self.cid in d]


def bindings(db, aor):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            rows = con.execute("SELECT contact, flow FROM bindings WHERE aor = ? AND "
                               "expires_at > ?", (aor, int(time.time() * 1000))).fetchall()
        finally:
            con.close()
        return rows
    except sqlite3.Error:
        return []


def one_call(args, token):
    st, body = api(args.http, token, "GET", "/v1/calls")
    calls = body.get("calls", []) if st == 200 and isinstance(body, dict) else []
    return [x["id"] for x in calls if x.get("state") == "answered"]


def main():
    ap = argparse.ArgumentParser()
    for who in ("a1", "a2", "a3", "c"):
        ap.add_argument(f"--{who}-ctrl", type=int, required=True)
        ap.add_argument(f"--{who}-log", required=True)
        ap.add_argument(f"--{who}-port", type=int, required=True)
        ap.add_argument(f"--{who}-rtp", required=True)
    ap.add_argument("--qport", type=int, required=True)
    ap.add_argument("--http", type=int, required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--qrxferd-log", required=True)
    ap.add_argument("--ring-timeout", type=float, required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    token = open(args.token_file).read().strip()
    failures = []
    ctl = {}
    raws = []

    def check(cond, what):
        if not cond:
            failures.append(what)
            print(f"  NOT OK: {what}", flush=True)
        return cond

    def c_rtp_from(off, rng):
        with open(args.c_log, "rb") as f:
            f.seek(off)
            text = f.read().decode("utf-8", "replace")
        src = re.findall(r"(?:receiving|bytes) from ([0-9.]+:\d+)", text)
        lo, hi = (int(v) for v in rng.split("-"))
        return src, bool(src) and lo <= int(src[-1].rsplit(":", 1)[1]) <= hi

    try:
        for who in ("a1", "a2", "a3", "c"):
            ctl[who] = Ctrl(who.upper(), getattr(args, f"{who}_ctrl"))
        a1, a2, a3, c = ctl["a1"], ctl["a2"], ctl["a3"], ctl["c"]
        allc = (a1, a2, a3, c)

        deadline = time.monotonic() + args.timeout
        while len(bindings(args.db, "alice@qrxfer.test")) < 3 and time.monotonic() < deadline:
            pump(allc, 0.2)
        got = bindings(args.db, "alice@qrxfer.test")
        print(f"alice's bindings in the store: {got}", flush=True)
        if len(got) != 3:
            raise Fail(f"alice has {len(got)} bindings in the store, expected 3")

        # 1. A1 calls C.
        since = {x: len(x.events) for x in allc}
        a1.command("dial", "sip:carol@qrxfer.test")
        if not wait_events(allc, [(a1, "CALL_RTPESTAB"), (c, "CALL_RTPESTAB")], since,
                           args.timeout):
            raise Fail("A1 -> qrxferd -> Kamailio -> C: no RTP both ways")
        calls = one_call(args, token)
        if len(calls) != 1:
            raise Fail(f"expected one answered call, got {calls}")
        call_id = calls[0]
        print(f"1. A1 <-> C up (call {call_id}), RTP both ways", flush=True)

        # 2. Refusals: the call stays with A1.
        since = {x: len(x.events) for x in allc}
        dave = Raw(args.qport, "dave")
        raws.append(dave)
        st = dave.request("REGISTER", "sip:qrxfer.test", "dave", "Expires: 60\n")
        check(st == 200, f"dave's REGISTER through qrxferd: {st}, expected 200")
        st = dave.request("INVITE", "sip:*11@qrxfer.test", "dave")
        print(f"2a. *11 from dave's registered device: {st}", flush=True)
        check(st == 403, f"*11 from another AOR's device: {st}, expected 403")
        stranger = Raw(args.qport, "alice")
        raws.append(stranger)
        st = stranger.request("INVITE", "sip:*11@qrxfer.test", "alice")
        print(f"2b. *11 from a stranger with From alice: {st}", flush=True)
        check(st == 403, f"*11 from an unregistered device with a forged From: {st}, expected 403")
        stranger.send(
            f"SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:{args.qport};branch=z9hG4bKforged1\n"
            f"From: <sip:alice@qrxfer.test>;tag=f1\nTo: <sip:alice@qrxfer.test>;tag=f2\n"
            f"Call-ID: forged@127.0.0.1\nCSeq: 1 REGISTER\n"
            f"Contact: <sip:alice@127.0.0.1:{stranger.port}>;expires=3600\n"
            f"Content-Length: 0\n\n")
        time.sleep(0.3)
        st = stranger.request("INVITE", "sip:*11@qrxfer.test", "alice")
        print(f"2c. *11 after a forged REGISTER 200 to qrxferd: {st}", flush=True)
        check(st == 403, f"*11 after a forged REGISTER 200: {st}, expected 403")
        check(not any(f == f"udp:127.0.0.1:{stranger.port}"
                      for _, f in bindings(args.db, "alice@qrxfer.test")),
              "the forged 200 made a binding")
        old = Raw(args.qport, "alice")
        raws.append(old)
        st = old.request("REGISTER", "sip:qrxfer.test", "alice", "Expires: 1\n")
        check(st == 200, f"a 1-second REGISTER through qrxferd: {st}, expected 200")
        pump(allc, 2.5)
        st = old.request("INVITE", "sip:*11@qrxfer.test", "alice")
        print(f"2d. *11 from alice's device whose binding expired: {st}", flush=True)
        check(st == 403, f"*11 from an expired binding: {st}, expected 403")
        pump(allc, 0.5)
        check(not a1.seen("CALL_CLOSED", since[a1]) and not c.seen("CALL_CLOSED", since[c]),
              "a refused pull ended the call")
        check(one_call(args, token) == [call_id], "the call is not the same after the refusals")

        # 3. Pull to A2.
        since = {x: len(x.events) for x in allc}
        c_off = log_size(args.c_log)
        a2.command("dial", "sip:*11@qrxfer.test")
        ok = wait_events(allc, [(a2, "CALL_ESTABLISHED"), (a1, "CALL_CLOSED"),
                                (a2, "CALL_RTPESTAB")], since, args.timeout)
        print(f"3. pull by A2: A2 {'established' if a2.seen('CALL_ESTABLISHED', since[a2]) else 'NOT established'}, "
              f"A1 {'closed' if a1.seen('CALL_CLOSED', since[a1]) else 'NOT closed'}", flush=True)
        check(ok, "pull: A2 not established with RTP, or A1 not closed")
        pump(allc, 2.0)
        src, from_a2 = c_rtp_from(c_off, args.a2_rtp)
        print(f"   C receives RTP from {src[-1:]} (A2's ports {args.a2_rtp})", flush=True)
        check(from_a2, f"pull: C's RTP comes from {src[-1:]}, not A2's {args.a2_rtp}")
        check(not c.seen("CALL_CLOSED", since[c]), "pull: C's call closed")
        check(one_call(args, token) == [call_id], "pull: not the same call")

        # 4. Push with no hint: A1 (auto) and A3 (manual) ring at once; A1 wins.
        a3.command("answermode", "manual")
        since = {x: len(x.events) for x in allc}
        c_off = log_size(args.c_log)
        st, body = api(args.http, token, "POST", f"/v1/calls/{call_id}/moves?to=mine", b"")
        print(f"4. push: POST ...moves?to=mine: {st} {body}", flush=True)
        check(st == 201, f"push: POST moves?to=mine answered {st}")
        move_id = body.get("id") if isinstance(body, dict) else None
        ok = wait_events(allc, [(a1, "CALL_ESTABLISHED"), (a2, "CALL_CLOSED"),
                                (a3, "CALL_INCOMING"), (a3, "CALL_CLOSED"),
                                (a1, "CALL_RTPESTAB")], since, args.timeout)
        check(ok, "push: A1 did not take the call with RTP, or A2 not closed, or A3 not "
                  "rung and cancelled")
        check(not a3.seen("CALL_ESTABLISHED", since[a3]), "push: A3 took the call too")
        pump(allc, 1.5)
        src, from_a1 = c_rtp_from(c_off, args.a1_rtp)
        check(from_a1, f"push: C's RTP comes from {src[-1:]}, not A1's {args.a1_rtp}")
        st, mv = api(args.http, token, "GET", f"/v1/moves/{move_id}")
        print(f"   move {move_id}: {mv.get('state') if isinstance(mv, dict) else mv}", flush=True)
        check(isinstance(mv, dict) and mv.get("state") == "done", "push: the move is not done")

        # 5. A hint puts A3 first: it rings alone; A2 (auto) is not called.
        a3_flow = f"udp:127.0.0.1:{args.a3_port}"
        st, body = api(args.http, token, "POST", "/v1/devices/near",
                       json.dumps({"aor": "alice@qrxfer.test", "device": a3_flow}).encode())
        check(st == 200, f"POST /v1/devices/near: {st} {body}")
        since = {x: len(x.events) for x in allc}
        st, body = api(args.http, token, "POST", f"/v1/calls/{call_id}/moves?to=mine", b"")
        check(st == 201, f"push with a hint: {st} {body}")
        wait_events(allc, [(a3, "CALL_INCOMING")], since, args.timeout)
        pump(allc, 1.0)
        check(a3.seen("CALL_INCOMING", since[a3]), "hint: A3 did not ring")
        check(not a2.seen("CALL_INCOMING", since[a2]), "hint: A2 rang beside the nearest")
        a3.command("accept")
        ok = wait_events(allc, [(a3, "CALL_ESTABLISHED"), (a1, "CALL_CLOSED")], since,
                         args.timeout)
        print(f"5. hint: A3 rang alone and took the call: {ok}", flush=True)
        check(ok, "hint: A3 did not take the call")
        check(not a2.seen("CALL_INCOMING", since[a2]), "hint: A2 rang")

        # 6. Nobody answers: the call stays with A3.
        a1.command("answermode", "manual")
        a2.command("answermode", "manual")
        since = {x: len(x.events) for x in allc}
        st, body = api(args.http, token, "POST", f"/v1/calls/{call_id}/moves?to=mine", b"")
        check(st == 201, f"push nobody answers: {st} {body}")
        move_id = body.get("id") if isinstance(body, dict) else None
        ok = wait_events(allc, [(a1, "CALL_INCOMING"), (a2, "CALL_INCOMING"),
                                (a1, "CALL_CLOSED"), (a2, "CALL_CLOSED")], since,
                         args.ring_timeout + args.timeout)
        print(f"6. nobody answers: A1 and A2 rang and were cancelled: {ok}", flush=True)
        check(ok, "nobody answers: A1 and A2 not rung and cancelled")
        pump(allc, 1.0)
        check(not a3.seen("CALL_CLOSED", since[a3]) and not c.seen("CALL_CLOSED", since[c]),
              "nobody answers: the call did not stay with A3")
        st, mv = api(args.http, token, "GET", f"/v1/moves/{move_id}")
        check(isinstance(mv, dict) and mv.get("state") == "failed",
              f"nobody answers: move state {mv.get('state') if isinstance(mv, dict) else mv}")
        check(one_call(args, token) == [call_id], "nobody answers: the call is gone")
        c_off = log_size(args.c_log)
        pump(allc, 1.5)
        src, from_a3 = c_rtp_from(c_off, args.a3_rtp)
        check(from_a3 or not src, f"after the failed push C's RTP comes from {src[-1:]}")

        since = {x: len(x.events) for x in allc}
        a3.command("hangup")
        check(wait_events(allc, [(c, "CALL_CLOSED")], since, args.timeout),
              "A3 hung up: C's call not closed")

        # 7. A asks by MESSAGE "mine", REFER to sip:mine@ and DTMF *81 (INFO): a raw phone of
        # alice calls C each time; A3 (the hint of step 5 still holds; now auto) takes it.
        a3.command("answermode", "auto")
        p = RawPhone(args.qport)
        raws.append(p)
        st = p.request("REGISTER", "sip:qrxfer.test", "alice", "Expires: 60\n")
        check(st == 200, f"the raw phone's REGISTER: {st}")
        for how in ("MESSAGE mine", "REFER sip:mine@", "INFO *81"):
            since = {x: len(x.events) for x in allc}
            if not p.call("sip:carol@qrxfer.test"):
                raise Fail(f"{how}: the raw phone's call to C was not answered")
            wait_events(allc, [(c, "CALL_ESTABLISHED")], since, args.timeout)
            if how.startswith("MESSAGE"):
                st = p.ask("MESSAGE", body="mine", ctype="text/plain")
                ok_st = st == 200
            elif how.startswith("REFER"):
                st = p.ask("REFER", headers="Refer-To: <sip:mine@qrxfer.test>\n")
                ok_st = st == 202
            else:
                for d in "*81":
                    p.dialog_send("INFO", body=f"Signal={d}\r\nDuration=160\r\n",
                                  ctype="application/dtmf-relay")
                    p.pump(0.2)
                st, ok_st = "sent", True
            ok = wait_events(allc, [(a3, "CALL_ESTABLISHED"), (a3, "CALL_RTPESTAB")], since,
                             args.timeout)
            p.pump(1.0)
            bye = p.bye_seen()
            print(f"7. push by {how}: answered {st}, A3 took the call: {ok}, the phone got "
                  f"BYE: {bool(bye)}", flush=True)
            check(ok_st, f"push by {how}: answered {st}")
            check(ok, f"push by {how}: A3 did not take the call with RTP")
            check(bye and 'text="Call moved"' in bye[-1], f"push by {how}: no BYE 'Call moved'")
            if how.startswith("REFER"):
                frags = [d for m, d in p.got if m == "NOTIFY" and p.cid in d]
                check(any("SIP/2.0 200" in d for d in frags),
                      f"push by REFER: no NOTIFY with a 200 sipfrag ({len(frags)} NOTIFYs)")
            check(not c.seen("CALL_CLOSED", since[c]), f"push by {how}: C's call closed")
            since = {x: len(x.events) for x in allc}
            a3.command("hangup")
            wait_events(allc, [(c, "CALL_CLOSED")], since, args.timeout)

        # 8. The nearest does not answer: after [own] near_ring the others ring too, and one of
        # them takes the call. A1 (manual) is the newest hint; A2 (auto) and A3 (manual) wait.
        a3.command("answermode", "manual")
        a2.command("answermode", "auto")
        since = {x: len(x.events) for x in allc}
        if not p.call("sip:carol@qrxfer.test"):
            raise Fail("the raw phone's last call to C was not answered")
        st, body = api(args.http, token, "POST", "/v1/devices/near",
                       json.dumps({"aor": "alice@qrxfer.test",
                                   "device": f"udp:127.0.0.1:{args.a1_port}"}).encode())
        check(st == 200, f"POST /v1/devices/near for A1: {st} {body}")
        st = p.ask("MESSAGE", body="mine", ctype="text/plain")
        check(st == 200, f"push to the nearest that does not answer: MESSAGE mine {st}")
        wait_events(allc, [(a1, "CALL_INCOMING")], since, args.timeout)
        first_alone = a1.seen("CALL_INCOMING", since[a1]) and not a2.seen("CALL_INCOMING",
                                                                          since[a2])
        ok = wait_events(allc, [(a2, "CALL_ESTABLISHED"), (a1, "CALL_CLOSED"),
                                (a3, "CALL_CLOSED")], since, args.ring_timeout + args.timeout)
        p.pump(1.0)
        print(f"8. the nearest (A1) rang alone first: {bool(first_alone)}; then A2 took the "
              f"call and A1, A3 were cancelled: {ok}", flush=True)
        check(first_alone, "near_ring: A1 did not ring alone first")
        check(ok, "near_ring: A2 did not take the call after the nearest, or A1/A3 not cancelled")
        check(p.bye_seen(), "near_ring: the raw phone got no BYE")
        since = {x: len(x.events) for x in allc}
        a2.command("hangup")
        check(wait_events(allc, [(c, "CALL_CLOSED")], since, args.timeout),
              "A2 hung up: C's call not closed")
    except Fail as e:
        failures.append(str(e))
    except (CtrlError, OSError) as e:
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        for x in ctl.values():
            x.close()
        for r in raws:
            r.close()
    for f in failures:
        print(f"FAIL: {f}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
