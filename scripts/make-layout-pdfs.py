#!/usr/bin/env python3
"""Write the PDFs that test reading order and structure, with no
dependencies:

    scripts/make-layout-pdfs.py OUT_DIR

two-column.pdf   two columns whose lines the content stream draws row by
                 row, left then right: stream order is not reading order.
table.pdf        a ruled table of 3 columns and 4 rows under a heading.
cjk.pdf          Japanese text in a Type0 font with the predefined CMap
                 UniJIS-UCS2-H and no embedded font file or ToUnicode map.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdfwrite import escape, write_pdf  # noqa: E402

LEFT = [
    "Left column line one about the pumps.",
    "Left column line two about the valves.",
    "Left column line three about the seals.",
    "Left column line four about the gauges.",
]
RIGHT = [
    "Right column line one on the budget.",
    "Right column line two on the staff.",
    "Right column line three on the schedule.",
    "Right column line four on the risks.",
]
TABLE = [
    ["Item", "Quantity", "Price"],
    ["Widget", "4", "2.50"],
    ["Gasket", "12", "0.75"],
    ["Bearing", "3", "9.10"],
]
CJK = "\u65e5\u672c\u8a9e\u306e\u6587\u66f8\u3067\u3059"  # 日本語の文書です


def one_page(path, content, fonts):
    """A one-page PDF drawing `content` (bytes) with `fonts`: a list of
    (resource name, [font object bodies, the first being the font])."""
    objects = []

    def add(body):
        objects.append(body)
        return len(objects)

    font_refs = []
    for name, bodies in fonts:
        first = len(objects) + 1
        for body in bodies:
            add(body.replace(b"NEXT", b"%d" % (len(objects) + 2)))
        font_refs.append(b"/%s %d 0 R" % (name.encode(), first))
    stream = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    pages = len(objects) + 2
    page = add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
               b"/Resources << /Font << %s >> >> >>" % (pages, stream, b" ".join(font_refs)))
    assert add(b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % page) == pages
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages)
    info = add(b"<< /Title (scout layout test) /Producer (scripts/make-layout-pdfs.py) >>")
    write_pdf(path, objects, catalog, b" /Info %d 0 R" % info)


HELVETICA = [b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]


def text_at(x, y, s, size=11):
    return "BT /F1 %d Tf %d %d Td (%s) Tj ET" % (size, x, y, escape(s))


def two_column(path):
    ops = [text_at(72, 740, "Two columns", 16)]
    for i, (left, right) in enumerate(zip(LEFT, RIGHT)):
        y = 700 - 16 * i
        ops.append(text_at(72, y, left))
        ops.append(text_at(320, y, right))
    one_page(path, "\n".join(ops).encode("latin-1"), [("F1", HELVETICA)])


def table(path):
    x0, widths, top, row_h = 72, [160, 100, 100], 680, 24
    ops = [text_at(72, 720, "Parts ordered", 16), "0.5 w"]
    width = sum(widths)
    for r in range(len(TABLE) + 1):
        y = top - r * row_h
        ops.append("%d %d m %d %d l S" % (x0, y, x0 + width, y))
    x = x0
    for w in widths + [0]:
        ops.append("%d %d m %d %d l S" % (x, top, x, top - len(TABLE) * row_h))
        x += w
    for r, row in enumerate(TABLE):
        x = x0
        for w, cell in zip(widths, row):
            ops.append(text_at(x + 6, top - r * row_h - 17, cell))
            x += w
    ops.append(text_at(72, top - len(TABLE) * row_h - 40, "Prices are per unit, before tax."))
    one_page(path, "\n".join(ops).encode("latin-1"), [("F1", HELVETICA)])


def cjk(path):
    hexed = CJK.encode("utf-16-be").hex().upper()
    content = ("BT /F2 18 Tf 72 700 Td <%s> Tj ET" % hexed).encode("latin-1")
    font = [
        b"<< /Type /Font /Subtype /Type0 /BaseFont /HeiseiMin-W3 /Encoding /UniJIS-UCS2-H "
        b"/DescendantFonts [NEXT 0 R] >>",
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /HeiseiMin-W3 "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Japan1) /Supplement 2 >> "
        b"/FontDescriptor NEXT 0 R /DW 1000 >>",
        b"<< /Type /FontDescriptor /FontName /HeiseiMin-W3 /Flags 4 /FontBBox [0 -141 1000 859] "
        b"/ItalicAngle 0 /Ascent 859 /Descent -141 /CapHeight 709 /StemV 69 >>",
    ]
    one_page(path, content, [("F2", font)])


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    two_column(os.path.join(out, "two-column.pdf"))
    table(os.path.join(out, "table.pdf"))
    cjk(os.path.join(out, "cjk.pdf"))


if __name__ == "__main__":
    main()
