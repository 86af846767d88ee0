"""What a probe looks like on the wire, and how the kernel time-stamps a reply (Linux).

A UDP probe is a 32-byte header: magic ``CWL2`` (format 2), a flags byte (`FLAG_REPLY` set
on replies only, `FLAG_SIGNED` when a tag follows), two reserved bytes, a per-prober
session id, the target's index, a 64-bit sequence number and the send time in monotonic ns.
With a shared key a 16-byte tag follows: HMAC-SHA256 over the header, truncated. A
`Responder` answers a request with the same packet, the reply flag set (and the tag made
anew over the reply's header); it never answers a reply, so two responders cannot keep a
packet going between them. An ICMP probe carries the same payload (as a request: the
kernel echoes it unchanged) after the echo header.

Format 1 (``CWL1``, 28 bytes, echoed unchanged by any responder) is no longer answered.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from dataclasses import dataclass

__all__ = ["ANCILLARY", "FLAG_REPLY", "FLAG_SIGNED", "HEADER", "ICMP_ECHO", "ICMP_HEADER",
           "ICMP_PROTO", "MAGIC", "MIN_KEY_BYTES", "PACKET_SIZE", "SIGNED_SIZE", "SIOCGSTAMPNS",
           "SO_TIMESTAMPNS", "TAG_SIZE", "TIMESPEC", "ProbePacket", "decode_probe",
           "encode_probe", "reply_to"]

MAGIC = b"CWL2"
"""First bytes of every UDP/ICMP probe payload (computewatch latency, format 2)."""

HEADER = struct.Struct("!4sBBHIIQQ")  # magic, flags, 0, 0, session, target, sequence, send ns
PACKET_SIZE = HEADER.size
"""Bytes of an unsigned probe (and the least a responder reads as one)."""
TAG_SIZE = 16
SIGNED_SIZE = PACKET_SIZE + TAG_SIZE
FLAG_REPLY = 0x01
FLAG_SIGNED = 0x02
MIN_KEY_BYTES = 16
_CONTEXT = b"computewatch latency probe v2\x00"  # the tag is for this use of the key only

ICMP_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, id, seq (kernel sets id, sum)
ICMP_ECHO = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}  # (request, reply)
ICMP_PROTO = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}

SO_TIMESTAMPNS = 35  # Linux (asm-generic); the socket module does not name it
TIMESPEC = struct.Struct("@ll")  # struct timespec as SCM_TIMESTAMPNS delivers it
SIOCGSTAMPNS = 0x8907  # Linux ioctl: the kernel's receive time of the last datagram read
ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


@dataclass(frozen=True, slots=True)
class ProbePacket:
    """One decoded packet: a request, or a reply when ``reply``."""

    reply: bool
    session: int
    index: int
    seq: int
    sent_ns: int


def _tag(key: bytes, header: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + header, hashlib.sha256).digest()[:TAG_SIZE]


def encode_probe(session: int, index: int, seq: int, sent_ns: int, key: bytes | None = None,
           *, reply: bool = False) -> bytes:
    """A probe (or, with ``reply``, its answer), signed when there is a key."""
    flags = (FLAG_REPLY if reply else 0) | (FLAG_SIGNED if key else 0)
    header = HEADER.pack(MAGIC, flags, 0, 0, session, index, seq & 0xFFFF_FFFF_FFFF_FFFF,
                         sent_ns & 0xFFFF_FFFF_FFFF_FFFF)
    return header + _tag(key, header) if key else header


def decode_probe(data: bytes, key: bytes | None = None) -> ProbePacket | str:
    """The probe in ``data``, or why it is not one this end accepts: ``invalid`` (too
    short, another format) or ``unauthenticated`` (a key is set and the tag is missing or
    wrong). Bytes after the header (and tag) are ignored."""
    if len(data) < PACKET_SIZE:
        return "invalid"
    magic, flags, _, _, session, index, seq, sent_ns = HEADER.unpack_from(data)
    if magic != MAGIC:
        return "invalid"
    if key:
        if not flags & FLAG_SIGNED or len(data) < SIGNED_SIZE:
            return "unauthenticated"
        if not hmac.compare_digest(data[PACKET_SIZE:SIGNED_SIZE],
                                   _tag(key, data[:PACKET_SIZE])):
            return "unauthenticated"
    return ProbePacket(bool(flags & FLAG_REPLY), session, index, seq, sent_ns)


def reply_to(request: bytes, key: bytes | None = None) -> bytes:
    """The answer to a request ``decode_probe`` accepted: the same packet with the reply flag set,
    its tag made anew (or, without a key, the signed flag cleared); never longer."""
    magic, flags, r1, r2, session, index, seq, sent_ns = HEADER.unpack_from(request)
    flags = (flags | FLAG_REPLY) & ~FLAG_SIGNED
    if key:
        header = HEADER.pack(magic, flags | FLAG_SIGNED, r1, r2, session, index, seq, sent_ns)
        return header + _tag(key, header) + request[SIGNED_SIZE:]
    header = HEADER.pack(magic, flags, r1, r2, session, index, seq, sent_ns)
    return header + request[PACKET_SIZE:]
