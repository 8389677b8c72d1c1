#!/usr/bin/env python3
"""tests/move/react.py: reactions and watch-together (issue 14) against a running qrxferd.

  react.py SIPPORT HTTPPORT TOKENFILE UPPORT APORT BPORT CASE [DIR]

Phones A (near), B (a new device) and C (the far party, on qrxferd's upstream port UPPORT) are
plain UDP SIP user agents in this process: they answer every request (200; an INVITE with an
SDP answer) and keep what they got. C's answers carry Accept: REACT_CTYPE (an app); A and B
do not say so (desk phones) until they send a reaction themselves. Cases:

  reactions  JSON and DTMF reactions reach the other party, as JSON to an app and as text to
             a desk phone; bad JSON is answered 400 naming what was wrong; a flood is held to
             [react] rate and burst (503), and only what was taken reaches C
  moved      after a move to B, C's reactions reach B (the current near device), B's reach C
  anchored   moved, with the media anchor (react.test starts rtpengine): the phones send RTP
             to the SDP they were given, the move is verified by B's media, C gets no
             re-INVITE, and the reactions go as in moved
  leftup     a call with a reaction in flight and a watch page is left up for the stop
  share      "share <https URL>" gives both parties the /w/{secret} link; the page and its
             news are served; bad URLs get 400; a wrong secret and, once the call is over,
             the right one get 404
  watch      for tests/chromium/watch.test: a call, "share URL" (URL in DIR/url) from A, the
             link into DIR/link; then on DIR/react a reaction from C at (0.25, 0.75); on
             DIR/hangup, BYE; after it the page must be 404. Exit 0 when all held.

Prints "PASS case" or "FAIL case: why" and exits non-zero on failure. Only 127.0.0.1 is used;
every wait has a deadline.
"""
import json
import os
import random
import select
import socket
import sys
import time
import urllib.error
import urllib.request

CT = "application/vnd.qrxfer.reaction+json"
SDP = ("v=0\r\no=%s 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
PHONES = []


class Fail(Exception):
    pass


def split_sip(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        k = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
             "c": "content-type", "l": "content-length"}.get(k, k)
        if k == "via" and k in hdrs:
            hdrs[k] += "\r\nVia: " + v.strip()
        else:
            hdrs.setdefault(k, v.strip())
    n = int(hdrs.get("content-length", len(body)))
    return lines[0], hdrs, body[:n]


def tag_of(v):
    for p in v.split(";")[1:]:
        k, _, val = p.strip().partition("=")
        if k.lower() == "tag":
            return val
    return None


def uri_of(v):
    return v.split("<", 1)[1].split(">", 1)[0] if "<" in v else v.split(";")[0].strip()


class Phone:
    def __init__(self, name, port, qport, accept_json=False):
        self.name, self.port, self.qport = name, port, qport
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", port))
        self.accept_json = accept_json
        self.got = []        # (method, hdrs, body) of requests received
        self.pending = {}    # branch -> [msg, final response or None, last send]
        self.dlg = None      # dict: call_id, ltag, rtag, target, cseq, from_, to
        self.hold_json = 0   # > 0: hold JSON reactions unanswered until this many, then 415 all
        self.held = {}       # branch -> headers of a held JSON reaction
        self.rtp = None      # media_on(): a socket sending RTP to the SDP it was given
        self.remote = None   # (address, port) of that SDP; None: no media (or inactive)
        self.rtp_seq, self.rtp_last = 0, 0.0
        PHONES.append(self)

    def media_on(self):
        """Send 20 ms RTP packets (PCMU silence) to the peer's SDP, from a port of our own."""
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))

    def sdp(self):
        port = self.rtp.getsockname()[1] if self.rtp else 30000 + self.port % 1000
        return SDP % (self.name.lower(), port)

    def learn_sdp(self, body):
        if not self.rtp or not body:
            return
        text = body.decode("utf-8", "replace")
        addr = port = None
        for line in text.split("\r\n"):
            if line.startswith("c=IN IP4 "):
                addr = line[9:].strip()
            elif line.startswith("m=audio "):
                port = int(line.split()[1])
        self.remote = (addr, port) if addr and port and "a=inactive" not in text else None

    def rtp_tick(self, now):
        if self.rtp and self.remote and now - self.rtp_last >= 0.02:
            self.rtp_last = now
            self.rtp_seq += 1
            head = bytes([0x80, 0]) + (self.rtp_seq & 0xFFFF).to_bytes(2, "big") + \
                (self.rtp_seq * 160 & 0xFFFFFFFF).to_bytes(4, "big") + \
                (0x51000000 + self.port).to_bytes(4, "big")
            self.rtp.sendto(head + b"\xff" * 160, self.remote)

    def me(self):
        return "127.0.0.1:%d" % self.port

    def send(self, data):
        self.s.sendto(data if isinstance(data, bytes) else data.encode(), ("127.0.0.1", self.qport))

    def request(self, method, ruri, from_, to, call_id, cseq, body=b"", ctype=None, extra=""):
        branch = "z9hG4bK-%s-%d" % (self.name, random.getrandbits(48))
        if isinstance(body, str):
            body = body.encode()
        head = ("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s\r\nFrom: %s\r\nTo: %s\r\n"
                "Call-ID: %s\r\nCSeq: %d %s\r\nContact: <sip:%s@%s>\r\nMax-Forwards: 70\r\n%s%s"
                "Content-Length: %d\r\n\r\n") % (
                    method, ruri, self.me(), branch, from_, to, call_id, cseq, method,
                    self.name.lower(), self.me(), extra,
                    "Content-Type: %s\r\n" % ctype if ctype else "", len(body))
        msg = head.encode() + body
        self.pending[branch] = [msg, None, time.monotonic(), method]
        self.send(msg)
        return branch

    def in_dialog(self, method, body=b"", ctype=None, extra=""):
        d = self.dlg
        d["cseq"] += 1
        return self.request(method, d["target"], d["from_"], d["to"], d["call_id"], d["cseq"],
                            body, ctype, extra)

    def wait_final(self, branch, secs=8):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            p = self.pending[branch]
            if p[1] is not None:
                return p[1]
            pump(0.05)
        raise Fail("%s: no final answer to %s" % (self.name, self.pending[branch][3]))

    def answer(self, hdrs, status, phrase, body=b"", ctype=None, totag=None):
        to = hdrs.get("to", "")
        if totag and not tag_of(to):
            to += ";tag=" + totag
        r = "SIP/2.0 %d %s\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n" % (
            status, phrase, hdrs.get("via", ""), hdrs.get("from", ""), to,
            hdrs.get("call-id", ""), hdrs.get("cseq", ""))
        r += "Contact: <sip:%s@%s>\r\n" % (self.name.lower(), self.me())
        if self.accept_json:
            r += "Accept: %s, text/plain\r\n" % CT
        if ctype:
            r += "Content-Type: %s\r\n" % ctype
        self.send(r.encode() + ("Content-Length: %d\r\n\r\n" % len(body)).encode() + body)

    def on_data(self, data):
        start, h, body = split_sip(data)
        if start.startswith("SIP/2.0 "):
            st = int(start.split()[1])
            h["_phrase"] = start.split(" ", 2)[2] if start.count(" ") >= 2 else ""
            branch = h.get("via", "").split("branch=")[-1].split(";")[0].split("\r")[0].strip()
            p = self.pending.get(branch)
            if p is None or st < 200:
                return
            if p[3] == "INVITE" and st == 200:
                d = self.dlg
                if d is not None and d["call_id"] == h.get("call-id"):
                    self.learn_sdp(body)
                    d["rtag"] = tag_of(h["to"])
                    d["to"] = h["to"]
                    d["target"] = uri_of(h.get("contact", d["target"]))
                    ack = ("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s-ack\r\nFrom: %s\r\n"
                           "To: %s\r\nCall-ID: %s\r\nCSeq: %s ACK\r\nMax-Forwards: 70\r\n"
                           "Content-Length: 0\r\n\r\n") % (
                               d["target"], self.me(), branch, d["from_"], d["to"], d["call_id"],
                               h["cseq"].split()[0])
                    self.send(ack)
            p[1] = (st, h, body)
            return
        method = start.split()[0]
        if method == "ACK":
            return
        if self.hold_json and method == "MESSAGE" and \
                h.get("content-type", "").split(";")[0].strip().lower() == CT:
            branch = h.get("via", "").split("branch=")[-1].split(";")[0].split("\r")[0].strip()
            if branch in self.held:
                return  # qrxfer's retransmission of one we hold
            self.held[branch] = h
            self.got.append((method, h, body))
            if len(self.held) == self.hold_json:  # all in: refuse them in the order they came
                for hh in self.held.values():
                    self.answer(hh, 415, "Unsupported Media Type", totag=self.dlg["ltag"])
            return
        self.got.append((method, h, body))
        if method == "INVITE":
            if self.dlg is None or self.dlg["call_id"] != h.get("call-id"):
                ltag = "%s-%d" % (self.name.lower(), random.getrandbits(32))
                self.dlg = {"call_id": h["call-id"], "ltag": ltag,
                            "rtag": tag_of(h["from"]), "target": uri_of(h.get("contact", "")),
                            "cseq": 100, "from_": h["to"] + ";tag=" + ltag, "to": h["from"]}
            self.learn_sdp(body)
            self.answer(h, 200, "OK", self.sdp().encode(), "application/sdp",
                        totag=self.dlg["ltag"])
        elif method == "MESSAGE" and getattr(self, "refuse_json", False) and \
                h.get("content-type", "").split(";")[0].strip().lower() == CT:
            self.answer(h, 415, "Unsupported Media Type", totag=self.dlg["ltag"] if self.dlg else None)
        else:
            self.answer(h, 200, "OK", totag=self.dlg["ltag"] if self.dlg else None)

    def call(self, ruri, secs=8):
        call_id = "%s-%d@react" % (self.name.lower(), random.getrandbits(40))
        ltag = "%s-%d" % (self.name.lower(), random.getrandbits(32))
        from_ = "<sip:%s@127.0.0.1>;tag=%s" % (self.name.lower(), ltag)
        self.dlg = {"call_id": call_id, "ltag": ltag, "rtag": None, "target": ruri,
                    "cseq": 1, "from_": from_, "to": "<%s>" % ruri}
        sdp = self.sdp()
        b = self.request("INVITE", ruri, from_, "<%s>" % ruri, call_id, 1, sdp, "application/sdp",
                         "Accept: application/sdp, %s\r\n" % CT if self.accept_json else "")
        st, h, _ = self.wait_final(b, secs)
        if st != 200:
            raise Fail("%s: INVITE to %s answered %d" % (self.name, ruri, st))

    def messages(self, since=0):
        return [(h, b) for (m, h, b) in self.got[since:] if m == "MESSAGE"]

    def wait_message(self, pred, secs=5, since=0, what="a MESSAGE"):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            for h, b in self.messages(since):
                if pred(h, b):
                    return h, b
            pump(0.05)
        raise Fail("%s got no %s (got: %s)" % (self.name, what, [
            (h.get("content-type"), b[:80]) for h, b in self.messages(since)]))


def pump(secs):
    socks = {p.s: p for p in PHONES}
    deadline = time.monotonic() + secs
    while True:
        left = deadline - time.monotonic()
        r, _, _ = select.select(list(socks), [], [], max(0, left))
        for s in r:
            socks[s].on_data(s.recv(65536))
        now = time.monotonic()
        for p in PHONES:
            p.rtp_tick(now)
        for p in PHONES:  # UDP: send again until answered
            for v in p.pending.values():
                if v[1] is None and now - v[2] > 0.5:
                    v[2] = now
                    p.send(v[0])
        if left <= 0:
            return


def http(port, method, path, token=None, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=body.encode() if body is not None else None,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def csp_of(port, path):
    """The Content-Security-Policy header of GET path (any status)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.headers.get("Content-Security-Policy")
    except urllib.error.HTTPError as x:
        return x.headers.get("Content-Security-Policy")


def dtmf(phone, code):
    for d in code:
        b = phone.in_dialog("INFO", "Signal=%s\r\nDuration=160\r\n" % d, "application/dtmf-relay")
        st = phone.wait_final(b)[0]
        if st != 200:
            raise Fail("%s: INFO %s answered %d" % (phone.name, d, st))


def react(phone, emoji, x, y):
    body = json.dumps({"emoji": emoji, "x": x, "y": y})
    return phone.wait_final(phone.in_dialog("MESSAGE", body, CT))


def is_json(emoji, x=None, y=None):
    def pred(h, b):
        if h.get("content-type", "").split(";")[0].strip().lower() != CT:
            return False
        try:
            o = json.loads(b)
        except ValueError:
            return False
        return o.get("emoji") == emoji and (x is None or abs(o["x"] - x) < 1e-3) and \
            (y is None or abs(o["y"] - y) < 1e-3)
    return pred


def is_text(emoji):
    def pred(h, b):
        return h.get("content-type", "").startswith("text/plain") and emoji in b.decode("utf-8")
    return pred


class Env:
    def __init__(self, a):
        self.sip, self.http = int(a[0]), int(a[1])
        self.token = open(a[2]).read().strip()
        self.upport, self.aport, self.bport = int(a[3]), int(a[4]), int(a[5])
        self.dir = a[7] if len(a) > 7 else "."
        self.A = Phone("A", self.aport, self.sip)
        self.C = Phone("C", self.upport, self.sip, accept_json=True)

    def call_id(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            st, body = http(self.http, "GET", "/v1/calls", self.token)
            calls = json.loads(body) if st == 200 else []
            calls = calls.get("calls", calls) if isinstance(calls, dict) else calls
            up = [c["id"] for c in calls if c.get("state") == "answered"]
            if up:
                return up[0]
            pump(0.1)
        raise Fail("no answered call in /v1/calls")

    def up(self):
        self.A.call("sip:far@127.0.0.1:%d" % self.upport)
        pump(0.2)
        return self.call_id()

    def hangup(self):
        st = self.A.wait_final(self.A.in_dialog("BYE"))[0]
        if st != 200:
            raise Fail("A's BYE answered %d" % st)


def bad_reactions(A, C):
    """Bad ones: 400 naming what was wrong, and nothing reaches C (each costs a token of the
    side's rate before it is parsed: the share case's rate and burst of 100 take them all)."""
    before = len(C.messages())
    bad = [("{", "not JSON"), ("[]", "not a JSON object"),
           ('{"emoji":"\U0001F44D","x":1.5,"y":0}', "x is not"),
           ('{"emoji":"\U0001F44D","x":0,"y":"0"}', "y is not"),
           ('{"emoji":"ab","x":0,"y":0}', "emoji"),
           ('{"emoji":"\U0001F44D\U0001F44D","x":0,"y":0}', "emoji"),
           ('{"emoji":"<script>","x":0,"y":0}', "emoji"),
           ('{"emoji":"\U0001F44D","x":0,"y":0,"z":1}', "unknown member"),
           ('{"emoji":"\U0001F44D","x":0,"y":0,"a\\r\\nX-Evil: 1":1}', "unknown member \"a??X-Evil"),
           ('{"emoji":"\u2066","x":0,"y":0}', "emoji"),
           ('{"emoji":"\U0001F44D","x":0,"y":0,"x":1}', "not JSON"),
           ('{"emoji":"\U0001F44D","x":0,"y":0}' + " " * 300, "over 256")]
    for body, want in bad:
        st, h, _ = A.wait_final(A.in_dialog("MESSAGE", body, CT))
        if st != 400 or want not in h["_phrase"]:
            raise Fail("bad reaction %r answered %d %r, not 400 naming %r" % (
                body[:40], st, h["_phrase"], want))
    pump(0.3)
    if len(C.messages()) != before:
        raise Fail("a bad reaction reached C")


def case_reactions(e):
    e.up()
    A, C = e.A, e.C
    # C (an app) sends DTMF *2: A, a desk phone so far, gets a short text.
    dtmf(C, "*2")
    A.wait_message(is_text("\U0001F44F"), what="text reaction for *2")
    # A sends JSON: C (its answer said Accept: REACT_CTYPE) gets the JSON as sent.
    st = react(A, "\U0001F44D", 0.25, 0.75)[0]
    if st != 200:
        raise Fail("A's reaction answered %d" % st)
    C.wait_message(is_json("\U0001F44D", 0.25, 0.75), what="JSON reaction from A")
    # A sent JSON itself: now it gets JSON too.
    n = len(A.got)
    st = react(C, "\U0001F62E", 0.5, 0.1)[0]
    A.wait_message(is_json("\U0001F62E", 0.5, 0.1), since=n, what="JSON reaction from C")
    # DTMF *1 from A: C gets the mapped emoji at the middle.
    dtmf(A, "*1")
    C.wait_message(is_json("\U0001F44D", 0.5, 0.5), since=1, what="JSON for A's *1")
    before = len(C.messages())
    # Out of any call: 404, never passed on to the PBX.
    b = A.request("MESSAGE", "sip:c@qrxfer.test", "<sip:x@127.0.0.1>;tag=x1", "<sip:c@qrxfer.test>",
                  "ood-%d@react" % random.getrandbits(32), 1,
                  json.dumps({"emoji": "\U0001F44D", "x": 0, "y": 0}), CT)
    st = A.wait_final(b)[0]
    if st != 404:
        raise Fail("a reaction out of any call answered %d, not 404" % st)
    pump(0.3)
    if len(C.messages()) != before:
        raise Fail("a reaction out of any call reached C")
    # A flood of bad ones is held to the rate before any is parsed: after the burst, 503.
    pump(3.0)  # the bucket refills (the second flood's upper bound holds without)
    for what, body, ctype, want in [
            ("reactions", '{"emoji":"ab","x":0,"y":0}', CT, "emoji"),
            ("shares", "share https://127.0.0.1/x", "text/plain", "loopback")]:
        branches = [A.in_dialog("MESSAGE", body, ctype) for _ in range(20)]
        t0 = time.monotonic()
        answers = [A.wait_final(b) for b in branches]
        took = time.monotonic() - t0
        sts = [a[0] for a in answers]
        bad, limited = sts.count(400), sts.count(503)
        if bad + limited != 20 or limited < 10 or bad > 5 + 2 * (took + 1) or \
                any(want not in a[1]["_phrase"] for a in answers if a[0] == 400):
            raise Fail("flood of 20 bad %s: %d answered 400, %d 503, others %s" % (
                what, bad, limited, [s for s in sts if s not in (400, 503)]))
    pump(0.3)
    if len(C.messages()) != before:
        raise Fail("a bad reaction or share reached C")
    # Flood: 20 back to back from A; [react] burst 5, rate 2/s.
    pump(3.0)  # the bucket refills
    before = len(C.messages())
    branches = [A.in_dialog("MESSAGE", json.dumps({"emoji": "\u2764\ufe0f", "x": 0, "y": 0}), CT)
                for _ in range(20)]
    t0 = time.monotonic()
    sts = [A.wait_final(b)[0] for b in branches]
    took = time.monotonic() - t0
    ok, limited = sts.count(200), sts.count(503)
    if ok + limited != 20 or limited < 10 or ok > 5 + 2 * (took + 1) or ok < 5:
        raise Fail("flood of 20: %d taken, %d refused 503, others %s" % (
            ok, limited, [s for s in sts if s not in (200, 503)]))
    pump(0.5)
    got = len(C.messages()) - before
    if got != ok:
        raise Fail("C got %d reactions of the flood, %d were taken" % (got, ok))
    e.hangup()


def case_moved(e, anchored=False):
    if anchored:
        e.A.media_on()
        e.C.media_on()
    cid = e.up()
    A, C = e.A, e.C
    B = Phone("B", e.bport, e.sip)
    if anchored:
        B.media_on()
    st, body = http(e.http, "POST", "/v1/calls/%s/moves" % cid, e.token, "{}")
    if st != 201:
        raise Fail("POST moves: %d %s" % (st, body))
    B.call(json.loads(body)["qr_uri"])
    # with the anchor: media verified from B (its RTP), A held, its BYE after [move] undo_secs
    deadline = time.monotonic() + (15 if anchored else 8)
    while not any(m == "BYE" for m, _, _ in A.got):
        if time.monotonic() > deadline:
            raise Fail("A got no BYE after the move")
        pump(0.05)
    # C reacts: B (the near device now, a desk phone so far) gets it as text.
    st = react(C, "\U0001F62E", 0.9, 0.9)[0]
    if st != 200:
        raise Fail("C's reaction after the move answered %d" % st)
    B.wait_message(is_text("\U0001F62E"), what="C's reaction after the move")
    if any(is_text("\U0001F62E")(h, b) or is_json("\U0001F62E")(h, b) for h, b in A.messages()):
        raise Fail("A (moved away) got C's reaction")
    # B reacts with JSON: C gets it; then C's DTMF reaches B as JSON.
    if react(B, "\U0001F44F", 0.1, 0.2)[0] != 200:
        raise Fail("B's reaction refused")
    C.wait_message(is_json("\U0001F44F", 0.1, 0.2), what="B's reaction")
    n = len(B.got)
    dtmf(C, "*4")
    B.wait_message(is_json("\u2764\ufe0f", 0.5, 0.5), since=n, what="C's *4 as JSON")
    if anchored and [m for m, _, _ in C.got].count("INVITE") != 1:
        raise Fail("C got a re-INVITE: the anchored move should re-point only the near side")
    st = B.wait_final(B.in_dialog("BYE"))[0]
    if st != 200:
        raise Fail("B's BYE answered %d" % st)


def case_anchored(e):
    """moved, with the media anchor: rtpengine relays the phones' RTP, the move is verified by
    B's media, and C (no re-INVITE) and B exchange reactions after it."""
    case_moved(e, anchored=True)


def case_accept(e):
    """A's INVITE lists REACT_CTYPE in Accept: C's DTMF reaction reaches A as JSON at once."""
    e.A.accept_json = True
    e.up()
    dtmf(e.C, "*3")
    e.A.wait_message(is_json("\U0001F602", 0.5, 0.5), what="JSON for C's *3")
    # The admin shares in a call without a page: 201 with the link both parties get.
    st, text = http(e.http, "POST", "/v1/calls/%s/share" % e.call_id(), e.token,
                    '{"url":"https://v.example/a.mp4"}')
    link = json.loads(text).get("link", "") if st == 201 else ""
    if "/w/" not in link or link_of(e.A) != link or link_of(e.C) != link:
        raise Fail("POST share: %d %s, or the parties got another link" % (st, text))
    e.hangup()


def case_refused(e):
    """C's answer said Accept: REACT_CTYPE but C answers a reaction's JSON 415, late: it holds
    its answers until nine JSON reactions are in (more than were ever kept in flight), then
    refuses each. C gets each reaction again as text, the one refused and no other, and the
    next one as text at once (one JSON try each)."""
    e.C.refuse_json = True
    emojis = ["\U0001F44D", "\U0001F44F", "\U0001F62E", "\U0001F602", "\u2764\ufe0f",
              "\U0001F389", "\U0001F525", "\U0001F622", "\U0001F64F"]
    e.C.hold_json = len(emojis)
    e.up()
    A, C = e.A, e.C
    for i, em in enumerate(emojis):
        if i == 5:
            pump(2.2)  # [react] burst 5, rate 2/s
        if react(A, em, 0.3, 0.3)[0] != 200:
            raise Fail("A's reaction %d refused" % i)
    for em in emojis:
        C.wait_message(is_text(em), what="%r again as text after its 415" % em)
    pump(0.5)
    texts = [b.decode("utf-8") for h, b in C.messages() if is_text("")(h, b)]
    want = sorted("%s (reaction)" % em for em in emojis)
    if sorted(texts) != want:
        raise Fail("C got the texts %r after the 415s, not one per refused reaction %r" % (
            texts, want))
    e.C.hold_json = 0
    pump(0.5)
    if react(A, "\U0001F44C", 0.3, 0.3)[0] != 200:
        raise Fail("A's next reaction refused")
    C.wait_message(is_text("\U0001F44C"), what="the next reaction as text")
    pump(0.3)
    tries = [b for m, h, b in C.got if m == "MESSAGE" and
             h.get("content-type", "").split(";")[0].strip().lower() == CT]
    if len(tries) != len(emojis):
        raise Fail("C was sent the JSON %d times, not once per reaction before the 415s" % len(
            tries))
    e.hangup()


def case_leftup(e):
    """A call with reactions, a JSON one unanswered and a watch page is still up when qrxferd
    stops ([sip] on_stop = keep): the stop lets go of all of it (the ASan build finds a leak
    otherwise, and react.test fails on it)."""
    e.C.hold_json = 99  # C never answers the JSON: it stays in flight
    e.up()
    A = e.A
    if react(A, "\U0001F44D", 0.5, 0.5)[0] != 200:
        raise Fail("A's reaction refused")
    e.C.wait_message(is_json("\U0001F44D"), what="A's reaction")
    st = A.wait_final(A.in_dialog("MESSAGE", "share https://v.example/a.mp4", "text/plain"))[0]
    if st != 200:
        raise Fail("share answered %d" % st)
    link_of(A)


def polls(http_port, secret, since, sources):
    """One long poll from each source address at once: [(status, body)] in order."""
    import http.client
    import threading
    out = [None] * len(sources)

    def one(i, src):
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=20,
                                       source_address=(src, 0))
        try:
            c.request("GET", "/w/%s/events?since=%d" % (secret, since))
            r = c.getresponse()
            out[i] = (r.status, r.read().decode())
        except OSError as x:
            out[i] = (0, str(x))
        finally:
            c.close()
    ts = [threading.Thread(target=one, args=(i, src)) for i, src in enumerate(sources)]
    for t in ts:
        t.start()
        time.sleep(0.05)
    return ts, out


def link_of(phone, since=0):
    h, b = phone.wait_message(lambda h, b: b"Watch together: " in b, since=since,
                              what="the watch link")
    return b.decode().split("Watch together: ", 1)[1].strip()


def case_share(e):
    cid = e.up()
    A, C = e.A, e.C
    bad_reactions(A, C)
    for path, body, want in [("/v1/calls/%s/share" % cid, '{"url":"http://v.example/a"}', 400),
                             ("/v1/calls/%s/share" % cid, '{"url":5}', 400),
                             ("/v1/calls/nope/share", '{"url":"https://v.example/a"}', 404)]:
        st, text = http(e.http, "POST", path, e.token, body)
        if st != want:
            raise Fail("POST %s %s: %d %s, not %d" % (path, body, st, text, want))
    for url, why in [("javascript:alert(1)", "https"), ("http://v.example/a.mp4", "https"),
                     ("https://user:pw@v.example/a.mp4", "credentials"),
                     ("https://v.example/" + "a" * 1100, "1024"),
                     ("https://v.example/a\".mp4", "character"),
                     ("https://", "host"), ("https:///x", "host"),
                     ("https://127.0.0.1/x.mp4", "loopback"), ("https://10.0.0.1/", "private"),
                     ("https://[::1]:8443/", "loopback"), ("https://localhost/", "local name"),
                     ("https://169.254.169.254/latest", "link-local"),
                     ("https://2130706433/", "loopback")]:
        st, h, _ = A.wait_final(A.in_dialog("MESSAGE", "share " + url, "text/plain"))
        if st != 400 or why not in h["_phrase"]:
            raise Fail("share %r answered %d %r, not 400 naming %r" % (
                url[:40], st, h["_phrase"], why))
    for url, why in [("https://192.168.0.1/a.mp4", "private"), ("https://[fd00::1]/", "unique local")]:
        st, text = http(e.http, "POST", "/v1/calls/%s/share" % cid, e.token,
                        json.dumps({"url": url}))
        if st != 400 or why not in text:
            raise Fail("POST share %s: %d %s, not 400 naming %r" % (url, st, text, why))
    # "share" and more words is a chat message: passed on to C untouched.
    st = A.wait_final(A.in_dialog("MESSAGE", "share my screen please", "text/plain"))[0]
    C.wait_message(lambda h, b: b == b"share my screen please", what="A's chat MESSAGE")
    if st != 200:
        raise Fail("a chat MESSAGE starting with share answered %d" % st)
    url = "https://v.example/clip.mp4"
    st = A.wait_final(A.in_dialog("MESSAGE", "share " + url, "text/plain"))[0]
    if st != 200:
        raise Fail("share answered %d" % st)
    la, lc = link_of(A), link_of(C)
    if la != lc or "/w/" not in la:
        raise Fail("links differ or hold no /w/: %r %r" % (la, lc))
    secret = la.rsplit("/w/", 1)[1]
    if len(secret) < 22:
        raise Fail("secret %r is under 128 bits" % secret)
    st, page = http(e.http, "GET", "/w/" + secret)
    if st != 200 or "<video" not in page:
        raise Fail("watch page: %d" % st)
    # One policy for the pages: the watch page's is theirs plus media from https: origins.
    csp_watch = csp_of(e.http, "/w/" + secret)
    csp_page = csp_of(e.http, "/w/no-such-page")
    if not csp_page or csp_watch != csp_page + "; media-src https:":
        raise Fail("the watch page's policy %r is not the pages' %r plus media-src https:" % (
            csp_watch, csp_page))
    st, news = http(e.http, "GET", "/w/%s/events?since=0" % secret)
    o = json.loads(news) if st == 200 else {}
    if st != 200 or o.get("url") != url or o.get("playing") is not False:
        raise Fail("events: %d %s" % (st, news[:200]))
    st, _ = http(e.http, "POST", "/w/%s/control" % secret, body='{"action":"play"}')
    st2, news = http(e.http, "GET", "/w/%s/events?since=%d" % (secret, o["seq"]))
    if st != 200 or st2 != 200 or json.loads(news).get("playing") is not True:
        raise Fail("play: %d, then %d %s" % (st, st2, news[:200]))
    for body in ['{"action":"jump"}', '{"action":"seek"}', '{"action":"seek","pos":-1}',
                 '{"action":"seek","pos":"1"}', "nope"]:
        st, _ = http(e.http, "POST", "/w/%s/control" % secret, body=body)
        if st != 400:
            raise Fail("control %s answered %d, not 400" % (body, st))
    # Listeners are bounded: [react] per_address 4 and listeners 6 (this case's config).
    st, news = http(e.http, "GET", "/w/%s/events?since=0" % secret)
    seq = json.loads(news)["seq"]
    ts, out = polls(e.http, secret, seq, ["127.0.0.1"] * 5 + ["127.0.0.2"] * 2 + ["127.0.0.3"])
    time.sleep(0.5)
    early = [o for o in out if o is not None]
    if sorted(o[0] for o in early) != [429, 429] or \
            not any("this address" in o[1] for o in early) or \
            not any("this watch" in o[1] for o in early):
        raise Fail("over the bounds: %s, not one 429 per address and one for the watch" % early)
    st, _ = http(e.http, "POST", "/w/%s/control" % secret, body='{"action":"seek","pos":3}')
    for t in ts:
        t.join(10)
    woken = [o for o in out if o and o[0] == 200 and json.loads(o[1])["pos"] >= 3]
    if st != 200 or len(woken) != 6:
        raise Fail("the seek woke %d of the 6 waiting pages: %s" % (len(woken), out))
    # The change is packed once for all: while it plays, a state packed per page would
    # differ in its position by the microseconds between them.
    if len(set(o[1] for o in woken)) != 1:
        raise Fail("the 6 pages woken by one seek were told %d different states" % len(
            set(o[1] for o in woken)))
    # Polls given up (their clients close the connection) free their places at once, not
    # after [react] poll_secs (25 s): the address's next 4 wait, and a change wakes them.
    st, news = http(e.http, "GET", "/w/%s/events?since=0" % secret)
    seq = json.loads(news)["seq"]
    gone = []
    for _ in range(4):
        k = socket.create_connection(("127.0.0.1", e.http), timeout=5,
                                     source_address=("127.0.0.4", 0))
        k.sendall(("GET /w/%s/events?since=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (
            secret, seq)).encode())
        gone.append(k)
    time.sleep(0.5)
    for k in gone:
        k.close()
    time.sleep(0.5)
    ts, out = polls(e.http, secret, seq, ["127.0.0.4"] * 4)
    time.sleep(0.5)
    early = [o for o in out if o is not None]
    if early:
        raise Fail("after 4 polls were given up, the next 4 from that address got %s" % early)
    st, _ = http(e.http, "POST", "/w/%s/control" % secret, body='{"action":"pause"}')
    for t in ts:
        t.join(10)
    if st != 200 or [o and o[0] for o in out] != [200] * 4:
        raise Fail("the pause woke %s of the 4 polls after those given up" % out)
    # The admin shares another URL in the call: the same page plays it, both parties told.
    n = len(C.got)
    st, text = http(e.http, "POST", "/v1/calls/%s/share" % cid, e.token,
                    '{"url":"https://v.example/other.webm"}')
    if st != 200 or json.loads(text).get("url") != "https://v.example/other.webm":
        raise Fail("POST share on a call with a page: %d %s" % (st, text))
    C.wait_message(lambda h, b: b"now plays https://v.example/other.webm" in b, since=n,
                   what="the new URL's MESSAGE")
    st, news = http(e.http, "GET", "/w/%s/events?since=0" % secret)
    if st != 200 or json.loads(news).get("url") != "https://v.example/other.webm":
        raise Fail("the page does not play the new URL: %d %s" % (st, news[:200]))
    wrong = ("B" if secret[0] != "B" else "C") + secret[1:]
    for path in ["/w/" + wrong, "/w/%s/events?since=0" % wrong, "/w/x", "/w/../v1/calls"]:
        st, _ = http(e.http, "GET", path)
        if st != 404:
            raise Fail("GET %s answered %d, not 404" % (path, st))
    e.hangup()
    pump(0.3)
    for path in ["/w/" + secret, "/w/%s/events?since=0" % secret]:
        st, _ = http(e.http, "GET", path)
        if st != 404:
            raise Fail("after the call, GET %s answered %d, not 404" % (path, st))


def wait_path(path, secs):
    deadline = time.monotonic() + secs
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise Fail("no %s within %d s" % (path, secs))
        pump(0.1)


def case_watch(e):
    e.up()
    A, C = e.A, e.C
    url = open(os.path.join(e.dir, "url")).read().strip()
    st = A.wait_final(A.in_dialog("MESSAGE", "share " + url, "text/plain"))[0]
    if st != 200:
        raise Fail("share answered %d" % st)
    link = link_of(C)
    with open(os.path.join(e.dir, "link.tmp"), "w") as f:
        f.write(link + "\n")
    os.rename(os.path.join(e.dir, "link.tmp"), os.path.join(e.dir, "link"))
    wait_path(os.path.join(e.dir, "react"), 90)
    st = react(C, "\U0001F44D", 0.25, 0.75)[0]
    if st != 200:
        raise Fail("C's reaction answered %d" % st)
    wait_path(os.path.join(e.dir, "hangup"), 90)
    e.hangup()
    pump(0.3)
    st, _ = http(e.http, "GET", "/w/" + link.rsplit("/w/", 1)[1])
    if st != 404:
        raise Fail("after the call the page answered %d, not 404" % st)


def main(a):
    case = a[6]
    try:
        e = Env(a)
        globals()["case_" + case](e)
    except Fail as x:
        print("FAIL %s: %s" % (case, x))
        return 1
    print("PASS %s" % case)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
