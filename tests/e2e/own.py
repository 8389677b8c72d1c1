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
import signal
import sqlite3
import sys
import threading
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

    def request(self, method, ruri, from_user, headers="", body="", contact=None, final=True):
        self.n += 1
        branch = f"z9hG4bK-{self.port}-{self.n}-{random.randrange(1 << 30)}"
        to = ruri if method != "REGISTER" else f"sip:{self.user}@qrxfer.test"
        if contact is None:
            contact = f"<sip:{self.user}@127.0.0.1:{self.port}>"
        self.send(
            f"{method} {ruri} SIP/2.0\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\n"
            f"Max-Forwards: 70\n"
            f"From: <sip:{from_user}@qrxfer.test>;tag=t{self.port}{self.n}\n"
            f"To: <{to}>\n"
            f"Call-ID: own-{self.port}-{self.n}@127.0.0.1\n"
            f"CSeq: {self.n} {method}\n"
            + (f"Contact: {contact}\n" if contact else "") +
            f"{headers}"
            f"Content-Length: {len(body)}\n\n{body}")
        return self.final(5.0) if final else None

    def final(self, timeout, text=False):
        """The status of the next final response (ACKing a non-2xx INVITE answer), or None;
        (status, message) with text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.s.recv(65535).decode("utf-8", "replace")
            except socket.timeout:
                return (None, "") if text else None
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
            return (st, data) if text else st
        return (None, "") if text else None

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


class Listener:
    """A raw UDP socket on a thread that keeps every message it gets; INVITEs are answered
    answer (486 by default, with a To tag), other requests 200."""

    def __init__(self, answer=486, sdp=False):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]
        self.got = []
        self.answer = answer
        self.sdp = sdp
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.s.settimeout(0.1)
        while not self.stop:
            try:
                data, addr = self.s.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            data = data.decode("utf-8", "replace")
            self.got.append(data)
            if data.startswith("SIP/2.0") or data.startswith("ACK "):
                continue
            meth = data.split(" ", 1)[0]
            vias = re.findall(r"^Via:\s*(.*?)\r?$", data, re.M | re.I)
            f = {k.lower(): v for k, v in re.findall(
                r"^(From|To|Call-ID|CSeq):\s*(.*?)\r?$", data, re.M | re.I)}
            if not vias or len(f) < 4:
                continue
            st = self.answer if meth == "INVITE" else 200
            to = f["to"] if ";tag=" in f["to"] else f["to"] + f";tag=l{self.port}"
            body = ""
            extra = ""
            if meth == "INVITE" and st == 200 and self.sdp:
                body = SDP.format(port=self.port + 2)
                extra = (f"Contact: <sip:eve@127.0.0.1:{self.port}>\n"
                         "Content-Type: application/sdp\n")
            msg = (f"SIP/2.0 {st} {'OK' if st == 200 else 'Busy Here'}\n" +
                   "".join(f"Via: {v}\n" for v in vias) +
                   f"From: {f['from']}\nTo: {to}\nCall-ID: {f['call-id']}\nCSeq: {f['cseq']}\n"
                   f"{extra}Content-Length: {len(body)}\n\n" + body.replace("\r\n", "\n"))
            self.s.sendto(msg.replace("\n", "\r\n").encode(), addr)

    def requests(self, method):
        return [d for d in self.got if d.startswith(method + " ")]

    def close(self):
        self.stop = True
        self.t.join(1.0)
        self.s.close()


def bindings(db, aor):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            rows = con.execute("SELECT contact, flow FROM bindings WHERE aor = ? AND "
                               "expires_at > ? ORDER BY contact",
                               (aor, int(time.time() * 1000))).fetchall()
        finally:
            con.close()
        return rows
    except sqlite3.Error:
        return []


def flood_one(raw):
    raw.n += 1
    raw.send(f"INVITE sip:*11@qrxfer.test SIP/2.0\n"
             f"Via: SIP/2.0/UDP 127.0.0.1:{raw.port};branch=z9hG4bK-f{raw.port}-{raw.n};rport\n"
             f"Max-Forwards: 70\nFrom: <sip:alice@qrxfer.test>;tag=f{raw.n}\n"
             f"To: <sip:*11@qrxfer.test>\nCall-ID: flood-{raw.port}-{raw.n}@127.0.0.1\n"
             f"CSeq: {raw.n} INVITE\nContact: <sip:alice@127.0.0.1:{raw.port}>\n"
             f"Content-Length: 0\n\n")
    return raw.final(5.0, text=True)


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
    ap.add_argument("--kport", type=int, required=True)
    ap.add_argument("--conf", required=True)
    ap.add_argument("--qrxferd-pid", type=int, required=True)
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
        # A forged 200 to a REGISTER: Kamailio hands the REGISTER to a raw socket (an
        # attacker who sees it on the wire), which answers qrxferd itself, not the registrar.
        forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        forger.bind(("127.0.0.1", 0))
        forger.settimeout(5.0)
        raws.append(forger)
        stranger.request("REGISTER", "sip:qrxfer.test", "alice",
                         f"Expires: 3600\nX-Test-Forger: {forger.getsockname()[1]}\n",
                         final=False)
        try:
            reg = forger.recv(65535).decode("utf-8", "replace")
        except socket.timeout:
            raise Fail("the REGISTER with X-Test-Forger did not reach the forger")
        vias = re.findall(r"^Via:\s*(.*?)\r?$", reg, re.M | re.I)[1:]  # Kamailio's off
        hdr = {k.lower(): v for k, v in re.findall(r"^(From|To|Call-ID|CSeq):\s*(.*?)\r?$",
                                                  reg, re.M | re.I)}
        forger.sendto((f"SIP/2.0 200 OK\n" + "".join(f"Via: {v}\n" for v in vias) +
                       f"From: {hdr['from']}\nTo: {hdr['to']};tag=forged\n"
                       f"Call-ID: {hdr['call-id']}\nCSeq: {hdr['cseq']}\n"
                       f"Contact: <sip:alice@127.0.0.1:{stranger.port}>;expires=3600\n"
                       f"Content-Length: 0\n\n").replace("\n", "\r\n").encode(),
                      ("127.0.0.1", args.qport))
        st = stranger.final(5.0)
        print(f"2c. a forged 200 to a REGISTER reached the device through qrxferd: {st}",
              flush=True)
        check(st == 200, f"the forged 200 did not match qrxferd's REGISTER ({st}): the "
                         "check below would prove nothing")
        st = stranger.request("INVITE", "sip:*11@qrxfer.test", "alice")
        print(f"2c. *11 after a forged REGISTER 200 to qrxferd: {st}", flush=True)
        check(st == 403, f"*11 after a forged REGISTER 200: {st}, expected 403")
        # 2d'. Through a proxy (two Vias): the source is the proxy's, which every device behind
        # it shares, so it is no device's flow: the REGISTER is relayed but makes no binding,
        # and a *11 from there is refused even with the From of a registered AOR.
        prox = Raw(args.qport, "alice")
        raws.append(prox)
        lower = (f"Via: SIP/2.0/UDP 192.0.2.44:5060;branch=z9hG4bK-phone-{prox.port};"
                 f"received=192.0.2.44;rport=5060\n")
        st = prox.request("REGISTER", "sip:qrxfer.test", "alice", "Expires: 60\n" + lower)
        check(st == 200, f"a REGISTER through a proxy: {st}, expected 200 (relayed)")
        time.sleep(0.3)
        via_proxy = [r for r in bindings(args.db, "alice@qrxfer.test")
                     if r[1].endswith(f":{prox.port}")]
        print(f"2d'. bindings kept for a REGISTER through a proxy: {via_proxy}", flush=True)
        check(not via_proxy, f"a REGISTER through a proxy made a binding: {via_proxy}")
        st = prox.request("INVITE", "sip:*11@qrxfer.test", "alice", lower)
        print(f"2d'. *11 through a proxy with From alice: {st}", flush=True)
        check(st == 403, f"*11 through a proxy: {st}, expected 403")
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

        # 2e. Removals: frank registers two contacts on one flow and one on another; c1 with
        # expires=0 goes, then "Contact: *" with Expires: 0 removes the rest (RFC 3261 10.2.2).
        f1, f2 = Raw(args.qport, "frank"), Raw(args.qport, "frank")
        raws += [f1, f2]
        c1 = f"<sip:frank@127.0.0.1:{f1.port};line=1>"
        c2 = f"<sip:frank@127.0.0.1:{f1.port};line=2>"
        st1 = f1.request("REGISTER", "sip:qrxfer.test", "frank", "Expires: 60\n",
                         contact=f"{c1}, {c2}")
        st2 = f2.request("REGISTER", "sip:qrxfer.test", "frank", "Expires: 60\n")
        pump(allc, 0.3)
        n0 = len(bindings(args.db, "frank@qrxfer.test"))
        f1.request("REGISTER", "sip:qrxfer.test", "frank", "", contact=f"{c1};expires=0")
        pump(allc, 0.3)
        left = bindings(args.db, "frank@qrxfer.test")
        st = f1.request("REGISTER", "sip:qrxfer.test", "frank", "Expires: 0\n", contact="*")
        pump(allc, 0.3)
        gone = bindings(args.db, "frank@qrxfer.test")
        print(f"2e. frank: {n0} bindings, after c1;expires=0 {len(left)}, after Contact: * "
              f"({st}) {len(gone)}", flush=True)
        check(st1 == 200 and st2 == 200 and n0 == 3, f"frank's REGISTERs: {st1} {st2}, {n0} "
                                                     "bindings, expected 3")
        check(len(left) == 2 and not any("line=1" in c for c, _ in left),
              f"expires=0 did not remove c1: {left}")
        check(st == 200 and not gone, f"Contact: * with Expires: 0 ({st}) left {gone}")

        # 2f. A stranger (no binding) whose From says alice calls eve (registered at the PBX)
        # after A1 did: his call is newer, but not alice's.
        eve = Listener(answer=200, sdp=True)
        raws.append(eve)
        eve_reg = Raw(args.kport, "eve")
        raws.append(eve_reg)
        eve_reg.q = ("127.0.0.1", args.kport)
        st = eve_reg.request("REGISTER", "sip:qrxfer.test", "eve", "Expires: 120\n",
                             contact=f"<sip:eve@127.0.0.1:{eve.port}>")
        check(st == 200, f"eve's REGISTER at Kamailio: {st}")
        mallory = RawPhone(args.qport)
        raws.append(mallory)
        if not mallory.call("sip:eve@qrxfer.test"):
            raise Fail("the stranger's call to eve was not answered")
        print("2f. a stranger with From alice is in a call with eve", flush=True)

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
        mallory.pump(0.5)  # what reached his socket meanwhile (a BYE if his call was taken)
        check(not mallory.bye_seen(), "pull: the stranger's call (From alice) was taken")
        st = mallory.ask("MESSAGE", body="mine", ctype="text/plain")
        pump(allc, 1.0)
        print(f"3. the stranger's MESSAGE mine: {st}", flush=True)
        check(st == 403, f"a stranger's MESSAGE mine: {st}, expected 403")
        check(not any(x.seen("CALL_INCOMING", since[x]) for x in (a1, a3)),
              "a stranger's mine rang alice's devices")
        mallory.ask("BYE")
        calls = one_call(args, token)
        check(calls == [call_id], f"pull: not the same call ({calls})")

        # A device of alice whose REGISTER names a Contact elsewhere (a planted victim
        # address): a push must reach it through its flow, never the contact's address.
        victim = Listener()
        planter = Listener(answer=486)
        raws += [victim, planter]
        pl_reg = Raw(args.qport, "alice")
        raws.append(pl_reg)
        pl_reg.s.close()
        pl_reg.s = planter.s  # its REGISTER goes out from the socket that gets the INVITE
        planter.got.clear()
        pl_reg.port = planter.port
        pl_reg.request("REGISTER", "sip:qrxfer.test", "alice", "Expires: 60\n",
                       contact=f"<sip:alice@127.0.0.1:{victim.port}>", final=False)
        pump(allc, 0.5)
        check(any(f == f"udp:127.0.0.1:{planter.port}"
                  for _, f in bindings(args.db, "alice@qrxfer.test")),
              "the planted contact's REGISTER made no binding")

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
        inv = planter.requests("INVITE")
        print(f"   the planted device: {len(inv)} INVITE(s) on its flow "
              f"({inv[0].splitlines()[0] if inv else '-'}), {len(victim.got)} message(s) at "
              "the contact's address", flush=True)
        check(inv and inv[0].startswith(f"INVITE sip:alice@127.0.0.1:{victim.port}"),
              "push: the planted device's flow got no INVITE with its contact as Request-URI")
        check(not victim.got, "push: an INVITE went to a REGISTER's Contact address, not its flow")
        planter.stop = True
        planter.t.join(1.0)
        pl_reg.request("REGISTER", "sip:qrxfer.test", "alice", "",
                       contact=f"<sip:alice@127.0.0.1:{victim.port}>;expires=0")
        pump(allc, 0.3)
        check(not any(f == f"udp:127.0.0.1:{planter.port}"
                      for _, f in bindings(args.db, "alice@qrxfer.test")),
              "expires=0 did not remove the planted binding")

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
        pump(allc, 1.5)
        # C's whole call so far: its last RTP source must still be A3 (the failed push changed
        # nothing), and its summary at the hang-up must show RTP received the whole time.
        src, from_a3 = c_rtp_from(0, args.a3_rtp)
        check(from_a3, f"after the failed push C's RTP comes from {src[-1:]}, not A3's "
                       f"{args.a3_rtp}")
        c_off = log_size(args.c_log)
        since = {x: len(x.events) for x in allc}
        a3.command("hangup")
        check(wait_events(allc, [(c, "CALL_CLOSED")], since, args.timeout),
              "A3 hung up: C's call not closed")
        pump(allc, 0.5)
        with open(args.c_log, "rb") as f:
            f.seek(c_off)
            m = re.search(r"packets:\s+(\d+)\s+(\d+)", f.read().decode("utf-8", "replace"))
        tx, rx = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        print(f"6. C's call summary: {tx} RTP packets sent, {rx} received", flush=True)
        check(tx > 0 and rx >= 0.8 * tx, f"C received {rx} RTP packets of {tx} sent: the "
                                         "media did not stay up through the failed push")

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
                st = [p.ask("INFO", body=f"Signal={d}\r\nDuration=160\r\n",
                            ctype="application/dtmf-relay") for d in "*81"]
                ok_st = st == [200, 200, 200]
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

        # 9. REFER to sip:mine@ and BYE at once: the REFER's leg is gone when the store
        # answers; nothing rings, nothing crashes (the sanitizer build's log is checked).
        a1.command("answermode", "manual")
        st = p.request("REGISTER", "sip:qrxfer.test", "alice", "Expires: 300\n")
        since = {x: len(x.events) for x in allc}
        if not p.call("sip:carol@qrxfer.test"):
            raise Fail("the raw phone's call to C (REFER then BYE) was not answered")
        wait_events(allc, [(c, "CALL_ESTABLISHED")], since, args.timeout)
        since = {x: len(x.events) for x in allc}
        p.dialog_send("REFER", headers="Refer-To: <sip:mine@qrxfer.test>\n")
        p.dialog_send("BYE")
        r_bye = p.pump(5.0, "BYE")
        pump(allc, 2.0)
        # The store may answer before the BYE is read (then the nearest rings and is
        # cancelled with the call) or after (nothing rings): either way no device is left
        # ringing or takes a call that is gone.
        rung = [x for x in (a1, a2, a3) if x.seen("CALL_INCOMING", since[x])]
        left = [x.name for x in rung if not x.seen("CALL_CLOSED", since[x])]
        print(f"9. REFER then BYE at once: BYE answered {r_bye[0] if r_bye else None}, "
              f"devices rung {[x.name for x in rung]}, still ringing {left}", flush=True)
        check(r_bye and r_bye[0] == 200, f"REFER then BYE: the BYE got {r_bye}")
        check(not left, f"REFER then BYE: {left} still ring for a call that is gone")
        check(not any(x.seen("CALL_ESTABLISHED", since[x]) for x in (a1, a2, a3)),
              "REFER then BYE: a device took a call that is gone")
        check(wait_events(allc, [(c, "CALL_CLOSED")], since, args.timeout),
              "REFER then BYE: C's call not closed")
        check(os.path.exists(f"/proc/{args.qrxferd_pid}"), "qrxferd died")

        # 10. C hangs up while a push rings: the devices rung are cancelled.
        a2.command("answermode", "manual")
        a3.command("answermode", "manual")
        since = {x: len(x.events) for x in allc}
        if not p.call("sip:carol@qrxfer.test"):
            raise Fail("the raw phone's call to C (push then C hangs up) was not answered")
        wait_events(allc, [(c, "CALL_ESTABLISHED")], since, args.timeout)
        st = p.ask("MESSAGE", body="mine", ctype="text/plain")
        check(st == 200, f"push then C hangs up: MESSAGE mine {st}")
        wait_events(allc, [(a1, "CALL_INCOMING")], since, args.timeout)
        rung = [x for x in (a1, a2, a3) if x.seen("CALL_INCOMING", since[x])]
        c.command("hangup")
        ok = wait_events(allc, [(x, "CALL_CLOSED") for x in rung], since, args.timeout)
        p.pump(1.0)
        pump(allc, 1.0)
        print(f"10. C hung up while {[x.name for x in rung]} rang: all cancelled: {ok}",
              flush=True)
        check(rung, "push then C hangs up: no device rang")
        check(ok, "C hung up during a push: a rung device was not cancelled")
        check(not any(x.seen("CALL_ESTABLISHED", since[x]) for x in (a1, a2, a3)),
              "C hung up during a push: a device took a call that was gone")
        check(p.bye_seen(), "C hung up during a push: the phone got no BYE")

        # 11. [own] confirm = yes with [confirm] policy = near (SIGHUP): the owner's phone is
        # asked; "no" leaves the call with it, "yes" lets A2 pull it.
        with open(args.conf) as f:
            conf = f.read()
        with open(args.conf, "w") as f:
            f.write(conf.replace("policy = none", "policy = near"))
        log_off = log_size(args.qrxferd_log)
        os.kill(args.qrxferd_pid, signal.SIGHUP)
        pump(allc, 1.0)
        with open(args.qrxferd_log, "rb") as f:
            f.seek(log_off)
            reload_log = f.read().decode("utf-8", "replace")
        check("reloaded" in reload_log and "refused" not in reload_log,
              "SIGHUP: qrxferd logged no reload")
        a2.command("answermode", "auto")
        since = {x: len(x.events) for x in allc}
        if not p.call("sip:carol@qrxfer.test"):
            raise Fail("the raw phone's call to C (confirm) was not answered")
        wait_events(allc, [(c, "CALL_ESTABLISHED")], since, args.timeout)
        for answer in ("no", "yes"):
            since = {x: len(x.events) for x in allc}
            asked = len(p.got)
            a2.command("dial", "sip:*11@qrxfer.test")
            question = None
            deadline = time.monotonic() + args.timeout
            while not question and time.monotonic() < deadline:
                p.pump(0.2)
                pump(allc, 0.05)
                question = [d for m, d in p.got[asked:] if m == "MESSAGE" and
                            "Reply yes or no" in d]
            check(question, f"confirm ({answer}): the owner's phone was not asked")
            st = p.ask("MESSAGE", body=answer, ctype="text/plain")
            if answer == "no":
                ok = wait_events(allc, [(a2, "CALL_CLOSED")], since, args.timeout)
                p.pump(1.0)
                print(f"11. pull refused by the owner: A2 closed {ok}, the phone kept the "
                      f"call {not p.bye_seen()}", flush=True)
                check(st == 200, f"confirm: the owner's 'no' answered {st}")
                check(ok and not a2.seen("CALL_ESTABLISHED", since[a2]),
                      "confirm no: A2 was not refused")
                check(not p.bye_seen() and not c.seen("CALL_CLOSED", since[c]),
                      "confirm no: the owner lost the call")
            else:
                ok = wait_events(allc, [(a2, "CALL_ESTABLISHED"), (a2, "CALL_RTPESTAB")],
                                 since, args.timeout)
                p.pump(1.0)
                print(f"11. pull confirmed by the owner: A2 took the call {ok}, the phone got "
                      f"BYE {bool(p.bye_seen())}", flush=True)
                check(st == 200, f"confirm: the owner's 'yes' answered {st}")
                check(ok, "confirm yes: A2 did not take the call with RTP")
                check(p.bye_seen(), "confirm yes: the owner's phone got no BYE")
        since = {x: len(x.events) for x in allc}
        a2.command("hangup")
        wait_events(allc, [(c, "CALL_CLOSED")], since, args.timeout)

        # 12. A flood of *11 from one address: past the budget, 503 with Retry-After and no
        # store lookup (counted in the log line), where each before cost one.
        flood = Raw(args.qport, "alice")
        raws.append(flood)
        answers = []
        t0 = time.monotonic()
        for _ in range(16):
            st, msg = flood_one(flood)
            answers.append((st, bool(re.search(r"^Retry-After:\s*\d+", msg, re.M | re.I))))
        spent = time.monotonic() - t0
        n403 = sum(1 for st, _ in answers if st == 403)
        n503 = [ra for st, ra in answers if st == 503]
        print(f"12. 16 *11 at once from one address: {n403} x 403, {len(n503)} x 503 "
              f"({sum(n503)} with Retry-After)", flush=True)
        check(n503 and all(n503), "a *11 flood got no 503 with Retry-After")
        # the burst (10), and 1 a second refilled while the flood went on
        check(n403 <= 10 + int(spent) + 1, f"a *11 flood cost {n403} store lookups in "
                                           f"{spent:.1f} s, more than the budget")
        check(n403 + len(n503) == 16, f"a *11 flood: other answers {answers}")
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
