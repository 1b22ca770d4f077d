#!/usr/bin/env python3
"""Extract the text of a PDF into <out>/<name>.txt using only the standard library.

Handles uncompressed and FlateDecode content streams and the Tj, TJ, ' and " text operators,
which covers PDFs written by most word processors. Scanned (image-only) PDFs yield no text.
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from pathlib import Path

STREAM = re.compile(rb"<<(.*?)>>\s*stream\r?\n(.*?)\r?\nendstream", re.S)
TEXT_OP = re.compile(rb"(\[(?:.|\n)*?\]\s*TJ|\((?:\\.|[^\\)])*\)\s*(?:Tj|'|\"))")
STRING = re.compile(rb"\((?:\\.|[^\\)])*\)")
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _unescape(raw: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i : i + 1]
        if ch != b"\\":
            out += ch
            i += 1
            continue
        nxt = raw[i + 1 : i + 2]
        octal = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
        if octal:
            out.append(int(octal.group(0), 8) & 0xFF)
            i += 1 + len(octal.group(0))
        else:
            out += ESCAPES.get(nxt, nxt)
            i += 2
    return bytes(out)


def _streams(data: bytes) -> list[bytes]:
    found = []
    for header, body in STREAM.findall(data):
        if b"/FlateDecode" in header:
            try:
                body = zlib.decompress(body)
            except zlib.error:
                continue
        found.append(body)
    return found


def extract(data: bytes) -> str:
    lines = []
    for content in _streams(data):
        for op in TEXT_OP.findall(content):
            parts = [_unescape(s[1:-1]) for s in STRING.findall(op)]
            lines.append(b"".join(parts).decode("latin-1"))
    return "\n".join(line for line in lines if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    args = parser.parse_args(argv)
    data = args.pdf.read_bytes()
    if not data.startswith(b"%PDF-"):
        print(f"{args.pdf}: not a PDF file", file=sys.stderr)
        return 1
    if b"/Encrypt" in data:
        print(f"{args.pdf}: encrypted PDF, not extracted", file=sys.stderr)
        return 1
    out_dir = args.out.resolve()
    target = (out_dir / (args.pdf.stem + ".txt")).resolve()
    if out_dir not in target.parents:  # never write outside the output folder
        print(f"{target}: outside {out_dir}", file=sys.stderr)
        return 1
    text = extract(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"{target}: {len(text)} characters" + ("" if text else " (no text layer: scanned?)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
