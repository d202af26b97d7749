//! 6-connected components of a volume, found as runs along x joined across rows and
//! slices by a union-find: the labelling behind lung masks and the component tables.
//!
//! Written here rather than taken from `ndarray-ndimage`'s `label` (a port of
//! `scipy.ndimage.label`): on a 228x512x512 scan its labelling took 0.8-1.3 s and a
//! 4-byte label per voxel, where runs take about a quarter of the time and memory in
//! proportion to the runs (a few per row), and give each component's counts without
//! another pass over the voxels. Components are numbered as scipy numbers them: in order
//! of their first voxel in C order.

use rayon::prelude::*;

/// A run `[x0, x1)` along x of voxels with the same key in row `row` (= z * ny + y).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// z * ny + y.
    pub row: u32,
    /// First voxel.
    pub x0: u32,
    /// One past the last voxel.
    pub x1: u32,
    /// The key its voxels share (never 0: background makes no runs).
    pub key: u8,
}

impl Run {
    /// Voxels in the run.
    pub fn len(&self) -> u64 {
        (self.x1 - self.x0) as u64
    }

    /// Whether the run is empty (never, for runs [`label`] returns).
    pub fn is_empty(&self) -> bool {
        self.x1 == self.x0
    }
}

/// The runs of a volume and the component of each.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// The runs, by row and then x.
    pub runs: Vec<Run>,
    /// The 0-based component of each run.
    pub component: Vec<u32>,
    /// The number of components.
    pub count: usize,
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let up = parent[parent[i as usize] as usize];
        parent[i as usize] = up;
        i = up;
    }
    i
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// Joins the runs of two neighbouring rows (each sorted by x) that share an x and a key.
fn join_rows(
    parent: &mut [u32],
    runs: &[Run],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) {
    let (mut i, mut j) = (a.start, b.start);
    while i < a.end && j < b.end {
        let (ra, rb) = (runs[i], runs[j]);
        if ra.x0 < rb.x1 && rb.x0 < ra.x1 && ra.key == rb.key {
            union(parent, i as u32, j as u32);
        }
        if ra.x1 < rb.x1 { i += 1 } else { j += 1 }
    }
}

/// The 6-connected components of the voxels of `data` (C order, `shape_zyx`) whose
/// `key` is not 0; voxels join only voxels of the same key. `None` when the shape does
/// not match the data or has more rows or runs than a `u32` counts.
///
/// ```
/// use ctstream::labels::runs::label;
/// // Two slices of 2x3: value 1 in an L joined across the slices, value 2 alone.
/// let v: Vec<u8> = vec![1, 1, 0,
///                       0, 0, 2,
///                       0, 1, 0,
///                       0, 0, 0];
/// let l = label(&v, [2, 2, 3], |&x| x).unwrap();
/// assert_eq!(l.count, 2);
/// assert_eq!(l.component, vec![0, 1, 0]);
/// ```
pub fn label<T: Sync>(
    data: &[T],
    shape_zyx: [usize; 3],
    key: impl Fn(&T) -> u8 + Sync,
) -> Option<Labelled> {
    let [nz, ny, nx] = shape_zyx;
    if data.len() != nz * ny * nx
        || (nz as u64) * (ny as u64) >= u32::MAX as u64
        || nx as u64 >= u32::MAX as u64
    {
        return None;
    }
    if data.is_empty() {
        return Some(Labelled { runs: Vec::new(), component: Vec::new(), count: 0 });
    }
    let planes: Vec<Vec<Run>> = data
        .par_chunks(ny * nx)
        .enumerate()
        .map(|(z, plane)| {
            let mut runs = Vec::new();
            for (y, row) in plane.chunks_exact(nx).enumerate() {
                let r = (z * ny + y) as u32;
                let mut x = 0;
                while x < nx {
                    let k = key(&row[x]);
                    let x0 = x;
                    while x < nx && key(&row[x]) == k {
                        x += 1;
                    }
                    if k != 0 {
                        runs.push(Run { row: r, x0: x0 as u32, x1: x as u32, key: k });
                    }
                }
            }
            runs
        })
        .collect();
    let total: usize = planes.iter().map(Vec::len).sum();
    if total >= u32::MAX as usize {
        return None;
    }
    let mut runs = Vec::with_capacity(total);
    planes.into_iter().for_each(|p| runs.extend(p));
    let rows = nz * ny;
    let mut row_start = vec![0usize; rows + 1];
    for r in &runs {
        row_start[r.row as usize + 1] += 1;
    }
    for i in 0..rows {
        row_start[i + 1] += row_start[i];
    }
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    for r in 0..rows {
        let here = row_start[r]..row_start[r + 1];
        if here.is_empty() {
            continue;
        }
        if r % ny > 0 {
            join_rows(&mut parent, &runs, here.clone(), row_start[r - 1]..row_start[r]);
        }
        if r >= ny {
            join_rows(&mut parent, &runs, here.clone(), row_start[r - ny]..row_start[r - ny + 1]);
        }
    }
    // Number components by their first run (the first voxel in C order).
    let mut number = vec![u32::MAX; runs.len()];
    let mut component = vec![0u32; runs.len()];
    let mut count = 0u32;
    for (i, c) in component.iter_mut().enumerate() {
        let root = find(&mut parent, i as u32) as usize;
        if number[root] == u32::MAX {
            number[root] = count;
            count += 1;
        }
        *c = number[root];
    }
    Some(Labelled { runs, component, count: count as usize })
}
