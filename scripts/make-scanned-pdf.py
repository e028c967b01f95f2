#!/usr/bin/env python3
"""Write a "scanned" PDF: each page is one full-page image and no text
layer, as scanners produce. No dependencies.

    scripts/make-scanned-pdf.py OUT.pdf PAGE.jpg|PAGE.pgm ...

A .jpg is embedded as it is (DCTDecode); a binary .pgm (P5, 8-bit gray,
e.g. from `pdftoppm -gray`) is embedded as Flate-compressed pixels.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdfwrite import write_pdf  # noqa: E402
import zlib


def jpeg_size(data):
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise ValueError("bad JPEG marker")
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xC3:
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            comps = data[i + 9]
            return w, h, comps
        i += 2 + length
    raise ValueError("no JPEG frame header")


def read_pgm(data):
    parts = data.split(maxsplit=4)
    assert parts[0] == b"P5", "binary PGM only"
    w, h, maxval = int(parts[1]), int(parts[2]), int(parts[3])
    assert maxval == 255
    return w, h, parts[4][: w * h]


def main():
    out, images = sys.argv[1], sys.argv[2:]
    objects = []

    def add(body):
        objects.append(body)
        return len(objects)

    pages_id = 1 + 3 * len(images)
    page_ids = []
    for path in images:
        data = open(path, "rb").read()
        if path.endswith(".jpg"):
            w, h, comps = jpeg_size(data)
            space = b"/DeviceRGB" if comps == 3 else b"/DeviceGray"
            stream, filt = data, b"/DCTDecode"
        else:
            w, h, pixels = read_pgm(data)
            space, stream, filt = b"/DeviceGray", zlib.compress(pixels, 9), b"/FlateDecode"
        img = add(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s /BitsPerComponent 8 "
                  b"/Filter %s /Length %d >>\nstream\n" % (w, h, space, filt, len(stream)) + stream + b"\nendstream")
        draw = b"q 612 0 0 792 0 0 cm /Im0 Do Q"
        content = add(b"<< /Length %d >>\nstream\n" % len(draw) + draw + b"\nendstream")
        page_ids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                            b"/Resources << /XObject << /Im0 %d 0 R >> >> >>" % (pages_id, content, img)))
    kids = b" ".join(b"%d 0 R" % p for p in page_ids)
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))) == pages_id
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    write_pdf(out, objects, catalog)


if __name__ == "__main__":
    main()
