#!/usr/bin/env python3
"""Own devices across two nodes sharing one store (issue 13). Plays the PBX (registrar and the
far party C, on both nodes' upstream port) and raw UDP phones of alice@qrxfer.test, 127.0.0.1.

own_nodes.py N1 N2 C_PORT H1 H2 TOKEN_FILE: N1, N2 the nodes' SIP ports, H1, H2 their HTTP
ports. The nodes have [own] near_ring = 4. In order:
  1. A registers and calls carol through node 2 (the call lives there); D, D2 and D3
     register as alice through node 1, D4 as bob.
  2. A hint posted to node 1 names D3; a push asked of node 2 rings D3 alone first (D2 hears
     nothing for 2 s) and D3 takes the call: the hint, kept in the store, ordered node 2's push.
  3. Refusals that leave the call on D3: D4 (bob) dials *11 at node 1 (403); a stranger sends
     node 2 a pull naming the call with a forged token (403).
  4. D dials *11 at node 1, which does not serve the call: node 1 bridges the INVITE to node 2,
     C gets a re-INVITE on its unchanged dialog with D's SDP, D gets 200 and D3 a BYE.
Exit 0 when all hold; each failure is named.
"""
import http.client
import json
import random
import re
import socket
import sys
import threading
import time

N1, N2, C, H1, H2 = (int(x) for x in sys.argv[1:6])
TOKEN = open(sys.argv[6]).read().strip()
HOST = "127.0.0.1"
DOM = "qrxfer.test"
fails = []


def fail(what):
    print("FAIL: " + what, flush=True)
    fails.append(what)


def hdr(msg, name):
    m = re.search(r"^" + name + r":\s*(.*?)\r$", msg, re.M | re.I)
    return m.group(1) if m else ""


def hdrs(msg, name):
    return re.findall(r"^" + name + r":\s*(.*?)\r$", msg, re.M | re.I)


def body(msg):
    return msg.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in msg else ""


def sdp(port):
    return (f"v=0\r\no=x {port} 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def branch():
    return "z9hG4bK" + "".join(random.choice("0123456789abcdef") for _ in range(16))


def response(req, status, phrase, port, tag, extra="", sdp_body=""):
    """A response to req, its Vias, From, Call-ID and CSeq copied, To tagged."""
    to = hdr(req, "To")
    if ";tag=" not in to:
        to += f";tag={tag}"
    ct = "Content-Type: application/sdp\r\n" if sdp_body else ""
    return (f"SIP/2.0 {status} {phrase}\r\n" + "".join(f"Via: {v}\r\n" for v in hdrs(req, "Via")) +
            f"From: {hdr(req, 'From')}\r\nTo: {to}\r\nCall-ID: {hdr(req, 'Call-ID')}\r\n"
            f"CSeq: {hdr(req, 'CSeq')}\r\nContact: <sip:x@{HOST}:{port}>\r\n{extra}{ct}"
            f"Content-Length: {len(sdp_body)}\r\n\r\n{sdp_body}")


class Pbx(threading.Thread):
    """Registrar (200 with the contact and its expiry) and C (answers every INVITE with SDP,
    notes what each INVITE offered, 200 to anything else)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((HOST, port))
        self.s.settimeout(0.2)
        self.port = port
        self.invites = []  # (Call-ID, From tag, has To tag, body)
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                data, peer = self.s.recvfrom(65535)
            except socket.timeout:
                continue
            msg = data.decode("utf-8", "replace")
            m = re.match(r"(\S+) \S+ SIP/2\.0", msg)
            if not m:
                continue
            method = m.group(1)
            if method == "ACK":
                continue
            if method == "REGISTER":
                contact = re.search(r"<([^>]+)>", hdr(msg, "Contact")).group(1)
                out = response(msg, 200, "OK", self.port, "reg",
                               f"Contact: <{contact}>;expires=3600\r\n")
                out = out.replace(f"Contact: <sip:x@{HOST}:{self.port}>\r\n", "", 1)
            elif method == "INVITE":
                ftag = re.search(r"tag=([^;>\s]+)", hdr(msg, "From"))
                self.invites.append((hdr(msg, "Call-ID"), ftag.group(1) if ftag else "",
                                     ";tag=" in hdr(msg, "To"), body(msg)))
                out = response(msg, 200, "OK", self.port, "c-tag", sdp_body=sdp(40000))
            else:
                out = response(msg, 200, "OK", self.port, "c-tag")
            self.s.sendto(out.encode(), peer)


class Phone:
    """A phone on a raw UDP socket of its own: its flow, and its contact."""

    def __init__(self, aor, rtp):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((HOST, 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.aor, self.rtp, self.n = aor, rtp, 0
        self.tag = f"t{self.port}"

    def send(self, text, port):
        self.s.sendto(text.encode(), (HOST, port))

    def recv(self, want, seconds=8.0, answer_bye=True):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, _ = self.s.recvfrom(65535)
            except socket.timeout:
                continue
            msg = data.decode("utf-8", "replace")
            if re.match(want, msg):
                return msg
        return None

    def request(self, method, ruri, to, cid, extra="", sdp_body=""):
        self.n += 1
        ct = "Content-Type: application/sdp\r\n" if sdp_body else ""
        return (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{self.port};branch={branch()};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{self.aor}>;tag={self.tag}\r\nTo: {to}\r\n"
                f"Call-ID: {cid}\r\nCSeq: {self.n} {method}\r\n"
                f"Contact: <sip:{self.aor.split('@')[0]}@{HOST}:{self.port}>\r\n{extra}{ct}"
                f"Content-Length: {len(sdp_body)}\r\n\r\n{sdp_body}")

    def register(self, node):
        self.send(self.request("REGISTER", f"sip:{DOM}", f"<sip:{self.aor}>",
                               f"reg-{self.port}@{HOST}", "Expires: 3600\r\n"), node)
        r = self.recv(r"SIP/2\.0 [2-6]\d\d")
        return bool(r and r.startswith("SIP/2.0 200"))

    def invite(self, node, ruri, to):
        """INVITE with an offer: the final response (ACKed if 2xx), or None."""
        cid = f"inv-{self.port}-{self.n}@{HOST}"
        self.send(self.request("INVITE", ruri, to, cid, sdp_body=sdp(self.rtp)), node)
        r = self.recv(r"SIP/2\.0 [2-6]\d\d", 15)
        if r and r.startswith("SIP/2.0 2"):
            target = re.search(r"<([^>]+)>", hdr(r, "Contact")).group(1)
            ack = (f"ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{self.port};branch={branch()}\r\n"
                   f"Max-Forwards: 70\r\nFrom: {hdr(r, 'From')}\r\nTo: {hdr(r, 'To')}\r\n"
                   f"Call-ID: {cid}\r\nCSeq: {hdr(r, 'CSeq').split()[0]} ACK\r\nContent-Length: 0\r\n\r\n")
            self.send(ack, node)
        return r

    def answer(self, inv, peer_port):
        self.send(response(inv, 200, "OK", self.port, self.tag, sdp_body=sdp(self.rtp)), peer_port)

    def wait_bye(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, peer = self.s.recvfrom(65535)
            except socket.timeout:
                continue
            msg = data.decode("utf-8", "replace")
            if msg.startswith("BYE "):
                self.s.sendto(response(msg, 200, "OK", self.port, self.tag).encode(), peer)
                return msg
        return None


def api(port, method, path, payload=None):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    data = json.dumps(payload).encode() if payload is not None else (b"" if method == "POST" else None)
    conn.request(method, path, body=data, headers={"Authorization": "Bearer " + TOKEN,
                                                   "Content-Type": "application/json"})
    r = conn.getresponse()
    out = r.status, r.read()
    conn.close()
    return out


pbx = Pbx(C)
pbx.start()
try:
    a = Phone(f"alice@{DOM}", 41000)
    d, d2, d3 = Phone(f"alice@{DOM}", 42000), Phone(f"alice@{DOM}", 43000), Phone(f"alice@{DOM}", 44000)
    d4 = Phone(f"bob@{DOM}", 45000)
    # 1. A registers and calls through node 2 (a call's owner is the AOR registered on the
    # flow its INVITE came on); the devices register through node 1.
    if not a.register(N2):
        fail("A could not register through node 2")
    r = a.invite(N2, f"sip:carol@{DOM}", f"<sip:carol@{DOM}>")
    if not r or not r.startswith("SIP/2.0 200"):
        fail(f"A's call through node 2: {r.splitlines()[0] if r else 'no answer'}")
        raise SystemExit
    far_cid, far_ftag = pbx.invites[0][0], pbx.invites[0][1]
    for p, name in ((d, "D"), (d2, "D2"), (d3, "D3"), (d4, "D4")):
        if not p.register(N1):
            fail(f"{name} could not register through node 1")
    call = None
    for _ in range(50):
        st, b = api(H2, "GET", "/v1/calls")
        calls = json.loads(b).get("calls", []) if st == 200 else []
        call = next((c["id"] for c in calls if c.get("state") == "answered"), None)
        if call:
            break
        time.sleep(0.1)
    if not call:
        fail("node 2 lists no answered call")
        raise SystemExit
    time.sleep(0.3)  # the bindings and the call's AOR are written within 50 ms

    # 2. The hint goes to node 1, the push to node 2.
    st, b = api(H1, "POST", "/v1/devices/near",
                {"aor": f"alice@{DOM}", "device": f"sip:alice@{HOST}:{d3.port}"})
    if st != 200:
        fail(f"hint to node 1: {st} {b[:80]}")
    time.sleep(0.2)
    st, b = api(H2, "POST", f"/v1/calls/{call}/moves?to=mine")
    if st != 201:
        fail(f"push asked of node 2: {st} {b[:80]}")
    inv3 = d3.recv(r"INVITE ", 5)
    other = d2.recv(r"INVITE ", 2) or d.recv(r"INVITE ", 0.3)
    if not inv3:
        fail("the hinted device D3 was not rung")
    if other:
        fail("a device without the hint rang at once: node 2 did not see node 1's hint")
    if inv3:
        d3.answer(inv3, N2)
        if not d3.recv(r"ACK ", 5):
            fail("D3 got no ACK for its answer")
    if not a.wait_bye(5):
        fail("A was not hung up after the push")
    for p in (d, d2):  # the others rang after near_ring: they are cancelled
        if p.recv(r"INVITE ", 0.1):
            p.recv(r"CANCEL ", 3)
    time.sleep(0.5)

    # 3. Refusals: another AOR's device, and a forged node-to-node pull.
    r = d4.invite(N1, f"sip:*11@{DOM}", f"<sip:*11@{DOM}>")
    if not r or not r.startswith("SIP/2.0 403"):
        fail(f"bob's device pulled at node 1: {r.splitlines()[0] if r else 'no answer'}, want 403")
    stranger = Phone(f"mallory@{DOM}", 46000)
    forged = f"*11.{call}." + "A" * 72
    r = stranger.invite(N2, f"sip:{forged}@{HOST}:{N2}", f"<sip:*11@{DOM}>")
    if not r or not r.startswith("SIP/2.0 403"):
        fail(f"a forged node-to-node pull at node 2: {r.splitlines()[0] if r else 'no answer'}, want 403")
    n_inv = len(pbx.invites)

    # 4. D pulls at node 1; the call is on node 2.
    r = d.invite(N1, f"sip:*11@{DOM}", f"<sip:*11@{DOM}>")
    if not r or not r.startswith("SIP/2.0 200"):
        fail(f"D's pull at node 1: {r.splitlines()[0] if r else 'no answer'}, want 200")
    re_inv = [x for x in pbx.invites[n_inv:] if x[2]]
    if not re_inv:
        fail("C got no re-INVITE for the pull")
    elif re_inv[-1][0] != far_cid or re_inv[-1][1] != far_ftag:
        fail(f"C's dialog changed: {re_inv[-1][:2]}, was {(far_cid, far_ftag)}")
    elif f"m=audio {d.rtp} " not in re_inv[-1][3]:
        fail("C's re-INVITE does not carry D's media")
    if not d3.wait_bye(5):
        fail("D3 was not hung up after the pull")
finally:
    pbx.stop = True
if fails:
    print(f"{len(fails)} failed", flush=True)
    sys.exit(1)
print("own devices across nodes: ok", flush=True)
