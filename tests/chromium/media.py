#!/usr/bin/env python3
"""tests/chromium/media.py: the media a watch page plays in tests/chromium/watch.test.

  media.py mp4 FILE SECS          writes a SECS-second H.264 video in MP4 (128x64, 10 frames a
                                  second), made here byte for byte the same on every run: the
                                  machine has no video encoder (no ffmpeg), and H.264 has I_PCM
                                  macroblocks, raw samples a few lines of Python can write. Every
                                  frame is an IDR picture (any position seeks exactly). The top
                                  row of macroblocks shows the frame's number in 8 bits (white 1,
                                  black 0, most significant left), the rest moving colour bars:
                                  a page's picture says which frame it shows (FRAME_BITS).
  media.py serve DIR PORT CERT KEY  serves DIR over HTTPS on 127.0.0.1:PORT with Range
                                  requests (seeking), until killed

Only 127.0.0.1 is used.
"""
import http.server
import os
import ssl
import struct
import sys


FPS = 10
W, H = 128, 64  # in 16x16 macroblocks: 8 x 4; the top row holds the frame number's 8 bits


class Bits:
    """An H.264 RBSP writer: fixed-width, Exp-Golomb (ue/se), byte alignment, raw bytes."""

    def __init__(self):
        self.out, self.v, self.n = bytearray(), 0, 0  # whole bytes, then n < 8 bits in v

    def u(self, width, val):
        self.v, self.n = (self.v << width) | (val & ((1 << width) - 1)), self.n + width
        while self.n >= 8:
            self.n -= 8
            self.out.append((self.v >> self.n) & 0xFF)
        self.v &= (1 << self.n) - 1

    def ue(self, val):
        x = val + 1
        self.u(2 * x.bit_length() - 1, x)

    def se(self, val):
        self.ue(2 * val - 1 if val > 0 else -2 * val)

    def align(self):
        if self.n:
            self.u(8 - self.n, 0)

    def raw(self, data):  # byte-aligned only
        self.out += data

    def trailing(self):
        self.u(1, 1)
        self.align()

    def data(self):
        return bytes(self.out)


def nal(kind, rbsp):
    """A NAL unit (nal_ref_idc 3) with emulation prevention: no 00 00 0x (x <= 3) inside."""
    out, zeros = bytearray([0x60 | kind]), 0
    if b"\0\0" not in rbsp:
        return bytes(out + rbsp)
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def sps():
    b = Bits()
    b.u(8, 66)    # profile_idc: Baseline
    b.u(8, 0xC0)  # constraint_set0 and set1
    b.u(8, 30)    # level_idc 3.0
    b.ue(0)       # seq_parameter_set_id
    b.ue(0)       # log2_max_frame_num_minus4
    b.ue(2)       # pic_order_cnt_type 2: output in decoding order
    b.ue(1)       # max_num_ref_frames
    b.u(1, 0)     # gaps_in_frame_num_value_allowed_flag
    b.ue(W // 16 - 1)
    b.ue(H // 16 - 1)
    b.u(1, 1)     # frame_mbs_only_flag
    b.u(1, 1)     # direct_8x8_inference_flag
    b.u(1, 0)     # frame_cropping_flag
    b.u(1, 0)     # vui_parameters_present_flag
    b.trailing()
    return nal(7, b.data())


def pps():
    b = Bits()
    b.ue(0)       # pic_parameter_set_id
    b.ue(0)       # seq_parameter_set_id
    b.u(1, 0)     # entropy_coding_mode_flag: CAVLC
    b.u(1, 0)     # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)       # num_slice_groups_minus1
    b.ue(0)       # num_ref_idx_l0_default_active_minus1
    b.ue(0)       # num_ref_idx_l1_default_active_minus1
    b.u(1, 0)     # weighted_pred_flag
    b.u(2, 0)     # weighted_bipred_idc
    b.se(0)       # pic_init_qp_minus26
    b.se(0)       # pic_init_qs_minus26
    b.se(0)       # chroma_qp_index_offset
    b.u(1, 1)     # deblocking_filter_control_present_flag
    b.u(1, 0)     # constrained_intra_pred_flag
    b.u(1, 0)     # redundant_pic_cnt_present_flag
    b.trailing()
    return nal(8, b.data())


def frame_mb(i, mx, my):
    """Macroblock (mx, my) of frame i: its 256 Y, 64 Cb and 64 Cr samples."""
    if my == 0:  # the frame number, bit 7 leftmost
        y = 235 if (i >> (7 - mx)) & 1 else 16
        return bytes([y] * 256 + [128] * 128)
    hue = (mx + i) % 8  # bars that move one macroblock a frame
    cb, cr = 64 + 16 * hue, 192 - 16 * hue
    return bytes([60 + 20 * my] * 256 + [cb] * 64 + [cr] * 64)


def idr(i):
    """Frame i as one IDR slice of I_PCM macroblocks."""
    b = Bits()
    b.ue(0)        # first_mb_in_slice
    b.ue(7)        # slice_type: I, all of the picture
    b.ue(0)        # pic_parameter_set_id
    b.u(4, 0)      # frame_num
    b.ue(i % 2)    # idr_pic_id: two IDR pictures in a row differ
    b.u(1, 0)      # no_output_of_prior_pics_flag
    b.u(1, 0)      # long_term_reference_flag
    b.se(0)        # slice_qp_delta
    b.ue(1)        # disable_deblocking_filter_idc: off
    for my in range(H // 16):
        for mx in range(W // 16):
            b.ue(25)   # mb_type I_PCM
            b.align()  # pcm_alignment_zero_bits
            b.raw(frame_mb(i, mx, my))
    b.trailing()
    return nal(5, b.data())


def box(kind, *parts):
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full(kind, version, flags, *parts):
    return box(kind, struct.pack(">I", version << 24 | flags), *parts)


MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def make_mp4(path, secs):
    n = int(secs * FPS)
    ps, pp = sps(), pps()
    samples = [struct.pack(">I", len(x)) + x for x in (idr(i) for i in range(n))]
    dur = n * 1000 // FPS  # ms: the movie's and the media's timescale is 1000
    avcc = box(b"avcC", bytes([1, 66, 0xC0, 30, 0xFF, 0xE1]), struct.pack(">H", len(ps)), ps,
               bytes([1]), struct.pack(">H", len(pp)), pp)
    avc1 = box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", W, H),
               struct.pack(">II", 0x480000, 0x480000), bytes(4), struct.pack(">H", 1), bytes(32),
               struct.pack(">Hh", 0x18, -1), avcc)

    def moov(offset):
        stbl = box(b"stbl", full(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
                   full(b"stts", 0, 0, struct.pack(">III", 1, n, 1000 // FPS)),
                   full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, n, 1)),
                   full(b"stsz", 0, 0, struct.pack(">II", 0, n),
                        b"".join(struct.pack(">I", len(x)) for x in samples)),
                   full(b"stco", 0, 0, struct.pack(">II", 1, offset)))
        minf = box(b"minf", full(b"vmhd", 0, 1, bytes(8)),
                   box(b"dinf", full(b"dref", 0, 0, struct.pack(">I", 1), full(b"url ", 0, 1))),
                   stbl)
        mdia = box(b"mdia", full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, 1000, dur, 0x55C4, 0)),
                   full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0"), minf)
        trak = box(b"trak", full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, dur), bytes(8),
                                 struct.pack(">hhhH", 0, 0, 0, 0), MATRIX,
                                 struct.pack(">II", W << 16, H << 16)), mdia)
        mvhd = full(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, 1000, dur, 0x10000, 0x100),
                    bytes(10), MATRIX, bytes(24), struct.pack(">I", 2))
        return box(b"moov", mvhd, trak)

    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    head = len(ftyp) + len(moov(0)) + 8
    with open(path, "wb") as f:
        f.write(ftyp + moov(head))
        f.write(struct.pack(">I4s", 8 + sum(len(x) for x in samples), b"mdat"))
        for x in samples:
            f.write(x)


class Ranged(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        size = os.path.getsize(path)
        f = open(path, "rb")
        rng = self.headers.get("Range", "")
        start, end = 0, size - 1
        if rng.startswith("bytes="):
            a, _, b = rng[6:].split(",")[0].partition("-")
            if a:
                start = int(a)
                end = int(b) if b else size - 1
            elif b:
                start = max(0, size - int(b))
            if start >= size:
                self.send_error(416)
                f.close()
                return None
            end = min(end, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        else:
            self.send_response(200)
        self.send_header("Content-Type", "video/mp4" if path.endswith(".mp4") else
                         "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        f.seek(start)
        self._left = end - start + 1
        return f

    def copyfile(self, src, dst):
        left = getattr(self, "_left", None)
        while left is None or left > 0:
            chunk = src.read(65536 if left is None else min(65536, left))
            if not chunk:
                break
            dst.write(chunk)
            if left is not None:
                left -= len(chunk)


def serve(d, port, cert, key):
    os.chdir(d)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Ranged)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "mp4":
        make_mp4(sys.argv[2], float(sys.argv[3]))
    else:
        serve(*sys.argv[2:6])
