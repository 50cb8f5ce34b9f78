"""Find the frames in a byte stream from a shared line. Pure.

Both protocols frame as `68 ... L DATA CS 16` with a sum checksum, and both lines carry what is
not ours: FE wake-up preambles, noise (a 0x00 when a transceiver turns around), another master's
request, a broadcast, a frame cut short by a collision. The scanner looks at every 0x68 in order
and takes the first candidate that is complete, well formed and whose checksum and end byte
match; a candidate that claims more bytes than have arrived does not block a complete frame that
starts later (a truncated frame would otherwise swallow the real answer). What it skips is kept,
so a caller that finds no answer can say what came back instead of "timeout".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

START, END, PREAMBLE = 0x68, 0x16, 0xFE


@dataclass(frozen=True, slots=True)
class Shape:
    """Where a protocol keeps its length byte, and what else the header must satisfy."""

    length_at: int  # index of L from the first 68
    header_ok: Callable[[bytes, int], bool] = lambda buf, i: True  # e.g. DL/T 645's second 68

    def total(self, length: int) -> int:
        """Whole frame from the first 68 to 16: header through L, data, CS, 16."""
        return self.length_at + 1 + length + 2


@dataclass(frozen=True, slots=True)
class Found:
    """One well-formed frame (from 68 to 16 inclusive) and the bytes skipped before it."""

    frame: bytes
    skipped: bytes


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def next_frame(buffer: bytearray, shape: Shape) -> Found | None:
    """Remove and return the first well-formed frame of `buffer`, or None until one is complete."""
    for start in _starts(buffer):
        end = _complete_at(buffer, start, shape)
        if end is None:
            continue
        found = Found(bytes(buffer[start:end]), bytes(buffer[:start]))
        del buffer[:end]
        return found
    return None


def _starts(buffer: bytearray) -> Iterator[int]:
    """Every 0x68 in order, found with bytearray.find (no Python loop per byte: in the clean case
    the first one is the frame)."""
    at = buffer.find(START)
    while at != -1:
        yield at
        at = buffer.find(START, at + 1)


def _complete_at(buffer: bytearray, start: int, shape: Shape) -> int | None:
    """End index of a valid frame starting at `start`, or None (not a frame, or not complete yet)."""
    if len(buffer) <= start + shape.length_at or not shape.header_ok(bytes(buffer), start):
        return None
    end = start + shape.total(buffer[start + shape.length_at])
    if end > len(buffer):
        return None
    if buffer[end - 1] != END or buffer[end - 2] != checksum(bytes(buffer[start:end - 2])):
        return None
    return end


def noise(skipped: bytes) -> bytes:
    """Skipped bytes worth reporting: FE preambles are part of the protocol, not noise."""
    return bytes(b for b in skipped if b != PREAMBLE)


class Receiver(Generic[T]):
    """Collects a byte stream until `match` accepts a frame as the answer; remembers the rest.

    `echo` is our own request: a 2-wire adapter that hears itself is not reporting noise."""

    def __init__(self, shape: Shape, match: Callable[[bytes], T | None], echo: bytes = b"") -> None:
        self._shape = shape
        self._match = match
        self._echo = echo
        self._buffer = bytearray()
        self._other = bytearray()

    def feed(self, data: bytes) -> T | None:
        """Add bytes; the answer once it is complete, else None."""
        self._buffer += data
        while (found := next_frame(self._buffer, self._shape)) is not None:
            self._other += noise(found.skipped)
            answer = self._match(found.frame)
            if answer is not None:
                return answer
            if not self._echo.endswith(found.frame):
                self._other += found.frame
        return None

    @property
    def unexplained(self) -> bytes:
        """Everything that arrived and was not the answer (preambles and our echo left out)."""
        return bytes(self._other) + noise(bytes(self._buffer))
