#!/usr/bin/env python3
"""tests/move/mv.py: the admin API and SIP pokes for tests/move/move.test.

  mv.py HTTPPORT TOKENFILE call [SECS]            id of the one answered call (waits)
  mv.py HTTPPORT TOKENFILE start CALLID           POST a move: prints "id token code show"
                                                  (show: the show link's secret)
  mv.py HTTPPORT TOKENFILE move-of CALLID [SECS]  id of the call's stored move (waits)
  mv.py HTTPPORT TOKENFILE wait MOVEID STATES SECS   waits for a state in STATES (a,b,..)
                                                  and prints it; exit 1 at the deadline
  mv.py HTTPPORT TOKENFILE get MOVEID             the move's JSON
  mv.py HTTPPORT TOKENFILE steps MOVEID           its event steps, one "step: detail" a line
  mv.py HTTPPORT TOKENFILE qr MOVEID FILE         its QR as PNG into FILE
  mv.py HTTPPORT TOKENFILE call-in STATE [SECS]   id of a call in STATE (waits)
  mv.py HTTPPORT TOKENFILE far-cid CALLID         the SIP Call-ID of the call's far dialog
  mv.py HTTPPORT TOKENFILE http METHOD PATH [CTYPE FILE]
                                                  one request (FILE as body): prints
                                                  "status error-text" (the JSON "error")
  mv.py invite SIPPORT SRCIP RURI [SRCIP RURI...] an INVITE to each RURI from a new port of its
                                                  SRCIP, in order: prints "status retry-after"
                                                  a line
  mv.py HTTPPORT TOKENFILE raw METHOD PATH [CTYPE FILE]
                                                  one request: prints "status body" (one line)
  mv.py HTTPPORT TOKENFILE burst N METHOD PATH CTYPE FILE
                                                  N requests back to back: prints the statuses
  mv.py HTTPPORT TOKENFILE each METHOD PATH FILE...
                                                  one request a FILE (image/jpeg if .jpg, else
                                                  image/png), back to back: prints
                                                  "status[:error]" each (spaces as _)
  mv.py HTTPPORT TOKENFILE barcode MOVEID FILE    its numeric code as a Code 128 PNG
  mv.py blankpng FILE                             a white 64x64 PNG (no code in it)
  mv.py bigpng FILE W H                           a white W x H PNG: a few KB that decode to
                                                  W*H bytes (a decompression bomb)
  mv.py bombs SIPPORT RURI FROM FILE...           one out-of-dialog MESSAGE a FILE, each from
                                                  its own UDP port, all sent at once; prints
                                                  each final status in FILE order ("timeout"
                                                  if none in 20 s)
  mv.py png2jpeg IN.png OUT.jpg                   the PNG as a baseline grayscale JPEG
                                                  (quality about 90; no imaging library here)
  mv.py hwm PID                                   VmHWM and VmRSS of PID in KiB
  mv.py poke PORT CALLID [PORT CALLID...]         an OPTIONS on CALLID to a SIPp on PORT (for
                                                  each pair, sent back to back): a go signal
                                                  for a scenario waiting for it
  mv.py nearcall SIPPORT MYPORT UPPORT CALLID OUT [SECS]
                                                  A as a plain UDP phone: calls
                                                  sip:far@127.0.0.1:UPPORT through qrxferd,
                                                  writes the raw body of the first MESSAGE
                                                  it gets into OUT (its Content-Type into
                                                  OUT.type), answers 200, hangs up (BYE, 200)
  mv.py mimepart BODY CTYPE PARTTYPE OUT [N]    the first (Nth) part of type PARTTYPE of a
                                                  multipart BODY (its Content-Type CTYPE)
                                                  into OUT; exit 1 if there is none
  mv.py sipmsg SIPPORT RURI FROM TO CALLID CSEQ CTYPE FILE [SECS]
                                                  a MESSAGE with FILE as body over UDP: prints
                                                  the final status (a camera image in a MESSAGE)
Every wait has a deadline; only 127.0.0.1 is ever contacted.
"""
import json
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib


def api(port, token, method, path, body=None, ctype=None):
    headers = {"Authorization": "Bearer " + token}
    if ctype:
        headers["Content-Type"] = ctype
    req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), method=method,
                                 data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def js(port, token, path):
    st, body = api(port, token, "GET", path)
    if st != 200:
        raise SystemExit("GET %s: %d %s" % (path, st, body[:200]))
    return json.loads(body)


def poll(secs, fn):
    deadline = time.monotonic() + secs
    while True:
        v = fn()
        if v is not None:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def poke_msg(port, callid):
    return port, (("OPTIONS sip:go@127.0.0.1:%s SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-poke-%d\r\n"
            "From: <sip:test@127.0.0.1>;tag=poke\r\n"
            "To: <sip:go@127.0.0.1>\r\n"
            "Call-ID: %s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n") % (port, int(time.time() * 1000), callid)).encode()


def sipmsg(port, ruri, frm, to, callid, cseq, ctype, path, secs="8"):
    body = open(path, "rb").read()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    me = s.getsockname()[1]
    head = ("MESSAGE %s SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-msg-%d\r\n"
            "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s MESSAGE\r\n"
            "Max-Forwards: 70\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n") % (
                ruri, me, int(time.time() * 1000), frm, to, callid, cseq, ctype, len(body))
    msg = head.encode() + body
    deadline = time.monotonic() + float(secs)
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        s.sendto(msg, ("127.0.0.1", int(port)))
        try:
            while True:
                data = s.recv(65536).decode("latin-1")
                status = int(data.split(" ", 2)[1])
                if status >= 200:
                    print(status)
                    return 0
        except (socket.timeout, ValueError, IndexError):
            continue
    print("timeout")
    return 1


def split_sip(data):
    """(start line, {lower-case header: value}, body) of one datagram."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs.setdefault(k.strip().lower(), v.strip())
    n = int(hdrs.get("content-length", len(body)))
    return lines[0], hdrs, body[:n]


def nearcall(port, myport, upport, callid, out, secs="20"):
    """A, a phone that keeps the raw bytes of the code MESSAGE (SIPp's traces stop at a NUL)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(myport)))
    s.settimeout(0.5)
    me = "127.0.0.1:%s" % myport
    sdp = ("v=0\r\no=alice 1 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")

    def req(method, ruri, cseq, to, body="", ctype=None):
        return ("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-a-%s-%d\r\n"
                "From: <sip:alice@%s>;tag=a-dialog-tag\r\nTo: %s\r\nCall-ID: %s\r\n"
                "CSeq: %d %s\r\nContact: <sip:alice@%s>\r\nMax-Forwards: 70\r\n%s"
                "Content-Length: %d\r\n\r\n%s") % (
                    method, ruri, me, method, cseq, me, to, callid, cseq, method, me,
                    "Content-Type: %s\r\n" % ctype if ctype else "", len(body), body)

    deadline = time.monotonic() + float(secs)
    dest = ("127.0.0.1", int(port))
    far = "sip:far@127.0.0.1:%s" % upport
    invite_msg = req("INVITE", far, 1, "<%s>" % far, sdp, "application/sdp").encode()
    bye_msg = b""
    state, to, contact, last_send = "inviting", None, None, 0.0
    while time.monotonic() < deadline:
        if state in ("inviting", "bye") and time.monotonic() - last_send > 0.5:
            s.sendto(invite_msg if state == "inviting" else bye_msg, dest)
            last_send = time.monotonic()
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        start, h, body = split_sip(data)
        if start.startswith("SIP/2.0 "):
            st = int(start.split()[1])
            if state == "inviting" and h.get("cseq", "").endswith("INVITE") and st >= 200:
                if st != 200:
                    print("INVITE answered %d" % st, file=sys.stderr)
                    return 1
                to = h["to"]
                contact = h.get("contact", "<%s>" % far).split("<", 1)[-1].split(">")[0]
                s.sendto(req("ACK", contact, 1, to).encode(), dest)
                state = "up"
            elif state == "bye" and h.get("cseq", "").endswith("BYE") and st >= 200:
                return 0 if st == 200 else 1
            continue
        # a request: 200 to it (the INVITE's 200 again is ACKed above only once)
        resp = "SIP/2.0 200 OK\r\n"
        for k in ("via", "from", "to", "call-id", "cseq"):
            resp += "%s: %s\r\n" % (k.title(), h.get(k, ""))
        s.sendto((resp + "Content-Length: 0\r\n\r\n").encode(), dest)
        if start.startswith("MESSAGE ") and state == "up":
            open(out + ".type", "w").write(h.get("content-type", "") + "\n")
            open(out + ".tmp", "wb").write(body)
            os.rename(out + ".tmp", out)
            bye_msg = req("BYE", contact, 2, to).encode()
            state, last_send = "bye", 0.0
        elif start.startswith("BYE "):
            print("A got a BYE", file=sys.stderr)
            return 1
    print("A: deadline in state %s" % state, file=sys.stderr)
    return 1


def invite(port, ruri, src="127.0.0.1"):
    """An INVITE to RURI from a fresh port of src; prints "status retry-after" of its final
    response (ACKed when it is not a 2xx; a 2xx is not expected here and is ACKed and ended)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    me = s.getsockname()[1]
    branch = "z9hG4bK-inv-%d-%d" % (me, int(time.time() * 1000))
    callid = "guess-%d-%d@%s" % (me, int(time.time() * 1000), src)
    sdp = ("v=0\r\no=g 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
           "m=audio 40010 RTP/AVP 0\r\n") % (src, src)
    head = ("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=%s\r\n"
            "From: <sip:guess@%s>;tag=g%d\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:guess@%s:%d>\r\nMax-Forwards: 70\r\n"
            "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n") % (
                ruri, src, me, branch, src, me, ruri, callid, src, me, len(sdp))
    msg = (head + sdp).encode()
    deadline = time.monotonic() + 10
    s.settimeout(0.5)
    sent = False
    while time.monotonic() < deadline:
        if not sent:
            s.sendto(msg, ("127.0.0.1", int(port)))
        try:
            data = s.recv(65536).decode("latin-1")
        except socket.timeout:
            sent = False
            continue
        sent = True
        try:
            status = int(data.split(" ", 2)[1])
        except (ValueError, IndexError):
            continue
        if status < 200:
            continue
        hdrs = {}
        for line in data.split("\r\n")[1:]:
            if not line:
                break
            k, _, v = line.partition(":")
            hdrs.setdefault(k.strip().lower(), v.strip())
        to = hdrs.get("to", "<%s>" % ruri)
        ack_branch = branch if status >= 300 else branch + "-ack"
        ack = ("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=%s\r\n"
               "From: <sip:guess@%s>;tag=g%d\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\n"
               "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n") % (
                   ruri, src, me, ack_branch, src, me, to, callid)
        s.sendto(ack.encode(), ("127.0.0.1", int(port)))
        print(status, hdrs.get("retry-after", "-").split(";")[0].strip() or "-")
        return 0
    print("timeout -")
    return 1


def bigpng(path, w, h):
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)
    z = zlib.compressobj(9)
    row = b"\0" + b"\xff" * w
    data = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    open(path, "wb").write(png)


def bombs(port, ruri, frm, paths):
    import selectors
    sel = selectors.DefaultSelector()
    stamp = int(time.time() * 1000)
    msgs, socks, status = [], [], {}
    for i, path in enumerate(paths):
        # One socket (one source port) a MESSAGE: limits are per address, not per port.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        me = s.getsockname()[1]
        body = open(path, "rb").read()
        head = ("MESSAGE %s SIP/2.0\r\n"
                "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-bomb-%d-%d\r\n"
                "From: %s;tag=bomb-%d\r\nTo: <%s>\r\nCall-ID: bomb-%d-%d\r\n"
                "CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: image/png\r\n"
                "Content-Length: %d\r\n\r\n") % (ruri, me, stamp, i, frm, i, ruri, stamp, i,
                                                  len(body))
        msgs.append(head.encode() + body)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, i)
    for s, m in zip(socks, msgs):
        s.sendto(m, ("127.0.0.1", int(port)))
    deadline = time.monotonic() + 20
    resend = time.monotonic() + 2
    while len(status) < len(msgs) and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            try:
                data = key.fileobj.recv(65536).decode("latin-1")
                code = int(data.split(" ", 2)[1])
                if code >= 200:
                    status[key.data] = code
            except (OSError, ValueError, IndexError):
                pass
        if time.monotonic() > resend:
            # UDP: what got no final answer yet is sent again, as a UA would.
            for i, m in enumerate(msgs):
                if i not in status:
                    socks[i].sendto(m, ("127.0.0.1", int(port)))
            resend = time.monotonic() + 2
    for s in socks:
        s.close()
    print(" ".join(str(status.get(i, "timeout")) for i in range(len(msgs))))


def blankpng(path):
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)
    raw = b"".join(b"\0" + b"\xff" * 64 for _ in range(64))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    open(path, "wb").write(png)


def png_gray(path):
    """(w, h, rows of 0..255 gray) of a non-interlaced PNG: gray, RGB(A), gray+alpha or palette."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, plte = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, lace = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            plte = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert lace == 0 and depth in (1, 2, 4, 8), "unsupported PNG"
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    bpp = max(1, chans * depth // 8)
    stride = (w * chans * depth + 7) // 8
    raw, rows, prev = zlib.decompress(idat), [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        if depth < 8:
            vals = [(line[x * depth // 8] >> (8 - depth - (x * depth) % 8)) & ((1 << depth) - 1)
                    for x in range(w)]
            if ctype == 3:
                row = [sum(plte[3 * v:3 * v + 3]) // 3 for v in vals]
            else:
                row = [v * 255 // ((1 << depth) - 1) for v in vals]
        elif ctype == 3:
            row = [sum(plte[3 * v:3 * v + 3]) // 3 for v in line]
        else:
            row = [sum(line[x * chans:x * chans + min(chans, 3) if chans >= 3 else x * chans + 1]) //
                   (3 if chans >= 3 else 1) for x in range(w)]
        rows.append(row)
    return w, h, rows


def png2jpeg(src, dst):
    """A baseline JPEG (one gray component) of a PNG. The Huffman tables are our own canonical
    ones (every symbol, no code of all ones), which any decoder reads from the DHT segments."""
    import math
    w, h, rows = png_gray(src)
    base = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40,
            57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35,
            55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112,
            100, 103, 99]
    q = [max(1, min(255, (v * 20 + 50) // 100)) for v in base]  # quality 90
    zz = sorted(range(64), key=lambda i: (i // 8 + i % 8,
                                          (i % 8) if (i // 8 + i % 8) % 2 == 0 else (i // 8)))
    cos = [[math.cos((2 * x + 1) * u * math.pi / 16) * (math.sqrt(0.5) if u == 0 else 1) / 2
            for x in range(8)] for u in range(8)]
    # canonical tables: DC symbols 0..11 at 4 bits; AC 254 symbols at 8 bits, 2 at 9
    dc_syms, ac_syms = list(range(12)), list(range(256))
    dc_bits, ac_bits = [0, 0, 0, 12] + [0] * 12, [0] * 7 + [254, 2] + [0] * 7

    def codes(bits, syms):
        out, code, k = {}, 0, 0
        for n in range(16):
            for _ in range(bits[n]):
                out[syms[k]] = (code, n + 1)
                code, k = code + 1, k + 1
            code <<= 1
        return out
    dc_code, ac_code = codes(dc_bits, dc_syms), codes(ac_bits, ac_syms)
    out = bytearray()
    acc = [0, 0]

    def put(v, n):
        acc[0], acc[1] = (acc[0] << n) | (v & ((1 << n) - 1)), acc[1] + n
        while acc[1] >= 8:
            byte = (acc[0] >> (acc[1] - 8)) & 255
            out.append(byte)
            if byte == 255:
                out.append(0)
            acc[1] -= 8

    def magnitude(v):
        n = abs(v).bit_length()
        return n, (v if v >= 0 else v + (1 << n) - 1)
    pw, ph = (w + 7) // 8 * 8, (h + 7) // 8 * 8
    px = [[rows[min(y, h - 1)][min(x, w - 1)] - 128 for x in range(pw)] for y in range(ph)]
    pred = 0
    for by in range(0, ph, 8):
        for bx in range(0, pw, 8):
            blk = [px[by + y][bx:bx + 8] for y in range(8)]
            tmp = [[sum(cos[u][x] * blk[y][x] for x in range(8)) for u in range(8)] for y in range(8)]
            coef = [0] * 64
            for v in range(8):
                for u in range(8):
                    c = sum(cos[v][y] * tmp[y][u] for y in range(8))
                    coef[v * 8 + u] = int(round(c / q[v * 8 + u]))
            n, bits = magnitude(coef[0] - pred)
            pred = coef[0]
            put(*dc_code[n])
            put(bits, n)
            run = 0
            for k in range(1, 64):
                c = coef[zz[k]]
                if c == 0:
                    run += 1
                    continue
                while run > 15:
                    put(*ac_code[0xF0])
                    run -= 16
                n, bits = magnitude(c)
                put(*ac_code[(run << 4) | n])
                put(bits, n)
                run = 0
            if run:
                put(*ac_code[0x00])
    if acc[1]:
        put((1 << (8 - acc[1])) - 1, 8 - acc[1])

    def seg(marker, body):
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body
    jpg = b"\xff\xd8" + seg(0xDB, bytes([0]) + bytes(q[zz[k]] for k in range(64)))
    jpg += seg(0xC0, struct.pack(">BHHB", 8, h, w, 1) + bytes([1, 0x11, 0]))
    jpg += seg(0xC4, bytes([0x00]) + bytes(dc_bits) + bytes(dc_syms))
    jpg += seg(0xC4, bytes([0x10]) + bytes(ac_bits) + bytes(ac_syms))
    jpg += seg(0xDA, bytes([1, 1, 0x00, 0, 63, 0])) + bytes(out) + b"\xff\xd9"
    open(dst, "wb").write(jpg)


def main(a):
    if a[0] == "blankpng":
        blankpng(a[1])
        return 0
    if a[0] == "bigpng":
        bigpng(a[1], int(a[2]), int(a[3]))
        return 0
    if a[0] == "bombs":
        bombs(a[1], a[2], a[3], a[4:])
        return 0
    if a[0] == "png2jpeg":
        png2jpeg(a[1], a[2])
        return 0
    if a[0] == "hwm":
        f = {}
        for line in open("/proc/%s/status" % a[1]):
            k, _, v = line.partition(":")
            f[k] = v.split()[0] if v.split() else "0"
        print(f.get("VmHWM", "0"), f.get("VmRSS", "0"))
        return 0
    if a[0] == "mimepart":
        import email
        raw = b"Content-Type: " + a[2].encode() + b"\r\n\r\n" + open(a[1], "rb").read()
        msg = email.message_from_bytes(raw)
        nth = int(a[5]) if len(a) > 5 else 1
        for part in (msg.walk() if msg.is_multipart() else []):
            if part.get_content_type() == a[3]:
                nth -= 1
                if nth:
                    continue
                open(a[4], "wb").write(part.get_payload(decode=True))
                return 0
        print("no %s part in %s" % (a[3], a[2]), file=sys.stderr)
        return 1
    if a[0] == "nearcall":
        return nearcall(*a[1:7])
    if a[0] == "sipmsg":
        return sipmsg(*a[1:10])
    if a[0] == "invite":
        # one INVITE per SRCIP RURI pair, in order, each from a new port: one process, so
        # that a slow interpreter start does not stretch the sequence
        rc = 0
        for i in range(2, len(a) - 1, 2):
            rc |= invite(a[1], a[i + 1], a[i])
            sys.stdout.flush()
        return rc
    if a[0] == "poke":
        # Several PORT CALLID pairs: one go signal for all, sent back to back.
        pokes = [poke_msg(a[i], a[i + 1]) for i in range(1, len(a) - 1, 2)]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for port, msg in pokes:
            s.sendto(msg, ("127.0.0.1", int(port)))
        s.close()
        return 0
    port, token = a[0], open(a[1]).read().strip()
    cmd, args = a[2], a[3:]
    if cmd == "call":
        def answered():
            calls = js(port, token, "/v1/calls")["calls"]
            ok = [c["id"] for c in calls if c["state"] == "answered"]
            return ok[0] if ok else None
        cid = poll(float(args[0]) if args else 10, answered)
        if not cid:
            print("no answered call", file=sys.stderr)
            return 1
        print(cid)
    elif cmd == "start":
        # 429: the call is not ready to move yet (its ACK is on the way): ask again
        deadline = time.monotonic() + 5
        while True:
            st, body = api(port, token, "POST", "/v1/calls/%s/moves" % args[0], b"")
            if st != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if st != 201:
            print("POST moves: %d %s" % (st, body[:300]), file=sys.stderr)
            return 1
        m = json.loads(body)
        show = m.get("links", {}).get("show", "/m/none/show").split("/")[-2]
        print(m["id"], m["qr_uri"].split(":", 1)[1].split("@")[0][2:], m["code"], show)
    elif cmd == "far-cid":
        st, body = api(port, token, "GET", "/v1/calls/%s" % args[0])
        cid = json.loads(body).get("far_call_id") if st == 200 else None
        if not cid:
            print("GET /v1/calls/%s: %d, no far_call_id" % (args[0], st), file=sys.stderr)
            return 1
        print(cid)
    elif cmd == "call-in":
        def found():
            calls = js(port, token, "/v1/calls")["calls"]
            ok = [c["id"] for c in calls if c["state"] == args[0]]
            return ok[0] if ok else None
        cid = poll(float(args[1]) if len(args) > 1 else 10, found)
        if not cid:
            print("no call %s" % args[0], file=sys.stderr)
            return 1
        print(cid)
    elif cmd == "http":
        body = open(args[3], "rb").read() if len(args) > 3 else b""
        st, out = api(port, token, args[0], args[1], body, args[2] if len(args) > 2 else None)
        try:
            err = json.loads(out).get("error", "")
        except (ValueError, AttributeError):
            err = ""
        print(st, err)
    elif cmd == "burst":
        # N requests back to back from one process: prints their statuses.
        body = open(args[4], "rb").read()
        print(" ".join(str(api(port, token, args[1], args[2], body, args[3])[0])
                       for _ in range(int(args[0]))))
    elif cmd == "each":
        # One request a FILE, back to back from one process: prints "status[:error]" each,
        # the error's spaces as "_".
        out = []
        for path in args[2:]:
            ctype = "image/jpeg" if path.endswith(".jpg") else "image/png"
            st, body = api(port, token, args[0], args[1], open(path, "rb").read(), ctype)
            try:
                err = json.loads(body).get("error", "")
            except (ValueError, AttributeError):
                err = ""
            out.append("%d:%s" % (st, err.replace(" ", "_")) if err else str(st))
        print(" ".join(out))
    elif cmd == "raw":
        body = open(args[3], "rb").read() if len(args) > 3 else b""
        st, out = api(port, token, args[0], args[1], body, args[2] if len(args) > 2 else None)
        print(st, out.decode("utf-8", "replace").replace("\n", " "))
    elif cmd == "barcode":
        st, body = api(port, token, "GET", "/v1/moves/%s/barcode.png" % args[0])
        if st != 200:
            print("GET barcode.png: %d %s" % (st, body[:200]), file=sys.stderr)
            return 1
        open(args[1], "wb").write(body)
    elif cmd == "move-of":
        def stored():
            ms = js(port, token, "/v1/moves?call=%s" % args[0])["moves"]
            return ms[-1]["id"] if ms else None
        mid = poll(float(args[1]) if len(args) > 1 else 10, stored)
        if not mid:
            print("no move on call %s" % args[0], file=sys.stderr)
            return 1
        print(mid)
    elif cmd == "wait":
        want = args[1].split(",")
        last = [None]

        def reached():
            st, body = api(port, token, "GET", "/v1/moves/%s" % args[0])
            if st == 200:
                last[0] = json.loads(body)["state"]
                return last[0] if last[0] in want else None
            return None
        got = poll(float(args[2]), reached)
        print(got or last[0] or "none")
        return 0 if got else 1
    elif cmd == "get":
        print(json.dumps(js(port, token, "/v1/moves/%s" % args[0]), indent=1))
    elif cmd == "steps":
        for e in js(port, token, "/v1/moves/%s" % args[0]).get("events", []):
            print("%s: %s" % (e["step"], e["detail"]))
    elif cmd == "qr":
        st, body = api(port, token, "GET", "/v1/moves/%s/qr.png" % args[0])
        if st != 200:
            print("GET qr.png: %d %s" % (st, body[:200]), file=sys.stderr)
            return 1
        open(args[1], "wb").write(body)
    else:
        print("unknown command " + cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
