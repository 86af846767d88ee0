"""What a probe looks like on the wire, and how the kernel time-stamps a reply (Linux).

A UDP probe is a 28-byte packet: magic ``CWL1``, a per-prober session id, the target's index,
a 64-bit sequence number and the send time in monotonic ns. A `Responder` echoes it back
unchanged; an ICMP probe carries the same payload after the echo header.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["ANCILLARY", "ICMP_ECHO", "ICMP_HEADER", "ICMP_PROTO", "MAGIC", "PACKET",
           "PACKET_SIZE", "SIOCGSTAMPNS", "SO_TIMESTAMPNS", "TIMESPEC"]

MAGIC = b"CWL1"
"""First bytes of every UDP/ICMP probe payload (computewatch latency, format 1)."""

PACKET = struct.Struct("!4sIIQQ")  # magic, session, target index, sequence, send time (ns)
PACKET_SIZE = PACKET.size
ICMP_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, id, seq (kernel sets id, sum)
ICMP_ECHO = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}  # (request, reply)
ICMP_PROTO = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}

SO_TIMESTAMPNS = 35  # Linux (asm-generic); the socket module does not name it
TIMESPEC = struct.Struct("@ll")  # struct timespec as SCM_TIMESTAMPNS delivers it
SIOCGSTAMPNS = 0x8907  # Linux ioctl: the kernel's receive time of the last datagram read
ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
