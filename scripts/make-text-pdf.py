#!/usr/bin/env python3
"""Write a small text PDF (standard Helvetica font, one page per input file
section) with no dependencies. Used to make the example and test PDFs:

    scripts/make-text-pdf.py [--outline "Title=PAGE,..."] [--encrypt] OUT.pdf "Page one line 1|line 2" "Page two ..."

Each argument is one page; '|' separates lines. --outline adds bookmarks
(top level, pages counted from 1). --encrypt adds a standard security
handler whose user password is not empty, so readers need a password
(the content itself is left as is: enough to test that it is refused).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdfwrite import escape, write_pdf  # noqa: E402


def main():
    args = sys.argv[1:]
    outline, encrypt = [], False
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag == "--outline":
            outline = [(t, int(p)) for t, p in (item.rsplit("=", 1) for item in args.pop(0).split(","))]
        elif flag == "--encrypt":
            encrypt = True
    out, pages = args[0], args[1:]
    objects = []  # body of object i+1

    def add(body):
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    pages_id = len(objects) + 1 + 2 * len(pages)  # after every page and stream
    page_ids = []
    for text in pages:
        lines = text.split("|")
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 760 Td"]
        for line in lines:
            ops.append("(%s) Tj T*" % escape(line))
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        page_ids.append(add(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (pages_id, content, font)))
    kids = b" ".join(b"%d 0 R" % p for p in page_ids)
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))) == pages_id
    outlines_ref = b""
    if outline:
        first = len(objects) + 2
        outlines_id = len(objects) + 1
        ids = list(range(first, first + len(outline)))
        add(b"<< /Type /Outlines /First %d 0 R /Last %d 0 R /Count %d >>" % (ids[0], ids[-1], len(ids)))
        for k, (title, page) in enumerate(outline):
            links = b""
            if k > 0:
                links += b" /Prev %d 0 R" % ids[k - 1]
            if k < len(ids) - 1:
                links += b" /Next %d 0 R" % ids[k + 1]
            add(b"<< /Title (%s) /Parent %d 0 R /Dest [%d 0 R /Fit]%s >>"
                % (escape(title).encode("latin-1"), outlines_id, page_ids[page - 1], links))
        outlines_ref = b" /Outlines %d 0 R" % outlines_id
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R%s >>" % (pages_id, outlines_ref))
    encrypt_ref = b""
    if encrypt:
        enc = add(b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P -44 "
                  b"/O <" + b"7a" * 32 + b"> /U <" + b"3c" * 32 + b"> >>")
        encrypt_ref = b" /Encrypt %d 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]" % enc
    info = add(b"<< /Title (scout example) /Producer (scripts/make-text-pdf.py) >>")

    write_pdf(out, objects, catalog, b" /Info %d 0 R" % info + encrypt_ref)


if __name__ == "__main__":
    main()
