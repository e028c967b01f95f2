"""The byte layout every PDF the fixture scripts write shares: numbered
objects, the cross-reference table, and the trailer. Used by
make-text-pdf.py, make-scanned-pdf.py and make-layout-pdfs.py."""


def escape(s):
    """`s` as the body of a PDF literal string."""
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path, objects, root, trailer_extra=b""):
    """Writes `objects` (bodies of objects 1..n) with object `root` as the
    catalog; `trailer_extra` goes into the trailer dictionary as it is."""
    data = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(data))
        data += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        data += b"%010d 00000 n \n" % off
    data += b"trailer\n<< /Size %d /Root %d 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, trailer_extra, xref)
    with open(path, "wb") as f:
        f.write(data)
