#!/usr/bin/env python3
"""Write the broken LIDC reader XML cases of tests/broken/lidc/.

Each file is of the series `1.2.3.4.5`: three 16 x 16 slices at z -10, -7.5 and -5 mm whose
SOP Instance UIDs are `1.2.3.4.5.1` to `.3` (tests/integration/broken.rs writes that series
with ctstream's synthetic DICOM writer). Where a case is one bad annotation, the file also
holds a good nodule by another reader, which must still be stored. Needs the `zstd` tool.

Usage: python3 tools/broken/make_lidc.py [--out tests/broken/lidc]
"""

import argparse
import os
import subprocess

SERIES = "1.2.3.4.5"
Z = [-10.0, -7.5, -5.0]
SQUARE = [
    (6, 6),
    (7, 6),
    (8, 6),
    (9, 6),
    (10, 6),
    (10, 7),
    (10, 8),
    (10, 9),
    (10, 10),
    (9, 10),
    (8, 10),
    (7, 10),
    (6, 10),
    (6, 9),
    (6, 8),
    (6, 7),
]


def roi(k, points, uid=None, z=None, compact=False):
    uid = uid or f"{SERIES}.{k + 1}"
    z = Z[k] if z is None else z
    form = (
        "<edgeMap><xCoord>{}</xCoord><yCoord>{}</yCoord></edgeMap>\n"
        if compact
        else "      <edgeMap>\n        <xCoord>{}</xCoord>\n          <yCoord>{}</yCoord>\n      </edgeMap>\n"
    )
    edges = "".join(form.format(x, y) for x, y in points)
    return (
        "    <roi>\n"
        f"      <imageZposition>{z} </imageZposition>\n"
        f"      <imageSOP_UID>{uid}</imageSOP_UID>\n"
        "      <inclusion>TRUE</inclusion>\n"
        f"{edges}"
        "    </roi>\n"
    )


def nodule(nid, rois):
    scores = "".join(
        f"      <{n}>{v}</{n}>\n"
        for n, v in [
            ("subtlety", 4),
            ("internalStructure", 1),
            ("calcification", 6),
            ("sphericity", 4),
            ("margin", 4),
            ("lobulation", 1),
            ("spiculation", 1),
            ("texture", 5),
            ("malignancy", 3),
        ]
    )
    return (
        "  <unblindedReadNodule>\n"
        f"    <noduleID>{nid}</noduleID>\n"
        f"    <characteristics>\n{scores}    </characteristics>\n"
        + "".join(rois)
        + "  </unblindedReadNodule>\n"
    )


def session(reader, body):
    return (
        "<readingSession>\n"
        "  <annotationVersion>3.12</annotationVersion>\n"
        f"  <servicingRadiologistID>{reader}</servicingRadiologistID>\n"
        f"{body}"
        "</readingSession>\n"
    )


def message(sessions, ns="http://www.nih.gov"):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<LidcReadMessage uid="1.2.3.4.5.0" xmlns="{ns}">\n'
        "<ResponseHeader>\n"
        "   <Version>1.8.1</Version>\n"
        f"   <SeriesInstanceUid>{SERIES}</SeriesInstanceUid>\n"
        "</ResponseHeader>\n" + "".join(sessions) + "</LidcReadMessage>\n"
    )


def good():
    return session("reader-good", nodule("Nodule 001", [roi(k, SQUARE) for k in range(3)]))


def with_bad(bad_rois):
    return message([good(), session("reader-bad", nodule("Nodule 002", bad_rois))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/broken/lidc")
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    cases = {
        "unknown_sop.xml": with_bad([roi(1, SQUARE, uid="9.9.9.9", z=400.0)]),
        "empty_edgemap.xml": with_bad([roi(1, [])]),
        "nan_z.xml": with_bad([roi(1, SQUARE, uid="9.9.9.9", z="NaN")]),
        "wrong_namespace.xml": message([good()], ns="http://example.org/not-lidc"),
    }
    full = message([good(), session("reader-bad", nodule("Nodule 002", [roi(1, SQUARE)]))])
    cases["truncated.xml"] = full[: full.index("<yCoord>", full.index("reader-bad"))]
    for name, text in cases.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    # 1,000,000 edge points on one slice (54 MB of XML; zstd -19 --long makes it a few
    # kB): the test decompresses it beside its other files.
    big = with_bad([roi(1, [(8, 8)] * 1_000_000, compact=True)])
    path = os.path.join(out, "million_points.xml")
    with open(path, "w") as f:
        f.write(big)
    subprocess.run(["zstd", "-19", "--long=27", "-q", "-f", "--rm", path], check=True)


if __name__ == "__main__":
    main()
