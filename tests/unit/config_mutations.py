"""Mutations of a config file for fuzzing the loader: what a damaged disk, a bad editor or a
careless copy-paste makes of agent.yaml. `mutate(text, rng)` applies one to three of them."""

from __future__ import annotations

import random
import re

NASTY_VALUES = [
    "[1]", "{a: 1}", "!!int 'x'", "!!float 'y'", "!!binary '@@'", "!!timestamp '2001-13-45'", "null", "~", "[]",
    "{}", "*nowhere", "&a [*a]", "'" + "a" * 300 + "'", "[" * 2000 + "]" * 2000, "{" * 2000,
    "!!python/object:os.system x", "!!set {a, b}", "!!omap [a: 1]", "!!pairs [a: 1]", ".inf", "-.inf", ".nan", "1e400",
    "-1", "0x1F", "0o777", "99999999999999999999999", "yes", "off", "2001-01-01", "2001-01-01 10:00:00",
    "\"\\x00\"", "\"\\uffff\"", "\"\\ud800\"", "|\n  text", ">-\n  text", "? [a, b]\n: 1", "!custom 1", "!!str",
    "a" * 300 + "/" + "b" * 300, "vendor/" + "m" * 300, "../../etc/passwd", "/dev/null", "\"\"", "' '",
    "\"rtu:///dev/ttyUSB0?baudrate=x\"", "\"mqtts://user:pw@host\"", "\"mqtt://\"", "\"mqtt://h:99999\"",
    "\"tcp://h:0\"", "\"foo://bar\"", "\"rtu://\"", "\"tcp://[::1\"", "\"tcp://h:-1\"", "[\"\\0\"]", "[1, 2]",
    "{<<: 5}", "{<<: [1]}", "{<<: *x}", "&x {a: 1}",
]
NASTY_KEYS = ["[a, b]", "{a: 1}", "1", "null", "<<", "? [1, 2]", "? {a: 1}", "true", "1.5", "'\\0'", "\"\"",
              "x" * 300, "!!binary 'AA=='", "*nowhere"]
NASTY_LINES = [
    "<<: 5", "<<: [1, 2]", "<<: {a: 1}", "profiles_dirs: [1]", "profiles_dirs: [\"\\0\"]",
    "profiles_dirs: [\"" + "d" * 5000 + "\"]", "profiles_dirs: 7", "profiles_dirs: [[1]]", "? [a]\n: 1",
    "? {b: 2}\n: 1", "prometheus: \"127.0.0.1:99999\"", "prometheus: 9100", "buses: [[]]", "devices: [1, 2]",
    "devices: [{id: x, bus: line1, unit: 1, profile: " + "a" * 300 + "/b}]", "gateway: [a, b]",
    "mqtt: {url: \"mqtt://\"}", "mqtt: {url: \"mqtts://user:pw@host:8883\"}", "mqtt: {url: \"mqtt://h:99999\"}",
    "buffer: {path: \"\\0\"}", "%YAML 1.1", "--- !!map", "...", "---", "- a", "\t- tab", "&a a: *a",
    "x: &a [*a, *a]", "x: !!binary AAA", "[" * 2000, "{" * 2000 + "}" * 2000,
]
CONTROL = [chr(c) for c in (*range(0, 32), 0x7F, 0x85, 0xA0, 0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF)]
BAD_BYTES = [b"\xff", b"\xfe", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x00", b"\x80"]
TOKEN = re.compile(rb"[A-Za-z0-9_./:?&=@-]+")


def mutate(text: bytes, rng: random.Random) -> bytes:
    """One to three random mutations of `text`."""
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(MUTATIONS)(text, rng)
    return text


def _flip(text: bytes, rng: random.Random) -> bytes:
    if not text:
        return text
    i = rng.randrange(len(text))
    return text[:i] + bytes([rng.randrange(256)]) + text[i + 1:]


def _insert(text: bytes, rng: random.Random, piece: bytes) -> bytes:
    i = rng.randint(0, len(text))
    return text[:i] + piece + text[i:]


def _control(text: bytes, rng: random.Random) -> bytes:
    return _insert(text, rng, rng.choice(CONTROL).encode("utf-8", "surrogatepass"))


def _bad_bytes(text: bytes, rng: random.Random) -> bytes:
    return _insert(text, rng, rng.choice(BAD_BYTES))


def _replace_token(text: bytes, rng: random.Random, pieces: list[str]) -> bytes:
    tokens = list(TOKEN.finditer(text))
    if not tokens:
        return text
    match = rng.choice(tokens)
    return text[:match.start()] + rng.choice(pieces).encode() + text[match.end():]


def _value(text: bytes, rng: random.Random) -> bytes:
    return _replace_token(text, rng, NASTY_VALUES)


def _key(text: bytes, rng: random.Random) -> bytes:
    return _replace_token(text, rng, NASTY_KEYS)


def _line(text: bytes, rng: random.Random) -> bytes:
    lines = text.split(b"\n")
    i = rng.randint(0, len(lines))
    lines.insert(i, rng.choice(NASTY_LINES).encode())
    return b"\n".join(lines)


def _drop_line(text: bytes, rng: random.Random) -> bytes:
    lines = text.split(b"\n")
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def _truncate(text: bytes, rng: random.Random) -> bytes:
    return text[:rng.randint(0, len(text))]


def _swap_tokens(text: bytes, rng: random.Random) -> bytes:
    tokens = list(TOKEN.finditer(text))
    if len(tokens) < 2:
        return text
    a, b = sorted(rng.sample(tokens, 2), key=lambda m: m.start())
    return text[:a.start()] + b.group() + text[a.end():b.start()] + a.group() + text[b.end():]


MUTATIONS = [_flip, _control, _bad_bytes, _value, _value, _key, _line, _line, _drop_line, _truncate, _swap_tokens]
