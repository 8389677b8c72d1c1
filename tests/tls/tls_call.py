#!/usr/bin/env python3
"""A phone on SIP over TLS (RFC 3261 section 26.2): OPTIONS, then a call INVITE/200/ACK/BYE
through qrxferd to the far side. Prints what it checked; exits 1 on the first failure.
usage: tls_call.py CAFILE PORT"""
import re
import socket
import ssl
import sys
import uuid

cafile, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=cafile)
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                       server_hostname="127.0.0.1")
lport = sock.getsockname()[1]
buf = b""


def fail(why):
    print("FAIL tls: " + why)
    sys.exit(1)


def read_msg():
    """One SIP message from the stream, framed by Content-Length (RFC 3261 18.3)."""
    global buf
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            fail("qrxferd closed the TLS connection")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        rest += sock.recv(65536)
    buf = rest[n:]
    return head.decode(), rest[:n].decode()


def hdr(head, name):
    m = re.search(r"(?im)^(?:%s)\s*:\s*(.*)$" % name, head)
    return m.group(1).strip() if m else ""


def request(method, uri, call_id, cseq, tags, extra="", body=""):
    via = "Via: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK-%s" % (lport, uuid.uuid4().hex[:12])
    msg = ("%s %s SIP/2.0\r\n%s\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=%s\r\n"
           "To: <sip:bob@qrxfer.test>%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n"
           "Contact: <sips:alice@127.0.0.1:%d;transport=tls>\r\n%sContent-Length: %d\r\n\r\n%s"
           % (method, uri, via, tags[0], (";tag=" + tags[1]) if tags[1] else "", call_id, cseq,
              method, lport, extra, len(body), body))
    sock.sendall(msg.encode())


def final(method):
    while True:
        head, body = read_msg()
        first = head.split("\r\n", 1)[0]
        if not first.startswith("SIP/2.0 "):
            fail("unexpected request while waiting for the %s answer: %s" % (method, first))
        code = int(first.split()[1])
        if code >= 200:
            return code, head, body


request("OPTIONS", "sip:127.0.0.1:%d;transport=tls" % port, "opt-" + uuid.uuid4().hex, 1,
        ("o1", None))
code, _, _ = final("OPTIONS")
if code != 200:
    fail("OPTIONS over TLS answered %d" % code)
print("PASS tls: OPTIONS over TLS answered 200")

sdp = ("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 41000 RTP/AVP 0\r\n")
cid = "tls-" + uuid.uuid4().hex
tags = ["a" + uuid.uuid4().hex[:8], None]
request("INVITE", "sip:bob@qrxfer.test", cid, 1, tags, "Content-Type: application/sdp\r\n", sdp)
code, head, body = final("INVITE")
if code != 200:
    fail("INVITE over TLS answered %d" % code)
if "m=audio" not in body:
    fail("the 200 carries no SDP answer")
tags[1] = re.search(r"tag=([^;>\s]+)", hdr(head, "To|t")).group(1)
contact = re.search(r"<([^>]+)>", hdr(head, "Contact|m")).group(1)
request("ACK", contact, cid, 1, tags)
print("PASS tls: call answered over TLS by the far side, ACKed")
request("BYE", contact, cid, 2, tags)
code, _, _ = final("BYE")
if code != 200:
    fail("BYE over TLS answered %d" % code)
print("PASS tls: BYE over TLS answered 200")
