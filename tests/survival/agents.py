#!/usr/bin/env python3
"""tests/survival/agents.py: the SIP agents and the checks of tests/survival/restart.test.

  agents.py --sip PORT --http PORT --token FILE --a PORT --b PORT --c PORT
            --ctl-out FIFO --ctl-in FIFO --phase kill|confirm|term [--no-kill]
            [--plain N] [--offered N] [--moving N] [--confirming N] [--unacked N]

One process plays every party over UDP on 127.0.0.1, standard library only:
  A  the near phones (one socket): each plain or move call is an INVITE from A to qrxferd;
  C  the PBX, bound to qrxferd's [sip] upstream port: answers every INVITE;
  B  the new devices (one socket): dial the codes.
A call is known everywhere by its index i: A offers m=audio 20000+i, C answers 30000+i, B
offers 40000+i (qrxferd relays the m= lines as they are), so what C last got tells which
device's media it sends to.

The restarts are the shell's: the agents write "restart kill" or "restart term" to --ctl-out
and read back "started T0" (T0: the epoch second the new qrxferd was started) from --ctl-in;
then they poll GET /v1/calls until every live call is listed again ("served"). With --no-kill
the same points are passed with no restart.

Prints "PASS what" / "FAIL what: what did not happen" lines, then the counts per side and
"N passed, N failed"; exits 1 on any failure. Every wait has a deadline.
"""
import argparse
import json
import random
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

LOCK = threading.RLock()
T1 = 0.5
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
           "l": "content-length", "c": "content-type"}


def now():
    return time.monotonic()


def log(*a):
    print("agents:", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- SIP messages

class Msg:
    def __init__(self, data):
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.start = lines[0]
        self.hdrs = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.hdrs:
                k, v = self.hdrs[-1]
                self.hdrs[-1] = (k, v + " " + line.strip())
                continue
            k, _, v = line.partition(":")
            k = k.strip().lower()
            self.hdrs.append((COMPACT.get(k, k), v.strip()))
        n = int(self.get("content-length") or len(body))
        self.body = body[:n].decode("latin-1")
        parts = self.start.split(" ", 2)
        self.is_resp = parts[0] == "SIP/2.0"
        self.status = int(parts[1]) if self.is_resp else 0
        self.method = self.cseq_method() if self.is_resp else parts[0]
        self.ruri = "" if self.is_resp else parts[1]

    def get(self, name):
        for k, v in self.hdrs:
            if k == name:
                return v
        return None

    def all(self, name):
        out = []
        for k, v in self.hdrs:
            if k == name:
                out.extend(x.strip() for x in split_commas(v))
        return out

    def cseq(self):
        return int(self.get("cseq").split()[0])

    def cseq_method(self):
        return self.get("cseq").split()[1]

    def branch(self):
        m = re.search(r"branch=([^;,\s]+)", self.get("via") or "")
        return m.group(1) if m else ""

    def call_id(self):
        return self.get("call-id")


def split_commas(v):
    out, depth, cur, q = [], 0, "", False
    for ch in v:
        if ch == '"':
            q = not q
        if ch == "<" and not q:
            depth += 1
        if ch == ">" and not q:
            depth -= 1
        if ch == "," and depth == 0 and not q:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    out.append(cur)
    return out


def tag_of(v):
    m = re.search(r";\s*tag=([^;>\s]+)", v or "")
    return m.group(1) if m else None


def uri_of(v):
    m = re.search(r"<([^>]*)>", v or "")
    return m.group(1) if m else (v or "").split(";")[0].strip()


def audio_port(body):
    m = re.search(r"^m=audio (\d+) ", body or "", re.M)
    return int(m.group(1)) if m else None


def sdp(user, port, version):
    return ("v=0\r\no=%s 1 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n") % (user, version, port)


# ---------------------------------------------------------------- dialogs and endpoints

class Dialog:
    def __init__(self, ep, call_id, ltag, luri, ruri_hdr, idx):
        self.ep, self.call_id, self.ltag, self.idx = ep, call_id, ltag, idx
        self.local = luri          # our From/To value without tag
        self.remote = ruri_hdr     # theirs, with their tag once known
        self.target = None
        self.routes = []
        self.cseq = 1
        self.rcseq = None
        self.sdp_version = 1
        self.port = None           # our m=audio port
        self.ended = False
        self.got = []              # (time, method, m=audio port or None) of requests received
        self.hold_reinvite = False  # C: park the next re-INVITE (100 only) until released
        self.hold_ack = False       # A: keep the ACK for the answer until told (held_ack)
        self.held_ack = None
        self.parked = None
        self.acked = threading.Event()
        self.notes = []            # what this agent refused on the dialog, for the verdict

    def got_n(self, method, after=0.0):
        return [g for g in self.got if g[1] == method and g[0] >= after]


class Tx:
    def __init__(self, msg, method, dest):
        self.msg, self.method, self.dest = msg, method, dest
        self.final = None
        self.provisional = False
        self.done = threading.Event()


class Endpoint:
    def __init__(self, name, port, qport, user):
        self.name, self.port, self.user = name, port, user
        self.qaddr = ("127.0.0.1", qport)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self.dialogs = {}          # call_id -> Dialog
        self.txs = {}              # branch -> Tx
        self.resp_cache = {}       # (call-id, cseq, method) -> bytes
        self.acks = {}             # (call-id, cseq) -> ACK bytes for 2xx retransmissions
        self.on_new_invite = None  # C: (Msg, addr) -> Dialog
        self.on_message = None
        self.stray = []            # requests on no dialog we know: (time, method, call-id)
        self.running = True
        self.seq = 0
        threading.Thread(target=self.loop, daemon=True).start()
        threading.Thread(target=self.timers, daemon=True).start()

    def branch(self):
        self.seq += 1
        return "z9hG4bK-%s-%d-%d" % (self.name, self.seq, random.randrange(1 << 30))

    def send(self, data, addr=None):
        try:
            self.sock.sendto(data, addr or self.qaddr)
        except OSError:
            pass

    # -- receiving
    def loop(self):
        while self.running:
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data.strip():
                continue
            try:
                m = Msg(data)
            except Exception as e:  # noqa: BLE001 - a garbled datagram is logged, not fatal
                log(self.name, "unparsable datagram:", e)
                continue
            with LOCK:
                if m.is_resp:
                    self.on_response(m)
                else:
                    self.on_request(m, addr)

    def on_response(self, m):
        tx = self.txs.get(m.branch())
        if m.method == "INVITE" and 200 <= m.status < 300:
            ack = self.acks.get((m.call_id(), m.cseq()))
            if ack is not None:     # a 2xx again: our ACK was lost or not yet seen
                d = self.dialogs.get(m.call_id())
                if d is None or not d.hold_ack:
                    self.send(ack)
                return
        if tx is None or tx.final is not None or m.method != tx.method:
            return
        if m.status < 200:
            tx.provisional = True
            return
        tx.final = m
        if tx.method == "INVITE":
            self.ack_final(tx, m)
        tx.done.set()

    def ack_final(self, tx, m):
        req = tx.msg
        d = self.dialogs.get(m.call_id())
        if 200 <= m.status < 300:
            if d is None:
                return
            if d.remote and tag_of(d.remote) is None:
                d.remote = m.get("to")
            contact = m.get("contact")
            if contact:
                d.target = uri_of(contact)
            rr = m.all("record-route")
            if rr and d.rcseq is None and not d.routes:
                d.routes = list(reversed(rr))
            ack = self.build(d, "ACK", cseq=m.cseq())
            self.acks[(m.call_id(), m.cseq())] = ack
            if d.hold_ack:
                d.held_ack = ack
            else:
                self.send(ack)
        else:
            # hop-by-hop ACK of a failure: the INVITE's branch, its Request-URI
            ack = ("ACK %s SIP/2.0\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\n"
                   "CSeq: %d ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n") % (
                       tx.ruri, req_via(req), req_hdr(req, "From"), m.get("to"), m.call_id(),
                       m.cseq())
            self.send(ack.encode())

    def on_request(self, m, addr):
        key = (m.call_id(), m.cseq(), m.method)
        if m.method != "ACK" and key in self.resp_cache:
            if self.resp_cache[key] is not None:
                self.send(self.resp_cache[key], addr)
            return
        d = self.dialogs.get(m.call_id())
        if m.method == "ACK":
            if d is not None:
                d.acked.set()
                if d.parked and d.parked.get("sent"):
                    d.parked = None
            return
        if m.method == "CANCEL":
            self.respond(m, addr, 200, key=None)
            return
        if d is None and m.method == "INVITE" and tag_of(m.get("to")) is None and self.on_new_invite:
            d = self.on_new_invite(m, addr)
            if d is None:
                self.respond(m, addr, 404)
                return
            d.got.append((now(), "INVITE", audio_port(m.body)))
            self.answer_invite(d, m, addr)
            return
        if d is None or (tag_of(m.get("to")) and tag_of(m.get("to")) != d.ltag):
            self.stray.append((now(), m.method, m.call_id()))
            self.respond(m, addr, 481)
            return
        d.got.append((now(), m.method, audio_port(m.body)))
        if d.rcseq is not None and m.cseq() < d.rcseq:
            # RFC 3261 12.2.2: lower than the last one (e.g. a restored dialog's CSeq restarted)
            d.notes.append("%s got %s with CSeq %d after %d on its dialog and answered 500"
                           % (self.name.upper(), m.method, m.cseq(), d.rcseq))
            self.respond(m, addr, 500)
            return
        d.rcseq = m.cseq()
        if m.method == "INVITE":
            contact = m.get("contact")
            if contact:
                d.target = uri_of(contact)
            if d.hold_reinvite:
                d.hold_reinvite = False
                self.respond(m, addr, 100, key=None)
                self.resp_cache[key] = None  # its retransmissions wait for the release too
                d.parked = {"msg": m, "addr": addr, "sent": False}
                return
            self.answer_invite(d, m, addr)
        elif m.method == "BYE":
            d.ended = True
            self.respond(m, addr, 200)
        elif m.method == "MESSAGE":
            self.respond(m, addr, 200)
            if self.on_message:
                self.on_message(d, m)
        else:
            self.respond(m, addr, 200)

    def answer_invite(self, d, m, addr):
        d.sdp_version += 1
        self.respond(m, addr, 200, body=sdp(self.user, d.port, d.sdp_version), contact=True,
                     dlg=d)
        d.acked.clear()

    def respond(self, m, addr, status, body="", contact=False, dlg=None, key=True):
        reason = {100: "Trying", 200: "OK", 404: "Not Found", 481: "Call Does Not Exist",
                  500: "Server Internal Error", 487: "Request Terminated"}.get(status, "X")
        to = m.get("to")
        if dlg is not None and tag_of(to) is None and status > 100:
            to = "%s;tag=%s" % (to, dlg.ltag)
        out = ["SIP/2.0 %d %s" % (status, reason)]
        out += ["Via: %s" % v for k, v in m.hdrs if k == "via"]
        out += ["From: %s" % m.get("from"), "To: %s" % to, "Call-ID: %s" % m.call_id(),
                "CSeq: %s" % m.get("cseq")]
        if status >= 200 and m.method == "INVITE":
            out += ["Record-Route: %s" % v for k, v in m.hdrs if k == "record-route"]
        if contact:
            out.append("Contact: <sip:%s@127.0.0.1:%d>" % (self.user, self.port))
        if body:
            out.append("Content-Type: application/sdp")
        out.append("Content-Length: %d" % len(body))
        data = ("\r\n".join(out) + "\r\n\r\n" + body).encode()
        self.send(data, addr)
        if key and status >= 200:
            self.resp_cache[(m.call_id(), m.cseq(), m.method)] = data
        return data

    # -- 2xx retransmission for parked re-INVITEs released late (RFC 3261 13.3.1.4)
    def release(self, d):
        with LOCK:
            p = d.parked
            if not p:
                return False
            m = p["msg"]
            d.sdp_version += 1
            p["data"] = self.respond(m, p["addr"], 200, body=sdp(self.user, d.port, d.sdp_version),
                                     contact=True, dlg=d)
            p["sent"], p["at"], p["next"], p["gap"] = True, now(), now() + T1, T1
            d.acked.clear()
            return True

    def timers(self):
        while self.running:
            time.sleep(0.05)
            with LOCK:
                t = now()
                for d in self.dialogs.values():
                    p = d.parked
                    if p and p.get("sent") and t >= p["next"]:
                        if t - p["at"] > 32 or d.acked.is_set():
                            d.parked = None
                            continue
                        self.send(p["data"], p["addr"])
                        p["gap"] = min(p["gap"] * 2, 4)
                        p["next"] = t + p["gap"]
                for tx in list(self.txs.values()):
                    if tx.final is None and not (tx.method == "INVITE" and tx.provisional):
                        if t >= tx.next:
                            self.send(tx.msg, tx.dest)
                            tx.gap = min(tx.gap * 2, 4)
                            tx.next = t + tx.gap

    # -- sending requests
    def build(self, d, method, cseq=None, body="", extra=(), branch=None):
        ruri = d.target
        lines = ["%s %s SIP/2.0" % (method, ruri),
                 "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport" % (self.port, branch or self.branch()),
                 "From: %s;tag=%s" % (d.local, d.ltag), "To: %s" % d.remote,
                 "Call-ID: %s" % d.call_id, "CSeq: %d %s" % (cseq or d.cseq, method),
                 "Max-Forwards: 70"]
        lines += ["Route: %s" % r for r in d.routes]
        if method in ("INVITE",):
            lines.append("Contact: <sip:%s@127.0.0.1:%d>" % (self.user, self.port))
        lines += list(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body))
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def request(self, d, method, body="", extra=(), wait=10.0, ruri=None):
        """Sends METHOD on dialog d (a new dialog's INVITE when d.rcseq is None and the remote
        has no tag); returns the final response or None at the deadline."""
        tx = self.start(d, method, body, extra, ruri)
        tx.done.wait(wait)
        with LOCK:
            self.txs.pop(tx.branch, None)
        return tx.final

    def start(self, d, method, body="", extra=(), ruri=None):
        with LOCK:
            if method != "ACK" and method != "CANCEL":
                d.cseq += 1
            br = self.branch()
            if ruri:
                d.target = ruri
            msg = self.build(d, method, body=body, extra=extra, branch=br)
            tx = Tx(msg, method, self.qaddr)
            tx.branch, tx.ruri, tx.gap, tx.next = br, d.target, T1, now() + T1
            tx.cseq = d.cseq
            self.txs[br] = tx
            self.send(msg)
            return tx

    def cancel(self, d, tx, wait=5.0):
        with LOCK:
            lines = ["CANCEL %s SIP/2.0" % tx.ruri,
                     "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport" % (self.port, tx.branch),
                     "From: %s;tag=%s" % (d.local, d.ltag), "To: %s" % d.remote,
                     "Call-ID: %s" % d.call_id, "CSeq: %d CANCEL" % tx.cseq,
                     "Max-Forwards: 70", "Content-Length: 0"]
            msg = ("\r\n".join(lines) + "\r\n\r\n").encode()
            ctx = Tx(msg, "CANCEL", self.qaddr)
            ctx.branch, ctx.gap, ctx.next = tx.branch + "-c", T1, now() + T1
            # the CANCEL shares the INVITE's branch: its answer is matched by CSeq method below
            self.send(msg)
        deadline = now() + wait
        while now() < deadline and tx.final is None:
            time.sleep(0.05)
            with LOCK:
                if now() > ctx.next:
                    self.send(msg)
                    ctx.next = now() + 1
        return tx.final


def req_hdr(raw, name):
    for line in raw.decode("latin-1").split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def req_via(raw):
    return req_hdr(raw, "Via")


# ---------------------------------------------------------------- HTTP admin API

class Api:
    def __init__(self, port, token):
        self.base = "http://127.0.0.1:%d" % port
        self.token = token

    def req(self, method, path, body=None):
        r = urllib.request.Request(self.base + path, method=method, data=body,
                                   headers={"Authorization": "Bearer " + self.token})
        try:
            with urllib.request.urlopen(r, timeout=5) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except ValueError:
                return e.code, None
        except (OSError, ValueError) as e:
            return 0, {"error": str(e)}

    def calls(self):
        st, j = self.req("GET", "/v1/calls")
        return j.get("calls", []) if st == 200 and j else None

    def move(self, mid):
        st, j = self.req("GET", "/v1/moves/%s" % mid)
        return j if st == 200 else None


# ---------------------------------------------------------------- the test

class Call:
    def __init__(self, i, kind):
        self.i, self.kind = i, kind
        self.a = self.c = self.b = None
        self.id = None             # qrxferd's call id (API)
        self.move = None           # move id
        self.code = self.token = None
        self.b_tx = None
        self.why = []
        self.note = ""

    def name(self):
        return "call %d (%s%s)" % (self.i, self.kind, self.note)

    def bad(self, what):
        self.why.append(what)


class Run:
    def __init__(self, o):
        self.o = o
        self.api = Api(o.http, open(o.token).read().strip())
        self.A = Endpoint("a", o.a, o.sip, "alice")
        self.C = Endpoint("c", o.c, o.sip, "far")
        self.B = Endpoint("b", o.b, o.sip, "bob")
        self.C.on_new_invite = self.c_invite
        self.A.on_message = self.a_message
        self.calls = {}
        self.failed = 0
        self.passed = 0
        self.counts = {k: 0 for k in (
            "A sent re-INVITE, got 200", "C sent re-INVITE, got 200", "A sent BYE, got 200",
            "C sent BYE, got 200", "B sent BYE, got 200",
            "A got BYE", "C got BYE", "B got BYE", "A got re-INVITE", "C got re-INVITE",
            "late ACK reached C")}
        self.ctl_out = open(o.ctl_out, "w") if o.ctl_out else None
        self.ctl_in = open(o.ctl_in) if o.ctl_in else None
        self.restart_marks = []
        self.unserved = False

    # C answers any new INVITE; the call is the one whose A offered m=audio 20000+i
    def c_invite(self, m, addr):
        p = audio_port(m.body)
        if p is None or not 20000 <= p < 20000 + 1000 or (p - 20000) not in self.calls:
            log("C: INVITE with no call's m=audio: %r" % p)
            self.C.stray.append((now(), "INVITE (new dialog, m=audio %s)" % p, m.call_id()))
            return None
        i = p - 20000
        d = Dialog(self.C, m.call_id(), "c%d" % i, m.get("to"), m.get("from"), i)
        d.target = uri_of(m.get("contact"))
        d.routes = m.all("record-route")
        d.rcseq = m.cseq()
        d.port = 30000 + i
        self.C.dialogs[m.call_id()] = d
        self.calls[i].c = d
        return d

    def a_message(self, d, m):
        pass  # the code MESSAGE and the confirmation question: answered 200, never "yes"

    def ok(self, what):
        print("PASS %s" % what, flush=True)
        self.passed += 1

    def fail(self, what):
        print("FAIL %s" % what, flush=True)
        self.failed += 1

    # -- set-up
    def call_up(self, i, kind):
        c = Call(i, kind)
        self.calls[i] = c
        cid = "a-%s-%d-%d@127.0.0.1" % (self.o.phase, i, random.randrange(1 << 30))
        d = Dialog(self.A, cid, "a%d" % i, "<sip:alice%d@127.0.0.1:%d>" % (i, self.o.a),
                   "<sip:far%d@127.0.0.1:%d>" % (i, self.o.c), i)
        d.port = 20000 + i
        d.hold_ack = kind == "unacked"
        with LOCK:
            self.A.dialogs[cid] = d
        c.a = d
        r = self.A.request(d, "INVITE", sdp("alice", d.port, d.sdp_version),
                           ruri="sip:far%d@127.0.0.1:%d" % (i, self.o.c))
        if r is None or r.status != 200:
            c.bad("A's INVITE got %s, not 200" % (r.status if r else "no answer in 10 s"))
            return c
        if c.c is None:
            c.bad("C got no INVITE for A's call (m=audio %d)" % d.port)
        return c

    def find_ids(self, calls, secs=10):
        deadline = now() + secs
        while now() < deadline:
            listed = self.api.calls() or []
            by_near = {x.get("near_call_id"): x for x in listed}
            for c in calls:
                x = by_near.get(c.a.call_id)
                if x and x.get("state") == "answered":
                    c.id = x["id"]
            if all(c.id for c in calls):
                return
            time.sleep(0.1)
        for c in calls:
            if not c.id:
                c.bad("GET /v1/calls does not list A's call %s as answered" % c.a.call_id)

    def start_move(self, c):
        deadline = now() + 5
        while True:
            st, j = self.api.req("POST", "/v1/calls/%s/moves" % c.id, b"")
            if st != 429 or now() > deadline:
                break
            time.sleep(0.05)
        if st != 201 or not j:
            c.bad("POST /v1/calls/%s/moves answered %d %s" % (st, c.id, j))
            return False
        c.move, c.code = j.get("id"), j.get("code")
        uri = j.get("qr_uri") or ""
        c.token = uri.split(":", 1)[1].split("@")[0][2:] if ":" in uri else ""
        return True

    def b_dial(self, c, how):
        """B dials the code (how: digits or token): B's dialog; the INVITE is left running."""
        user = "*88%s" % c.code if how == "digits" else "m.%s" % c.token
        cid = "b-%s-%d-%d@127.0.0.1" % (self.o.phase, c.i, random.randrange(1 << 30))
        d = Dialog(self.B, cid, "b%d-%d" % (c.i, random.randrange(1000)),
                   "<sip:bob%d@127.0.0.1:%d>" % (c.i, self.o.b),
                   "<sip:%s@qrxfer.test>" % user, c.i)
        d.port = 40000 + c.i
        with LOCK:
            self.B.dialogs[cid] = d
        tx = self.B.start(d, "INVITE", sdp("bob", d.port, 1), ruri="sip:%s@qrxfer.test" % user)
        return d, tx

    def wait_state(self, c, states, secs):
        deadline, last = now() + secs, None
        while now() < deadline:
            m = self.api.move(c.move)
            last = m.get("state") if m else None
            if last in states:
                return last
            time.sleep(0.1)
        return last

    def wait_until(self, fn, secs):
        deadline = now() + secs
        while now() < deadline:
            with LOCK:
                if fn():
                    return True
            time.sleep(0.05)
        with LOCK:
            return fn()

    # -- restarts
    def restart(self, how):
        live = [c for c in self.calls.values() if c.id and not c.why]
        if self.o.no_kill:
            log("--no-kill: no %s restart" % how)
            self.restart_marks.append(now())
            return
        time.sleep(0.3)  # the calls' rows are written in batches of up to 50 ms
        self.ctl_out.write("restart %s\n" % how)
        self.ctl_out.flush()
        self.on_killed()
        line = self.ctl_in.readline().split()
        if not line or line[0] != "started":
            self.fail("restart %s: the shell did not start qrxferd again (%s)" % (how, line))
            raise SystemExit(self.summary())
        t0 = float(line[1])
        self.restart_marks.append(now())
        nth = len(self.restart_marks)
        secs = 15 if not self.unserved else 5  # once a start was not served, do not wait long
        deadline = now() + secs
        want = {c.id for c in live}
        while now() < deadline:
            listed = self.api.calls()
            if listed is not None and want <= {x.get("id") for x in listed}:
                print("served: %d calls listed again %.2f s after the start (%s restart %d)"
                      % (len(want), time.time() - t0, how, nth), flush=True)
                return
            time.sleep(0.05)
        listed = self.api.calls() or []
        missing = want - {x.get("id") for x in listed}
        self.unserved = True
        self.fail("after %s %s restart GET /v1/calls does not list %d of the %d live calls "
                  "%d s after the start (e.g. %s)" % (("the first", "the second")[min(nth, 2) - 1],
                                                     how, len(missing), len(want), secs,
                                                     ", ".join(sorted(missing)[:3])))

    def on_killed(self):
        pass

    def store_ctl(self, what):
        """Ask the shell to freeze or thaw the PostgreSQL server."""
        self.ctl_out.write(what + "\n")
        self.ctl_out.flush()
        line = self.ctl_in.readline().split()
        if line[:2] != [what, "done"]:
            self.fail("the shell did not %s the store (%s)" % (what, line))
            raise SystemExit(self.summary())

    # -- checks after the restarts
    def no_bye_before(self, c, t_end):
        who = [w for w, d in (("A", c.a), ("C (the far party)", c.c))
               if d and d.got_n("BYE") and d.got_n("BYE")[0][0] < t_end]
        if who:
            c.bad("%s got a BYE before the test hung up (the restart ended the call)"
                  % " and ".join(who))
        return not who

    def reinvite(self, c, frm):
        """A re-INVITE from frm (A or C side dialog); the other side must get it."""
        src, dst = (c.a, c.c) if frm == "A" else (c.c, c.a)
        ep = self.A if frm == "A" else self.C
        dst_side = "C" if frm == "A" else "A"
        t = now()
        src.sdp_version += 1
        r = ep.request(src, "INVITE", sdp(ep.user, src.port, src.sdp_version))
        if r is None or r.status != 200:
            c.bad("%s's re-INVITE got %s, not 200" % (frm, r.status if r else "no final answer in 10 s"))
            return False
        self.counts["%s sent re-INVITE, got 200" % frm] += 1
        got = dst.got_n("INVITE", t) if dst else []
        if not got:
            c.bad("%s did not get %s's re-INVITE (answered 200)" % (dst_side, frm))
            return False
        if got[-1][2] != src.port:
            c.bad("%s got %s's re-INVITE with m=audio %s, not %d" % (dst_side, frm, got[-1][2], src.port))
        self.counts["%s got re-INVITE" % dst_side] += 1
        return True

    def bye(self, c, frm, src, dst, dst_side):
        ep = {"A": self.A, "C": self.C, "B": self.B}[frm]
        t = now()
        r = ep.request(src, "BYE")
        if r is None or r.status != 200:
            c.bad("%s's BYE got %s, not 200" % (frm, r.status if r else "no final answer in 10 s"))
            return False
        self.counts["%s sent BYE, got 200" % frm] += 1
        if not self.wait_until(lambda: dst is not None and dst.got_n("BYE", t - 0.01), 3):
            c.bad("%s did not get the BYE %s sent (answered 200)" % (dst_side, frm))
            return False
        self.counts["%s got BYE" % dst_side] += 1
        return True

    def listed(self, c):
        """The call's entry in GET /v1/calls (the live calls; GET /v1/calls/{id} falls back to
        the stored row of an ended call), if it is there and answered."""
        for x in self.api.calls() or []:
            if x.get("id") == c.id and x.get("state") == "answered":
                return x
        return None

    def check_plain(self, c, t_end):
        if c.why:
            return
        self.no_bye_before(c, t_end)
        j = self.listed(c)
        if not j:
            c.bad("GET /v1/calls does not list call %s as answered after the restarts" % c.id)
        frm = "A" if c.i % 2 == 0 else "C"
        self.reinvite(c, frm)
        if c.i % 4 < 2:
            self.bye(c, "A", c.a, c.c, "C")
        else:
            self.bye(c, "C", c.c, c.a, "A")

    def check_unacked(self, c, t_end):
        """A got C's answer just before the kill and ACKs it only after the restarts (a late
        ACK): the answer reached A only once the call's state was written, so the call was
        read back; the ACK reaches C, then the call goes on as a plain one."""
        if c.why:
            return
        with LOCK:
            c.a.hold_ack = False
            ack = c.a.held_ack
        if ack is None:
            c.bad("A kept no ACK to send late")
            return
        if c.c.acked.is_set():
            c.bad("C had an ACK before A sent its own")
        self.A.send(ack)
        if not self.wait_until(lambda: c.c.acked.is_set(), 5):
            c.bad("A's late ACK (sent after the restarts) did not reach C")
            return
        self.counts["late ACK reached C"] += 1
        self.check_plain(c, t_end)

    def check_offered(self, c, t_end, how):
        if c.why:
            return
        self.no_bye_before(c, t_end)
        m = self.api.move(c.move)
        if not m or m.get("state") != "offered":
            c.bad("GET /v1/moves/%s: state %s after the restarts, not offered"
                  % (c.move, m.get("state") if m else "(no move)"))
        t = now()
        d, tx = self.b_dial(c, how)
        c.b = d
        tx.done.wait(10)
        if tx.final is None or tx.final.status != 200:
            c.bad("B dialled the offered code (%s) after the restarts and got %s, not 200"
                  % (how, tx.final.status if tx.final else "no final answer in 10 s"))
            return
        if not self.wait_until(lambda: c.c.got_n("INVITE", t) and c.c.got_n("INVITE", t)[-1][2] == d.port, 3):
            c.bad("C got no re-INVITE with B's SDP (m=audio %d) after B took the code" % d.port)
        if not self.wait_until(lambda: c.a.got_n("BYE", t), 3):
            c.bad("A got no BYE after B took the call")
        else:
            self.counts["A got BYE"] += 1
        st = self.wait_state(c, ("done", "failed"), 5)
        if st != "done":
            c.bad("GET /v1/moves/%s: state %s after B took the code, not done" % (c.move, st))
        self.twice(c, how)
        self.bye(c, "B", d, c.c, "C")

    def check_reasked(self, c, t_end):
        """A asks for the code again after the restarts: the code read back cannot be shown
        again (only its hashes are stored), so a new move with a new code replaces it; the
        new code works once, the old one no more."""
        if c.why:
            return
        old_move, old_code = c.move, c.code
        if not self.start_move(c):
            return
        if c.move == old_move or not c.code or c.code == old_code:
            c.bad("asked again after the restarts: move %s code %r (before: %s, %r), not a "
                  "new move with a new code" % (c.move, c.code, old_move, old_code))
            return
        m = self.api.move(old_move)
        if not m or m.get("state") != "failed":
            c.bad("the move read back (%s) is %s after A asked again, not failed"
                  % (old_move, m.get("state") if m else "(gone)"))
        self.check_offered(c, t_end, "digits")
        c.code = old_code
        self.twice(c, "digits")

    def twice(self, c, how):
        """No code works twice: dialling it again gets a failure."""
        d, tx = self.b_dial(c, how)
        tx.done.wait(10)
        if tx.final is None:
            c.bad("B dialled the used code again (%s): no final answer in 10 s" % how)
            self.B.cancel(d, tx)
        elif not 400 <= tx.final.status < 500:
            c.bad("B dialled the used code again (%s) and got %d, not a 4xx" % (how, tx.final.status))
            if tx.final.status == 200:
                self.B.request(d, "BYE")

    def settle_b(self, calls):
        """B's INVITEs of the moving/confirming calls, in flight at the restart: those with no
        final answer a while after the restarts are given up with a CANCEL, as a phone would
        (the transaction died with the node); all at once, so that the waits do not add up."""
        pend = [c for c in calls if c.kind in ("moving", "confirming") and c.b_tx and not c.why]
        self.wait_until(lambda: all(c.b_tx.final for c in pend), 8 if self.o.no_kill else 3)
        left = [c for c in pend if c.b_tx.final is None]
        for c in left:
            threading.Thread(target=self.B.cancel, args=(c.b, c.b_tx, 3), daemon=True).start()
            c.note += ", B's INVITE unanswered after the restart: B sent CANCEL"
        self.wait_until(lambda: all(c.b_tx.final for c in left), 3)

    def summary(self):
        print("counts: " + ", ".join("%s %d" % kv for kv in self.counts.items()), flush=True)
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failed else 0

    def verdicts(self, calls):
        for c in calls:
            for d in (c.a, c.c, c.b):
                if d is not None and d.notes:
                    c.bad("; ".join(d.notes))
            if c.why:
                self.fail("%s: %s" % (c.name(), "; ".join(c.why)))
            else:
                self.ok(c.name())

    def all_ended(self):
        deadline, left = now() + 10, None
        while now() < deadline:
            left = self.api.calls()
            if left == []:
                self.ok("GET /v1/calls lists no call once every call was hung up")
                return
            time.sleep(0.1)
        self.fail("GET /v1/calls still lists %s calls 10 s after every call was hung up (e.g. %s)"
                  % (len(left) if left is not None else "(no answer)",
                     json.dumps(left[:2]) if left else ""))

    # -- the moving (C parks the move's re-INVITE) and confirming cases
    def check_pending_move(self, c, t_end):
        """moving / confirming: after the restarts the call is on A or on B, never neither;
        the API, C's last SDP, and what A and B got agree; the holder's re-INVITE and BYE
        reach C."""
        if c.why:
            return
        d, tx = c.b, c.b_tx
        b_status = tx.final.status if tx.final else None
        j = self.listed(c)
        near = j.get("near_call_id") if j else None
        cl = c.c.got_n("INVITE")
        c_media = cl[-1][2] if cl else None
        a_bye = bool(c.a.got_n("BYE"))
        c_bye = bool(c.c.got_n("BYE"))
        st = self.wait_state(c, ("done", "failed"), 5)
        if c_bye:
            c.bad("C got a BYE: the far dialog was ended by the restart (the call is on neither A nor B)")
            return
        if j is None:
            c.bad("GET /v1/calls does not list call %s after the restarts: on neither A nor B "
                  "(move %s, C's last SDP m=audio %s, A got %s, B's INVITE got %s)"
                  % (c.id, st, c_media, "a BYE" if a_bye else "no BYE",
                     b_status or "no final answer"))
            return
        if near == c.a.call_id:
            c.note += ", on A"
            if a_bye:
                c.bad("the API says A holds the call but A got a BYE")
            if b_status == 200:
                c.bad("the call stayed on A but B's INVITE was answered 200")
            if c_media != c.a.port:
                c.bad("the call stayed on A but the last INVITE C got offers m=audio %s, not A's %d "
                      "(C was not re-INVITEd back to A's SDP)" % (c_media, c.a.port))
            if st != "failed":
                c.bad("the call stayed on A but GET /v1/moves/%s says %s, not failed" % (c.move, st))
            self.reinvite(c, "A")
            self.bye(c, "A", c.a, c.c, "C")
        elif near == d.call_id:
            c.note += ", on B"
            if c.kind == "confirming":
                c.bad("the call moved to B although nobody confirmed")
            if not a_bye:
                c.bad("the API says B holds the call but A got no BYE")
            else:
                self.counts["A got BYE"] += 1
            if b_status != 200:
                c.bad("the API says B holds the call but B's INVITE got %s" % b_status)
            if c_media != d.port:
                c.bad("the call is on B but the last INVITE C got offers m=audio %s, not B's %d"
                      % (c_media, d.port))
            if st != "done":
                c.bad("the call is on B but GET /v1/moves/%s says %s, not done" % (c.move, st))
            self.bye(c, "B", d, c.c, "C")
        else:
            c.bad("GET /v1/calls/%s names near Call-ID %s: neither A's %s nor B's %s"
                  % (c.id, near, c.a.call_id, d.call_id))
            return
        self.twice(c, "digits")


def main():
    p = argparse.ArgumentParser()
    for k in ("sip", "http", "a", "b", "c"):
        p.add_argument("--" + k, type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--ctl-out")
    p.add_argument("--ctl-in")
    p.add_argument("--phase", choices=("kill", "confirm", "term", "outage"), required=True)
    p.add_argument("--no-kill", action="store_true")
    p.add_argument("--plain", type=int, default=0)
    p.add_argument("--offered", type=int, default=0)
    p.add_argument("--moving", type=int, default=0)
    p.add_argument("--confirming", type=int, default=0)
    p.add_argument("--unacked", type=int, default=0)
    o = p.parse_args()
    r = Run(o)
    how = "term" if o.phase == "term" else "kill"
    t_start = time.time()

    # 1. every call up: A -> qrxferd -> C
    kinds = (["plain"] * o.plain + ["offered"] * o.offered + ["moving"] * o.moving
             + ["confirming"] * o.confirming + ["unacked"] * o.unacked)
    if o.phase == "outage":
        # half the calls up, the store frozen, the other half up and the first half
        # re-INVITEd while it is: the node relays all of it, and its state catches up
        half = len(kinds) // 2
        calls = [r.call_up(i, k) for i, k in enumerate(kinds[:half])]
        r.store_ctl("freeze")
        t_frozen = time.time()
        calls += [r.call_up(half + i, k) for i, k in enumerate(kinds[half:])]
        for c in calls[:half]:
            if not c.why:
                r.reinvite(c, "A")
        print("outage: %d calls set up and %d re-INVITEd in %.1f s with the store frozen"
              % (len(kinds) - half, half, time.time() - t_frozen), flush=True)
        time.sleep(max(0.0, 3.0 - (time.time() - t_frozen)))
        r.store_ctl("thaw")
        time.sleep(7.0)  # the kept writes are retried within 5 s (backoff) of the store's return
    else:
        calls = [r.call_up(i, k) for i, k in enumerate(kinds)]
    up = [c for c in calls if not c.why]
    r.find_ids(up)
    print("up: %d of %d calls answered and listed (%.1f s)"
          % (len([c for c in calls if c.id and not c.why]), len(calls), time.time() - t_start),
          flush=True)

    # 2. the moves, each left in its state
    for c in calls:
        if c.kind in ("plain", "unacked") or c.why:
            continue
        if not r.start_move(c):
            continue
    for c in calls:
        if c.kind in ("moving", "confirming") and not c.why and c.move:
            if c.kind == "moving":
                c.c.hold_reinvite = True
            c.b, c.b_tx = r.b_dial(c, "digits")
    for c in calls:
        if c.why or c.kind in ("plain", "unacked"):
            continue
        want = {"offered": "offered", "moving": "moving", "confirming": "confirming"}[c.kind]
        st = r.wait_state(c, (want,), 10)
        if st != want:
            c.bad("before the restarts the move %s is %s, not %s" % (c.move, st, want))
        if c.kind == "moving" and not r.wait_until(
                lambda c=c: c.c.parked is not None, 5):
            c.bad("C did not get the move's re-INVITE (to park it) before the restarts")
        if c.kind == "confirming" and not r.wait_until(
                lambda c=c: len(c.a.got_n("MESSAGE")) >= 2, 5):
            c.bad("A got no confirmation MESSAGE before the restarts")

    # 3. restarts: SIGKILL twice, or SIGTERM once. C answers its parked re-INVITEs once the
    # first restart has begun (with --no-kill: at the same point, so the move completes).
    def release():
        for c in calls:
            if c.kind == "moving" and c.c is not None and c.c.parked:
                r.C.release(c.c)
    r.on_killed = lambda: (time.sleep(0.2), release())
    if o.no_kill:
        release()
    r.restart(how)
    r.on_killed = lambda: None
    if how == "kill":
        time.sleep(0.5)  # let the first new node settle its rows too
        r.restart(how)
    t_end = now()

    # 4. every call ends cleanly; the moves end consistently; codes work once
    for c in calls:
        if c.kind == "plain":
            r.check_plain(c, t_end)
        elif c.kind == "unacked":
            r.check_unacked(c, t_end)
    for n, c in enumerate([c for c in calls if c.kind == "offered"]):
        if n == 3:
            r.check_reasked(c, t_end)
        else:
            r.check_offered(c, t_end, "digits" if n % 2 == 0 else "token")
    r.settle_b(calls)
    for c in calls:
        if c.kind in ("moving", "confirming"):
            r.check_pending_move(c, t_end)
    r.verdicts(calls)
    if not any(c.why for c in calls):
        r.all_ended()
    # Nothing may come on a dialog an agent does not have (481) or as a call it cannot place.
    for ep, who in ((r.A, "A"), (r.C, "C"), (r.B, "B")):
        if ep.stray:
            r.fail("%s got %d requests on no dialog it has (answered 481 or 404), e.g. %s"
                   % (who, len(ep.stray), "; ".join("%s on %s" % (m, cid) for _, m, cid in ep.stray[:3])))
    return r.summary()


if __name__ == "__main__":
    sys.exit(main())
