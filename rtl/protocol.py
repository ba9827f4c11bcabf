"""The serial protocol of the board top (``rtl/board.py``), both directions, as byte strings.

Every exchange is one command byte from the host and one reply from the board, all multi-byte
numbers little-endian (``docs/board.md``):

===============  =========================================  =====================================
host sends       board replies                              meaning
===============  =========================================  =====================================
``?``            ``?`` version pixels:2 input_bits:1        identify the design
                 classes:1 logit_bytes:1
``I`` + pixels   ``R`` class:1 logits:classes×logit_bytes   one inference: one byte per pixel,
                 cycles:4                                   row-major, below 2**input_bits
``C``            ``C`` cycles:4                             compute cycles of the last inference
anything else    ``E`` the byte                             unknown command
===============  =========================================  =====================================

Logits are two's complement in ``logit_bytes`` bytes each.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VERSION", "IDENTIFY", "INFER", "CYCLES", "RESULT", "ERROR", "Identity", "Result",
           "ProtocolError", "logit_bytes", "identity_reply", "parse_identity", "infer_request",
           "result_length", "parse_result", "parse_cycles"]

VERSION = 1
IDENTIFY, INFER, CYCLES, RESULT, ERROR = b"?", b"I", b"C", b"R", b"E"
IDENTITY_LENGTH = 7
CYCLES_LENGTH = 5


class ProtocolError(ValueError):
    """A request that cannot be sent, or a reply that does not parse."""


@dataclass(frozen=True)
class Identity:
    version: int
    pixels: int
    input_bits: int
    classes: int
    logit_bytes: int


@dataclass(frozen=True)
class Result:
    cls: int
    logits: list[int]
    cycles: int


def logit_bytes(acc_bits: int) -> int:
    """Bytes per logit on the wire: the accumulator width rounded up to whole bytes."""
    return -(-acc_bits // 8)


def identity_reply(identity: Identity) -> bytes:
    """The board's answer to ``?`` (what the RTL sends, byte for byte)."""
    return (IDENTIFY + bytes([identity.version]) + identity.pixels.to_bytes(2, "little")
            + bytes([identity.input_bits, identity.classes, identity.logit_bytes]))


def parse_identity(reply: bytes) -> Identity:
    if len(reply) != IDENTITY_LENGTH or reply[:1] != IDENTIFY:
        raise ProtocolError(f"identify reply must be {IDENTITY_LENGTH} bytes starting with "
                            f"{IDENTIFY!r}, got {reply!r}")
    identity = Identity(reply[1], int.from_bytes(reply[2:4], "little"), reply[4], reply[5],
                        reply[6])
    if identity.version != VERSION:
        raise ProtocolError(f"the board speaks protocol version {identity.version}; this "
                            f"host speaks version {VERSION}")
    return identity


def infer_request(pixels, identity: Identity) -> bytes:
    """``I`` and the image, after checking it against the board's design."""
    pixels = [int(p) for p in pixels]
    if len(pixels) != identity.pixels:
        raise ProtocolError(f"the board's design takes {identity.pixels} pixels, "
                            f"the image has {len(pixels)}")
    top = (1 << identity.input_bits) - 1
    bad = [(k, p) for k, p in enumerate(pixels) if not 0 <= p <= top]
    if bad:
        k, p = bad[0]
        raise ProtocolError(f"pixel {k} is {p}; the board takes {identity.input_bits}-bit "
                            f"pixels, 0 .. {top}")
    return INFER + bytes(pixels)


def result_length(identity: Identity) -> int:
    return 2 + identity.classes * identity.logit_bytes + 4


def parse_result(reply: bytes, identity: Identity) -> Result:
    if len(reply) != result_length(identity) or reply[:1] != RESULT:
        raise ProtocolError(f"inference reply must be {result_length(identity)} bytes starting "
                            f"with {RESULT!r}, got {reply!r}")
    width = identity.logit_bytes
    logits = [int.from_bytes(reply[2 + c * width: 2 + (c + 1) * width], "little", signed=True)
              for c in range(identity.classes)]
    return Result(reply[1], logits, int.from_bytes(reply[-4:], "little"))


def parse_cycles(reply: bytes) -> int:
    if len(reply) != CYCLES_LENGTH or reply[:1] != CYCLES:
        raise ProtocolError(f"cycles reply must be {CYCLES_LENGTH} bytes starting with "
                            f"{CYCLES!r}, got {reply!r}")
    return int.from_bytes(reply[1:], "little")
