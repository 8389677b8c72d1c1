#!/usr/bin/env python3
"""A call through node 1, its in-dialog requests sent to node 2 (as a load balancer's failover
may, or when another node took the call over): node 2 must pass them on to node 1, which serves
the call, and the answers must come back. Plays phone A and the PBX C on UDP, 127.0.0.1.

misroute.py N1 N2 A_PORT C_PORT: N1, N2 are the nodes' SIP ports; C_PORT is both nodes' upstream.
Checks, in order: the call comes up through node 1; A's re-INVITE sent to node 2 reaches C and
its 200 comes back to A; A's ACK for it, sent to node 2, reaches C; A's BYE sent to node 2
reaches C and its 200 comes back to A. Exit 0 when all hold; each failure is named.
"""
import random
import re
import socket
import sys
import time

N1, N2, A, C = (int(x) for x in sys.argv[1:5])
HOST = "127.0.0.1"
fails = []


def sock(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, port))
    s.settimeout(0.2)
    return s


a, c = sock(A), sock(C)


def hdr(msg, name):
    m = re.search(r"^" + name + r":\s*(.*?)\r$", msg, re.M | re.I)
    return m.group(1) if m else ""


def recv(s, want, seconds=8.0):
    """The first message on s whose start line matches want (a regexp), answering nothing."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        msg = data.decode("utf-8", "replace")
        if re.match(want, msg):
            return msg, peer
    return None, None


def sdp(port):
    return (f"v=0\r\no=x {port} 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n")


def request(method, ruri, cseq, to, body="", extra=""):
    branch = "z9hG4bK" + "".join(random.choice("0123456789abcdef") for _ in range(12))
    ct = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{A};branch={branch}\r\n"
            f"From: <sip:alice@{HOST}:{A}>;tag=a-tag\r\nTo: {to}\r\nCall-ID: {CALL_ID}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:alice@{HOST}:{A}>\r\nMax-Forwards: 70\r\n"
            f"{extra}{ct}Content-Length: {len(body)}\r\n\r\n{body}").encode()


def answer(msg, peer, status, totag="", body=""):
    lines = [f"SIP/2.0 {status}"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for m in re.finditer(r"^(" + name + r"):\s*(.*?)\r$", msg, re.M | re.I):
            v = m.group(2)
            if name == "To" and totag and ";tag=" not in v:
                v += f";tag={totag}"
            lines.append(f"{m.group(1)}: {v}")
    if body:
        lines.append(f"Contact: <sip:carol@{HOST}:{C}>")
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    c.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), peer)


CALL_ID = f"misroute-{random.randrange(1 << 30)}@{HOST}"
to = f"<sip:carol@{HOST}:{C}>"
a.sendto(request("INVITE", f"sip:carol@{HOST}:{C}", 1, to, sdp(20000)), (HOST, N1))
inv, node = recv(c, r"INVITE ")
if not inv:
    sys.exit("FAIL: C got no INVITE from node 1")
answer(inv, node, "200 OK", "c-tag", sdp(30000))
ok, _ = recv(a, r"SIP/2\.0 200")
if not ok:
    sys.exit("FAIL: A got no 200 for its INVITE through node 1")
to = hdr(ok, "To")
contact = re.search(r"<([^>]+)>", hdr(ok, "Contact")).group(1)
a.sendto(request("ACK", contact, 1, to), (HOST, N1))
if not recv(c, r"ACK ")[0]:
    sys.exit("FAIL: C got no ACK")
time.sleep(0.5)  # the call's row and state are in the store

# A's re-INVITE, sent to node 2
a.sendto(request("INVITE", contact, 2, to, sdp(20002)), (HOST, N2))
reinv, node = recv(c, r"INVITE ")
if not reinv or "m=audio 20002" not in reinv:
    fails.append("C did not get A's re-INVITE sent to node 2")
else:
    answer(reinv, node, "200 OK", body=sdp(30000))
    ok, _ = recv(a, r"SIP/2\.0 200")
    if not ok or "INVITE" not in hdr(ok, "CSeq"):
        fails.append("A got no 200 for its re-INVITE sent to node 2")
    a.sendto(request("ACK", contact, 2, to), (HOST, N2))
    if not recv(c, r"ACK ")[0]:
        fails.append("C got no ACK for the re-INVITE (A's ACK went to node 2)")

# A's BYE, sent to node 2
a.sendto(request("BYE", contact, 3, to), (HOST, N2))
bye, node = recv(c, r"BYE ")
if not bye:
    fails.append("C did not get A's BYE sent to node 2")
else:
    answer(bye, node, "200 OK")
    ok, _ = recv(a, r"SIP/2\.0 200")
    if not ok or "BYE" not in hdr(ok, "CSeq"):
        fails.append("A got no 200 for its BYE sent to node 2")

for f in fails:
    print("FAIL:", f)
if not fails:
    print("misroute: re-INVITE, its ACK and BYE sent to node 2 served by node 1")
sys.exit(1 if fails else 0)
