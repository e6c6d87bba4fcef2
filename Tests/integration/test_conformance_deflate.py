"""The Autobahn testsuite's permessage-deflate cases (12.1.1–12.5.18 and 13.1.1–13.7.18, 216 in
all) against `echo://`, one pytest id per Autobahn case.

The client is written here from RFC 6455 and RFC 7692 with nothing but sockets and Python's zlib,
independent of the `websockets` library the other compression tests use: it sends the offer, checks
the 101's `Sec-WebSocket-Extensions` against RFC 7692 §7.1, compresses each message as raw DEFLATE
with a sync flush and the trailing 00 00 ff ff removed (§7.2.1), with the window and context
takeover agreed, and cuts the compressed payload into frames of the case's auto-fragment size
(RSV1 on the first frame only, §6.1). Every echoed message is read frame by frame (RSV1, the
fragments, control frames in between), inflated with 00 00 ff ff appended (§7.2.2) in the window the
server announced, and compared with what was sent byte for byte, type included.

What each case does, as in Autobahn (autobahntestsuite/case/case12_x_x.py):

- Sizes and auto-fragment sizes, the 18 cases of every subcategory: messages of 16, 64, 256, 1024,
  4096, 8192, 16384, 32768, 65536 and 131072 bytes sent whole (cases .1–.10); 8192, 16384, 32768,
  65536 and 131072 bytes with the compressed payload cut into 256-byte frames (.11–.15); 131072
  bytes cut into 1024-, 4096- and 32768-byte frames (.16–.18). Each message is the next slice of a
  test corpus, wrapping round at its end, sent once the previous one has come back.
- 12.x: the default offer, `permessage-deflate; client_no_context_takeover; client_max_window_bits`,
  with Autobahn's five corpora in its order: 12.1 a large JSON document (text), 12.2 a 512x512
  8-bit grey bitmap (binary), 12.3 German verse (binary), 12.4 a large HTML page (text), 12.5 a
  PDF (binary). Autobahn ships real files (its own JSON report, Lena, Goethe's Faust from Project
  Gutenberg, an HTML report, a paper); they are not in this repository, so equivalents of about
  the same size and kind are generated here, deterministically. Text slices are cut by characters
  (as in the Python 3 testsuite), so a text message of LEN characters may be more bytes than LEN.
- 13.x: the JSON corpus with other offers. Autobahn's offer object always announces
  `client_no_context_takeover; client_max_window_bits` and adds, per subcategory,
  server_no_context_takeover and server_max_window_bits:
  13.1 nothing more; 13.2 server_no_context_takeover; 13.3 server_max_window_bits=8;
  13.4 server_max_window_bits=15; 13.5 server_no_context_takeover; server_max_window_bits=8;
  13.6 server_no_context_takeover; server_max_window_bits=15; 13.7 three offers in order
  (13.5's, 13.2's, 13.1's). (Autobahn's "accept" functions that ask for client_max_window_bits=8
  or 15 and client_no_context_takeover are its server side, used when it tests clients.)

Deviations from Autobahn:

- Message counts. Autobahn sends 1000 messages in every case, some 11 GB of payload each way over
  the 216 cases: measured here, the 1000 messages of one 128 KiB binary case alone take about
  18 s (3 s for 1000 x 16 KiB), and the whole matrix would take around a quarter of an hour,
  against the 90 s this file may take on two cores. So the cases of 16 to 1024
  bytes send Autobahn's 1000 messages, and the larger ones 2 MiB of payload each: 512 messages of
  4 KiB, 256 of 8 KiB, 128 of 16 KiB, 64 of 32 KiB, 32 of 64 KiB, 16 of 128 KiB (COUNTS), which
  goes round every corpus, the 1 MB PDF included, at least once. The whole file then runs in about
  30 s here (up to 50 s with another process keeping one of the two cores busy).
- Context takeover of the client. Autobahn's offer carries the `client_no_context_takeover` hint,
  by which a client says it will not keep its window between messages even if the answer does not
  ask for it (RFC 7692 §7.1.1.2), and a server may rely on that. Autobahn's client ignored its own
  hint when the answer omitted the parameter; this one keeps its word and starts every message
  from an empty window (the server's context takeover is still exercised when agreed).
- A 256-byte window. zlib cannot compress raw DEFLATE in a window of 2^8 bytes. Should an answer
  limit the client to 8 bits, messages are compressed with Huffman coding only (no back
  references), which is valid in any window.
- The server's window is checked: messages are inflated in the window the answer names (2^15 when
  it names none), in steps of half that window, so that a back reference reaching further than
  the agreed window (by more than the step) fails to inflate.
- Declined offers. Autobahn calls a case whose offer the server declines UNIMPLEMENTED; here any
  decline fails, since this gateway runs with `--compression on` and accepts every offer of these
  cases — server_max_window_bits=8 included, which zlib cannot compress in directly (the gateway
  then uses run-length matches only; the 256-byte window is checked as every other window is).

What a 101 must satisfy (RFC 7692 §7.1, RFC 6455 §4.1, §9.1), whatever the gateway's defaults:
at most one extension, permessage-deflate, answering one of the offers; only the four parameters
of §7.1, none twice; the no-context-takeover ones without a value, the window ones with a decimal
8–15 without leading zeros (a quoted-string allowed); server_no_context_takeover present when the
offer has it (§7.1.1.1); server_max_window_bits present, and no larger, when the offer has it
(§7.1.2.1); client_max_window_bits only when the offer has it (§7.1.2.2). Parameters the offer did
not ask for (client_no_context_takeover, server_no_context_takeover, server_max_window_bits) are
the server's to add.
"""
import base64
import functools
import hashlib
import os
import random
import re
import socket
import struct
import zlib
from dataclasses import dataclass

import pytest

from conftest import Gateway

TAIL = b"\x00\x00\xff\xff"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = 30

# Autobahn's (payload length, auto-fragment size) for cases .1 to .18 of every subcategory.
SIZES = [
    (16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0), (32768, 0), (65536, 0),
    (131072, 0),
    (8192, 256), (16384, 256), (32768, 256), (65536, 256), (131072, 256),
    (131072, 1024), (131072, 4096), (131072, 32768),
]
# Messages per case (Autobahn: 1000 everywhere; see the module docstring).
COUNTS = {16: 1000, 64: 1000, 256: 1000, 1024: 1000, 4096: 512, 8192: 256, 16384: 128, 32768: 64,
          65536: 32, 131072: 16}


def autobahn_offer(server_no_context_takeover=False, server_max_window_bits=0):
    """The offer Autobahn's PerMessageDeflateOffer(requestNoContextTakeover, requestMaxWindowBits) sends."""
    offer = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
    if server_no_context_takeover:
        offer += "; server_no_context_takeover"
    if server_max_window_bits:
        offer += "; server_max_window_bits=%d" % server_max_window_bits
    return offer


OFFERS_13 = [
    [autobahn_offer()],
    [autobahn_offer(True)],
    [autobahn_offer(False, 8)],
    [autobahn_offer(False, 15)],
    [autobahn_offer(True, 8)],
    [autobahn_offer(True, 15)],
    [autobahn_offer(True, 8), autobahn_offer(True), autobahn_offer()],
]


# ---------------------------------------------------------------------------------------------
# Test corpora, generated (Autobahn's files are not here): (data, is_text).

def _fit_text(parts, size):
    """The text joined and cut to at most `size` UTF-8 bytes, on a character boundary."""
    return "".join(parts).encode()[:size].decode("utf-8", "ignore")


@functools.lru_cache(None)
def json_corpus():
    """Like Autobahn's data1.json (about 194 KB): a pretty-printed report index of agents and cases."""
    rnd = random.Random(121)
    agents = ["AutobahnPython/0.6.5", "Chrome/29.0.1547.0", "Firefox/24.0a1", "Jetty/9.0.4",
              "Websocksy/0.9 (Zürich)", "ws/8.17 — Node.js", "Gorilla/1.5 ☃", "Tyrus/2.1",
              "libwebsockets/4.3", "µWebSockets/20", "Ratchet/0.4", "SwiftNIO/2.62 (Straße 𝄞)"]
    behaviours = ["OK"] * 12 + ["NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "WRONG CODE"]
    case_ids = []
    for major, subs in [(1, 2), (2, 11), (3, 7), (4, 2), (5, 20), (6, 23), (7, 13), (9, 8),
                        (10, 1), (12, 5), (13, 7)]:
        for sub in range(1, subs + 1):
            for leaf in range(1, rnd.choice([2, 6, 9, 14, 19]) + 1):
                case_ids.append("%d.%d.%d" % (major, sub, leaf))
    parts = ["{\n"]
    for agent in agents:
        parts.append('   "%s": {\n' % agent)
        slug = re.sub(r"[^a-z0-9]+", "_", agent.lower()).strip("_")
        for cid in sorted(rnd.sample(case_ids, 80), key=lambda c: [int(x) for x in c.split(".")]):
            behaviour = rnd.choice(behaviours)
            parts.append(
                '      "%s": {\n         "behavior": "%s",\n         "behaviorClose": "%s",\n'
                '         "duration": %d,\n         "remoteCloseCode": %s,\n'
                '         "reportfile": "%s_case_%s.json"\n      },\n'
                % (cid, behaviour, "OK" if behaviour != "FAILED" else "FAILED BY CLIENT",
                   rnd.choice([1, 2, 3, 4, 5, 7, 12, 30, 72, 2001]),
                   rnd.choice(["null", "null", "1000", "1002", "1007"]), slug, cid.replace(".", "_")))
        parts.append("   },\n")
    parts.append("}\n")
    return _fit_text(parts, 194056), True


@functools.lru_cache(None)
def bitmap_corpus():
    """Like lena512.bmp (263222 bytes): a 512x512 8-bit grey BMP, smooth shapes with grain."""
    rnd = random.Random(122)
    width = height = 512
    palette = b"".join(bytes((g, g, g, 0)) for g in range(256))
    pixels_offset = 14 + 40 + len(palette)
    size = pixels_offset + width * height
    header = b"BM" + struct.pack("<IHHI", size, 0, 0, pixels_offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, width * height, 2835, 2835, 256, 0)
    wave = [int(60 * (1 + ((i * 7919) % 1000) / 1000.0) * ((i % 97) / 97.0)) for i in range(1024)]
    rows = []
    for y in range(height):
        grain = rnd.randbytes(width)
        base = wave[y] + (y >> 2)
        cy = (y - 300) * (y - 300)
        rows.append(bytes(
            (base + (x >> 1) + (90 if (x - 220) * (x - 220) + cy < 14000 else 0) + (grain[x] & 7)
             + wave[(x * y) >> 9 & 1023] // 4) & 0xFF
            for x in range(width)))
    return header + info + palette + b"".join(rows), False


@functools.lru_cache(None)
def verse_corpus():
    """Like pg2229.txt (about 222 KB), sent as binary: German verse in a play's layout."""
    rnd = random.Random(123)
    words = ("ich du er sie es wir ihr und oder nicht doch noch schon nur wohl so wie wenn als da "
             "der die das dem den des ein eine einem mein dein sein kein mit von zu aus bei nach "
             "für über unter vor hinter durch ohne gegen Geist Welt Herz Nacht Licht Tag Himmel "
             "Erde Blut Seele Natur Kraft Zeit Glück Augenblick Tränen Mädchen Straße Größe Fuß "
             "Gretchen Teufel Buch Wissen Kunst Leben Traum Stern Mond Feuer Wasser Luft Quelle "
             "schön süß weiß grün müde froh still tief hoch heiß kühl wüst öde lieblich ewig "
             "ist war sind hat habe kann muss will soll mag möchte weiß seh höre fühle träume "
             "sprechen gehen stehen glauben lieben leben sterben wünschen schwören fließen").split()
    speakers = ["FAUST.", "MEPHISTOPHELES.", "WAGNER.", "MARGARETE.", "MARTHE.", "CHOR DER ENGEL.",
                "DER HERR.", "SCHÜLER.", "VALENTIN.", "HEXE.", "GEIST.", "LIESCHEN."]
    parts = ["Eine Tragödie, erzeugt für die Prüfung der Kompression.\r\n\r\n"]
    scene = 0
    while sum(len(p) for p in parts) < 240000:
        if rnd.random() < 0.03:
            scene += 1
            parts.append("\r\n\r\n%s\r\n\r\n" % rnd.choice(["Nacht.", "Studierzimmer.", "Straße.",
                         "Garten.", "Auerbachs Keller in Leipzig.", "Hexenküche.", "Dom.",
                         "Wald und Höhle.", "Kerker.", "Szene %d." % scene]))
        parts.append("%s\r\n" % rnd.choice(speakers))
        for _ in range(rnd.randint(1, 8)):
            line = " ".join(rnd.choice(words) for _ in range(rnd.randint(4, 9)))
            parts.append("  %s%s%s\r\n" % (line[0].upper(), line[1:], rnd.choice([",", ".", "!", "?", ";", ""])))
        parts.append("\r\n")
    return _fit_text(parts, 222218).encode(), False


@functools.lru_cache(None)
def html_corpus():
    """Like data1.html (about 380 KB): a test report page, mostly a table."""
    rnd = random.Random(124)
    parts = ["<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Conformance Report</title>\n"
             "<style>\nbody { font-family: Segoe UI, Tahoma, Arial, Verdana, sans-serif; }\n"
             "td.case_ok { background-color: #0a0; } td.case_failed { background-color: #900; }\n"
             "td.case_non_strict { background-color: #9a0; } td.case_info { background-color: #4095bf; }\n"
             "table { border-collapse: collapse; } td { padding: 2px 6px; }\n</style>\n</head>\n<body>\n"
             "<h1>Conformance Report</h1>\n<p>Ergebnisse – généré le 2026-05-09 – © les auteurs.</p>\n"
             "<table>\n"]
    kinds = [("case_ok", "Pass"), ("case_ok", "Pass"), ("case_ok", "Pass"), ("case_non_strict", "Non-Strict"),
             ("case_info", "Info"), ("case_failed", "Fail")]
    while sum(len(p) for p in parts) < 400000:
        major, sub, leaf = rnd.randint(1, 13), rnd.randint(1, 20), rnd.randint(1, 18)
        cls, text = rnd.choice(kinds)
        parts.append('<tr><td class="case_id"><a href="#case_desc_%d_%d_%d">Case %d.%d.%d</a></td>'
                     '<td class="%s"><a href="client_case_%d_%d_%d.html">%s</a><br/><span class="case_duration">'
                     '%d ms</span></td><td class="close">%s</td></tr>\n'
                     % (major, sub, leaf, major, sub, leaf, cls, major, sub, leaf, text, rnd.randint(1, 3000),
                        rnd.choice(["1000", "1000", "1002", "None"])))
        if rnd.random() < 0.05:
            parts.append("<tr><td colspan=\"3\" class=\"desc\">Send a text message with payload which is "
                         "not valid UTF-8 in one fragment; expect the connection to fail fast.</td></tr>\n")
    parts.append("</table>\n</body>\n</html>\n")
    return _fit_text(parts, 379709), True


@functools.lru_cache(None)
def pdf_corpus():
    """Like Autobahn's PDF (about 1 MB): objects in clear text around FlateDecode streams."""
    rnd = random.Random(125)
    out = [b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"]
    offsets = []
    number = 0
    words = b"the of and to in is that for it as with was on be by this are from or which an".split()
    while sum(len(p) for p in out) < 1042328:
        number += 1
        offsets.append(sum(len(p) for p in out))
        kind = rnd.random()
        if kind < 0.5:
            text = b" ".join(rnd.choice(words) for _ in range(rnd.randint(300, 2000)))
            ops = b"BT /F1 10 Tf 72 %d Td 12 TL (%s) Tj ET\n" % (rnd.randint(40, 760), text)
            body = zlib.compress(ops * rnd.randint(1, 3), 9)
        elif kind < 0.8:
            body = zlib.compress(rnd.randbytes(rnd.randint(2000, 20000)))   # an embedded image
        else:
            body = None
        if body is None:
            out.append(b"%d 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       b"<< /Font << /F1 5 0 R >> >> /Contents %d 0 R >>\nendobj\n" % (number, number + 1))
        else:
            out.append(b"%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n" % (number, len(body))
                       + body + b"\nendstream\nendobj\n")
    out.append(b"xref\n0 %d\n0000000000 65535 f \n" % (number + 1))
    out.extend(b"%010d 00000 n \n" % o for o in offsets)
    out.append(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (number + 1, offsets[-1]))
    return b"".join(out)[:1042328], False


CORPORA_12 = [json_corpus, bitmap_corpus, verse_corpus, html_corpus, pdf_corpus]


def slices(corpus, length, count):
    """Autobahn's messages: consecutive slices of `length` (characters for text), wrapping round."""
    data, is_text = corpus
    assert len(data) > length
    position = 0
    for _ in range(count):
        end = (position + length) % len(data)
        piece = data[position:end] if end > position else data[position:] + data[:end]
        position = end
        yield piece.encode() if is_text else piece


# ---------------------------------------------------------------------------------------------
# The extension negotiation, checked from the client's side.

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
WINDOW_BITS = re.compile(r"8|9|1[0-5]")
PARAMETERS = ("server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
              "client_max_window_bits")


def parse_extensions(text):
    """RFC 6455 §9.1: [(name, [(parameter, value or None), ...]), ...], names lower-cased,
    quoted-string values unescaped. A syntax error fails the test."""
    elements, i, n = [], 0, len(text)

    def skip_ws(i):
        while i < n and text[i] in " \t":
            i += 1
        return i

    def token(i, what):
        m = TOKEN.match(text, i)
        assert m, f"Sec-WebSocket-Extensions {text!r}: expected {what} at offset {i}"
        return m.group(0), m.end()

    while True:
        i = skip_ws(i)
        if i < n and text[i] == ",":      # empty list elements are allowed (RFC 9110 §5.6.1)
            i += 1
            continue
        if i >= n:
            return elements
        name, i = token(i, "an extension name")
        params = []
        i = skip_ws(i)
        while i < n and text[i] == ";":
            key, i = token(skip_ws(i + 1), "a parameter name")
            value = None
            i = skip_ws(i)
            if i < n and text[i] == "=":
                i = skip_ws(i + 1)
                if i < n and text[i] == '"':
                    i += 1
                    chars = []
                    while True:
                        assert i < n, f"Sec-WebSocket-Extensions {text!r}: unterminated quoted-string"
                        if text[i] == "\\":
                            assert i + 1 < n, f"Sec-WebSocket-Extensions {text!r}: bad escape"
                            chars.append(text[i + 1])
                            i += 2
                        elif text[i] == '"':
                            i += 1
                            break
                        else:
                            chars.append(text[i])
                            i += 1
                    value = "".join(chars)
                    assert TOKEN.fullmatch(value), \
                        f"Sec-WebSocket-Extensions {text!r}: a quoted value must be a token once unquoted (§9.1)"
                else:
                    value, i = token(i, "a parameter value")
                i = skip_ws(i)
            params.append((key.lower(), value))
        assert i >= n or text[i] == ",", f"Sec-WebSocket-Extensions {text!r}: unexpected {text[i]!r} at offset {i}"
        elements.append((name.lower(), params))


@dataclass
class Agreement:
    """What the 101 agreed, as the client must then behave."""
    response: str
    offer: str                        # the offer it answers
    server_no_context_takeover: bool  # we start inflating every message from an empty window
    client_no_context_takeover: bool  # we start compressing every message from an empty window
    server_window_bits: int           # the window the server's messages may refer back into
    client_window_bits: int           # the window we may use


def offer_mismatch(offer, response):
    """Why `response` (parameter → value) cannot be the acceptance of `offer`, or None."""
    if "server_no_context_takeover" in offer and "server_no_context_takeover" not in response:
        return ("the offer has server_no_context_takeover, which a server accepts only by including it "
                "(RFC 7692 §7.1.1.1)")
    if "server_max_window_bits" in offer:
        if "server_max_window_bits" not in response:
            return ("the offer has server_max_window_bits, which a server accepts only by including it "
                    "(RFC 7692 §7.1.2.1)")
        if int(response["server_max_window_bits"]) > int(offer["server_max_window_bits"]):
            return ("server_max_window_bits=%s exceeds the offered %s (RFC 7692 §7.1.2.1: same or smaller)"
                    % (response["server_max_window_bits"], offer["server_max_window_bits"]))
    if "client_max_window_bits" in response and "client_max_window_bits" not in offer:
        return ("client_max_window_bits in the answer to an offer without it "
                "(RFC 7692 §7.1.2.2: MUST NOT)")
    return None


def check_agreement(offers, values):
    """The Agreement a 101 with these Sec-WebSocket-Extensions values makes for our offers (None
    when it declines them all); an unacceptable answer fails the test (RFC 7692 §7.1)."""
    if not values:
        return None
    text = ", ".join(values)
    elements = parse_extensions(text)
    if not elements:
        return None
    assert len(elements) == 1, \
        f"{text!r}: more than one extension accepted; only permessage-deflate was offered (RFC 6455 §9.1)"
    name, params = elements[0]
    assert name == "permessage-deflate", f"{text!r}: {name} was never offered (RFC 6455 §4.1, §9.1)"
    response = {}
    for key, value in params:
        assert key in PARAMETERS, f"{text!r}: {key} is not a parameter of permessage-deflate (RFC 7692 §7.1)"
        assert key not in response, f"{text!r}: {key} twice (RFC 7692 §7.1)"
        if key.endswith("no_context_takeover"):
            assert value is None, f"{text!r}: {key} has no value (RFC 7692 §7.1.1)"
        else:
            assert value is not None and WINDOW_BITS.fullmatch(value), \
                f"{text!r}: {key} needs a value 8-15 without leading zeros in an answer (RFC 7692 §7.1.2)"
        response[key] = value
    reasons = []
    for offer_text in offers:
        (_, offer_params), = parse_extensions(offer_text)
        offer = dict(offer_params)
        why = offer_mismatch(offer, response)
        if why:
            reasons.append(f"[{offer_text}] {why}")
            continue
        return Agreement(
            response=text, offer=offer_text,
            server_no_context_takeover="server_no_context_takeover" in response,
            # Agreed, or promised by our own hint in the offer (§7.1.1.2).
            client_no_context_takeover="client_no_context_takeover" in response or "client_no_context_takeover" in offer,
            server_window_bits=int(response.get("server_max_window_bits", 15)),
            client_window_bits=int(response.get("client_max_window_bits", 15)))
    raise AssertionError(f"the answer {text!r} accepts none of the offers: " + "; ".join(reasons))


# ---------------------------------------------------------------------------------------------
# The client.

def mask(payload, key):
    n = len(payload)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def encode_frame(opcode, payload, fin=True, rsv=0):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + mask(payload, key)


def new_deflater(bits):
    """A raw DEFLATE compressor that keeps within a 2^bits window."""
    if bits >= 9:
        return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits)
    # zlib has no raw 256-byte window; without back references any window will do.
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -9, 8, zlib.Z_HUFFMAN_ONLY)


class DeflateClient:
    def __init__(self, port, offers):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        if offers:
            request += "Sec-WebSocket-Extensions: %s\r\n" % ", ".join(offers)
        self.sock.sendall((request + "\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._receive()
        end = self.buf.index(b"\r\n\r\n")
        head = self.buf[:end].decode("latin-1").split("\r\n")
        self.pos = end + 4
        assert head[0].split(" ")[1] == "101", head[0]
        headers = [(name.strip().lower(), value.strip()) for name, value in (line.split(":", 1) for line in head[1:])]
        single = dict(headers)
        assert single.get("upgrade", "").lower() == "websocket", head
        assert "upgrade" in single.get("connection", "").lower(), head
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert single.get("sec-websocket-accept") == accept, head
        self.agreement = check_agreement(offers, [v for k, v in headers if k == "sec-websocket-extensions"])
        self.deflater = None
        self.inflater = None
        self.history = b""           # the last 32 KiB inflated, for a stream ended by a final block

    # Reading.
    def _receive(self):
        if self.pos and self.pos == len(self.buf):
            self.buf.clear()
            self.pos = 0
        elif self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) - self.pos < n:
            self._receive()
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def recv_frame(self):
        b0, b1 = self._take(2)
        assert not b1 & 0x80, "a server must not mask its frames (RFC 6455 §5.1)"
        n = b1 & 0x7F
        if n == 126:
            n, = struct.unpack("!H", self._take(2))
            assert n >= 126, "length not in its shortest form (RFC 6455 §5.2)"
        elif n == 127:
            n, = struct.unpack("!Q", self._take(8))
            assert 65536 <= n < 1 << 63, "bad 64-bit length (RFC 6455 §5.2)"
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, self._take(n)

    def recv_message(self):
        """(opcode, payload inflated, compressed?, frames) of the next data message."""
        opcode, compressed, parts = None, False, []
        while True:
            fin, rsv, op, payload = self.recv_frame()
            assert not rsv & 3, f"RSV2/RSV3 set ({rsv:03b}) with no extension defining them (RFC 6455 §5.2)"
            if op >= 8:
                assert op in (8, 9, 10), f"reserved opcode {op}"
                assert fin and len(payload) <= 125, "control frames are short and unfragmented (RFC 6455 §5.5)"
                assert not rsv, "RSV1 on a control frame (RFC 7692 §6.1)"
                if op == 9:
                    self.send_frame(10, payload)
                elif op == 8:
                    raise AssertionError(f"the server closed the connection: {payload[:2].hex()} {payload[2:]!r}")
                continue
            if opcode is None:
                assert op in (1, 2), "a continuation frame with no message in progress (RFC 6455 §5.4)"
                opcode, compressed = op, bool(rsv & 4)
                assert not compressed or self.agreement, "RSV1 without permessage-deflate agreed (RFC 6455 §5.2)"
            else:
                assert op == 0, "a new message inside a fragmented one (RFC 6455 §5.4)"
                assert not rsv & 4, "RSV1 on a continuation frame (RFC 7692 §6.1)"
            parts.append(payload)
            if fin:
                break
        data = b"".join(parts)
        return opcode, self.inflate(data) if compressed else data, compressed, len(parts)

    def inflate(self, payload):
        agreed = self.agreement
        bits = agreed.server_window_bits
        if self.inflater is None or agreed.server_no_context_takeover:
            self.inflater = zlib.decompressobj(-bits)
        elif self.inflater.eof:
            # The previous message ended its stream with a final block: a new stream, same window.
            self.inflater = zlib.decompressobj(-bits, zdict=self.history[-(1 << bits):])
        inflater = self.inflater
        # Steps of half the window: a reference further back than the window plus a step must
        # reach past zlib's window, which it refuses ("invalid distance too far back").
        step = (1 << bits) // 2 if bits < 15 else 0
        data, parts = payload + TAIL, []
        try:
            while True:
                part = inflater.decompress(data, step)
                parts.append(part)
                data = inflater.unconsumed_tail
                if inflater.eof or (not data and (not step or len(part) < step)):
                    break
        except zlib.error as e:
            raise AssertionError(
                f"a compressed message from the server does not inflate as agreed (a 2^{bits}-byte window, "
                f"{'no ' if agreed.server_no_context_takeover else ''}context takeover; answer "
                f"{agreed.response!r}): {e}") from None
        if inflater.eof:
            assert inflater.unused_data == TAIL, \
                f"{len(inflater.unused_data) - 4} bytes after the final DEFLATE block of a message"
        out = b"".join(parts)
        if not agreed.server_no_context_takeover:
            self.history = (self.history + out)[-32768:]
        return out

    # Writing.
    def send_frame(self, opcode, payload, fin=True, rsv=0):
        self.sock.sendall(encode_frame(opcode, payload, fin, rsv))

    def deflate(self, data):
        agreed = self.agreement
        if self.deflater is None or agreed.client_no_context_takeover:
            self.deflater = new_deflater(agreed.client_window_bits)
        out = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def send_message(self, opcode, data, fragment_size):
        """Autobahn's sendMessage: the (compressed) payload cut into frames of `fragment_size`."""
        rsv, payload = (4, self.deflate(data)) if self.agreement else (0, data)
        if not fragment_size or len(payload) <= fragment_size:
            self.sock.sendall(encode_frame(opcode, payload, True, rsv))
            return 1
        pieces = [payload[i:i + fragment_size] for i in range(0, len(payload), fragment_size)]
        self.sock.sendall(b"".join(
            encode_frame(opcode if i == 0 else 0, piece, i == len(pieces) - 1, rsv if i == 0 else 0)
            for i, piece in enumerate(pieces)))
        return len(pieces)

    def close(self):
        """A clean close, as Autobahn expects: our 1000 answered by the server's, then its TCP close."""
        self.send_frame(8, struct.pack("!H", 1000))
        while True:
            fin, rsv, op, payload = self.recv_frame()
            if op == 8:
                break
            assert op in (9, 10), f"opcode {op} after our close"
        assert fin and not rsv, "the close frame is a plain control frame"
        assert payload[:2] == struct.pack("!H", 1000), f"close answered with {payload[:2].hex()} {payload[2:]!r}"
        self.sock.settimeout(5)
        try:
            rest = self.sock.recv(1024)
        except ConnectionResetError:
            rest = b""
        assert rest == b"" and self.pos == len(self.buf), "data after the close frame"
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# The cases.

@pytest.fixture(scope="module")
def gateway():
    g = Gateway(["-l", "127.0.0.1", "-p", "0", "-c", "host=echo://", "--compression", "on"])
    yield g
    assert g.stop() == 0


def _cases():
    for j, corpus in enumerate(CORPORA_12, 1):
        for i, (size, fragment) in enumerate(SIZES, 1):
            yield pytest.param(corpus, [autobahn_offer()], size, fragment, id=f"12.{j}.{i}")
    for j, offers in enumerate(OFFERS_13, 1):
        for i, (size, fragment) in enumerate(SIZES, 1):
            yield pytest.param(json_corpus, offers, size, fragment, id=f"13.{j}.{i}")


def describe(data):
    return f"{len(data)} bytes, sha1 {hashlib.sha1(data).hexdigest()[:12]}"


@pytest.mark.parametrize("corpus,offers,size,fragment_size", list(_cases()))
def test_autobahn_deflate_case(gateway, corpus, offers, size, fragment_size):
    corpus = corpus()
    opcode = 1 if corpus[1] else 2
    count = COUNTS[size]
    client = DeflateClient(gateway.port, offers)
    agreed = client.agreement
    assert agreed is not None, f"the gateway runs with --compression on yet declined {offers} (Autobahn: UNIMPLEMENTED)"
    for n, message in enumerate(slices(corpus, size, count)):
        frames_sent = client.send_message(opcode, message, fragment_size)
        got_opcode, got, compressed, frames = client.recv_message()
        where = (f"message {n + 1} of {count} ({describe(message)}, {frames_sent} frame(s) sent; "
                 f"answer {agreed.response!r})")
        assert got_opcode == opcode, f"{where}: echoed with opcode {got_opcode}"
        if got != message:
            diff = next((k for k, (a, b) in enumerate(zip(got, message)) if a != b), min(len(got), len(message)))
            raise AssertionError(f"{where}: echoed {describe(got)} in {frames} frame(s), "
                                 f"{'compressed' if compressed else 'uncompressed'}, first difference at byte {diff}")
    client.close()
