"""Golden of matplotlib's point-in-polygon rule as pylidc 0.2.3 uses it to fill reader
contours (`Annotation.boolean_mask`: `matplotlib.path.Path(C, closed=True)
.contains_points(test_points)`, C the contour's (row, column) points, closed by appending
the first point when the last is not it).

Polygons from a seeded generator: 8-connected pixel chains (what LIDC edge maps are),
chains with gaps, and random integer polygons whose long edges pass through lattice
points (where the rule, not geometry, decides), some self-intersecting. For each, every
lattice point of its box grown by one is tested; the golden lists the points inside.
src/lidc/mask.rs's tests compare its crossing test with it.
"""

import numpy as np
from matplotlib import path as mplpath


def closed(c):
    c = np.asarray(c)
    if (c[0] != c[-1]).any():
        c = np.append(c, c[0].reshape(1, 2), axis=0)
    return c


def chain(rng, n, gap=1):
    # A closed-ish random walk of 8-connected (or `gap`-step) moves.
    p = [np.array([20, 20])]
    for _ in range(n):
        step = rng.integers(-gap, gap + 1, size=2)
        if not step.any():
            step = np.array([0, 1])
        p.append(np.clip(p[-1] + step, 0, 40))
    return np.array(p)


def polygons(rng):
    out = []
    for _ in range(12):
        out.append(chain(rng, int(rng.integers(8, 60))))
    for _ in range(8):
        out.append(chain(rng, int(rng.integers(5, 30)), gap=3))
    for _ in range(20):
        out.append(rng.integers(0, 12, size=(int(rng.integers(3, 9)), 2)))
    # Axis-aligned and diagonal shapes whose edges run along lattice rows and columns.
    out.append(np.array([[0, 0], [0, 8], [8, 8], [8, 0]]))
    out.append(np.array([[0, 4], [4, 8], [8, 4], [4, 0]]))
    out.append(np.array([[0, 0], [6, 6], [0, 6], [6, 0]]))
    return out


def case():
    rng = np.random.default_rng(29)
    cases = []
    for poly in polygons(rng):
        c = closed(poly)
        lo = c.min(axis=0) - 1
        hi = c.max(axis=0) + 1
        ii, jj = np.meshgrid(
            np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij"
        )
        test = np.c_[ii.ravel(), jj.ravel()]
        inside = mplpath.Path(c, closed=True).contains_points(test)
        cases.append(
            {
                "points_row_col": poly.tolist(),
                "box_row_col": [lo.tolist(), hi.tolist()],
                "inside": test[inside].tolist(),
            }
        )
    return {"source": "matplotlib.path.Path.contains_points (radius 0)", "cases": cases}
