//! One series' reader annotations, from its XML files to what the store keeps: every file
//! read and placed on the series' slices ([`super::resolve`]), the contoured annotations
//! of all files clustered into nodules ([`super::cluster`]), each nodule's consensus and
//! each annotation's mask filled ([`super::mask`]) and measured on the source grid, and
//! the label volumes painted: `nodules` (1 where a nodule's consensus is), `readers` (how
//! many reader annotations cover each voxel) and `reader_masks` (which readers' do, one
//! bit each). A file or an annotation that
//! cannot be used is listed in the record's `failed` and the rest goes on.

use std::path::PathBuf;
use std::time::Instant;

use ndarray::Array3;

use super::mask::{BoxMask, Outline};
use super::resolve::{Contoured, PointFinding, SeriesSlices};
use crate::geometry::Geometry;
use crate::io::dicom::PlacedSlice;
use crate::store::lidc::{LidcAnnotation, LidcNodule, LidcPoint, LidcRecord};

/// The consensus level of the `nodules` label volume (pylidc's `clevel` default).
pub const CONSENSUS_LEVEL: f64 = 0.5;

/// The grid the series was read on: its slices in the volume's order, its shape and its
/// geometry (as read, before any resampling).
#[derive(Debug, Clone)]
pub struct SourceGrid {
    /// The series' UID (the XML's `SeriesInstanceUid` must be it).
    pub series_uid: String,
    /// Its slices, in the volume's z order.
    pub slices: Vec<PlacedSlice>,
    /// The volume's shape, (z, y, x).
    pub shape_zyx: [usize; 3],
    /// The volume's geometry.
    pub geometry: Geometry,
}

impl SourceGrid {
    /// The grid of a volume read from DICOM (`order`: its slices as read), or, without
    /// `order` (MetaImage, NIfTI: no SOP Instance UIDs), one slice per z index at the
    /// position the geometry gives it; ROIs then find their slice by z alone.
    pub fn new(
        series_uid: &str,
        order: Option<&[PlacedSlice]>,
        shape_zyx: [usize; 3],
        geometry: &Geometry,
    ) -> SourceGrid {
        let slices = match order {
            Some(o) => o.to_vec(),
            None => (0..shape_zyx[0])
                .map(|k| PlacedSlice {
                    sop_instance_uid: None,
                    position_xyz: geometry.index_to_world([k as f64, 0.0, 0.0]),
                    slice_thickness: None,
                    index_z: k as f64,
                })
                .collect(),
        };
        SourceGrid { series_uid: series_uid.to_string(), slices, shape_zyx, geometry: *geometry }
    }

    /// The median step between neighbouring slices' z positions, mm (None for one slice).
    fn median_step(&self) -> Option<f64> {
        let mut d: Vec<f64> = self
            .slices
            .windows(2)
            .map(|w| (w[1].position_xyz[2] - w[0].position_xyz[2]).abs())
            .filter(|v| v.is_finite())
            .collect();
        d.sort_by(f64::total_cmp);
        d.get(d.len() / 2).copied()
    }

    /// pylidc's clustering tolerance: the slice thickness (the first slice's SliceThickness;
    /// where the files give none, the step between slices; else 1 mm).
    pub fn cluster_tolerance(&self) -> f64 {
        self.slices
            .iter()
            .find_map(|s| s.slice_thickness)
            .or_else(|| self.median_step())
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(1.0)
    }

    /// How far an ROI's `imageZposition` may lie from its slice when its SOP Instance UID
    /// names none: half the step between slices (so the nearest slice is the only one
    /// that can match), 0.5 mm for a single slice.
    pub fn z_tolerance(&self) -> f64 {
        self.median_step().map_or(0.5, |s| 0.5 * s).max(1e-3)
    }

    /// The volume z index of slice `k`.
    fn volume_z(&self, k: i32) -> Option<usize> {
        let s = self.slices.get(usize::try_from(k).ok()?)?;
        let z = s.index_z.round();
        (z >= 0.0 && (z as usize) < self.shape_zyx[0]).then_some(z as usize)
    }

    /// The world position (x, y, z) of slice `k`'s pixel (row `y`, column `x`).
    fn world(&self, k: f64, y: f64, x: f64) -> [f64; 3] {
        let lo = k.floor().max(0.0) as usize;
        let index_z = match self.slices.get(lo) {
            Some(a) => match self.slices.get(lo + 1) {
                Some(b) => a.index_z + (k - lo as f64) * (b.index_z - a.index_z),
                None => a.index_z,
            },
            None => k,
        };
        self.geometry.index_to_world([index_z, y, x])
    }
}

/// What a series' reader XML files give the store.
#[derive(Debug, Clone)]
pub struct SeriesAnnotations {
    /// The record's `lidc` entry.
    pub record: LidcRecord,
    /// 1 where a nodule's consensus is, on the source grid.
    pub nodules: Array3<u8>,
    /// How many reader annotations cover each voxel, on the source grid.
    pub readers: Array3<u8>,
    /// Which readers' annotations cover each voxel: bit k for the record's `readers[k]`
    /// (the eighth and later readers share bit 7), on the source grid.
    pub reader_masks: Array3<u8>,
    /// The box (first and last index, (z, y, x)) that holds every voxel painted in the
    /// three maps; None when none is.
    pub painted_box: Option<([usize; 3], [usize; 3])>,
    /// Things the user should know that are not failures (chest X-ray reads skipped, a
    /// score out of range left out, a contour of one or two points, a clustering that
    /// could not bring every nodule to 4 annotations).
    pub notes: Vec<String>,
    /// Seconds reading the XML and placing its annotations.
    pub parse_seconds: f64,
    /// Seconds clustering, filling masks and measuring.
    pub mask_seconds: f64,
}

/// One contoured annotation with the file it came from.
struct Found {
    file: PathBuf,
    a: Contoured,
}

/// Reads `files` (the series' reader XML) and computes everything on `grid`.
pub fn annotate(files: &[PathBuf], grid: &SourceGrid) -> SeriesAnnotations {
    let t0 = Instant::now();
    let [nz, ny, nx] = grid.shape_zyx;
    let slices = SeriesSlices::new(
        &grid.series_uid,
        grid.slices.iter().map(|s| (s.sop_instance_uid.clone(), s.position_xyz[2])),
        [ny, nx].map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
    );
    let mut record = LidcRecord {
        xml_files: files.iter().map(|f| f.display().to_string()).collect(),
        ..Default::default()
    };
    let mut notes = Vec::new();
    let mut found: Vec<Found> = Vec::new();
    let mut points: Vec<(&'static str, PathBuf, PointFinding)> = Vec::new();
    for f in files {
        let msg = match super::read::read_file(f) {
            Ok(m) => m,
            Err(e) => {
                record.failed.push(format!("{e} (file not used)"));
                continue;
            }
        };
        let r = match super::resolve::resolve(&msg, &slices, grid.z_tolerance()) {
            Ok(r) => r,
            Err(e) => {
                record.failed.push(format!("{e} (file not used)"));
                continue;
            }
        };
        if r.cxr_sessions > 0 {
            notes.push(format!(
                "{}: {} chest X-ray read(s) skipped (CXRreadingSession: not of this CT)",
                f.display(),
                r.cxr_sessions
            ));
        }
        record.failed.extend(r.failed.iter().map(ToString::to_string));
        notes.extend(r.notes.iter().map(ToString::to_string));
        found.extend(r.contoured.into_iter().map(|a| Found { file: f.clone(), a }));
        points.extend(r.small.into_iter().map(|p| ("small_nodule", f.clone(), p)));
        points.extend(r.non_nodules.into_iter().map(|p| ("non_nodule", f.clone(), p)));
    }
    let parse_seconds = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let tol = grid.cluster_tolerance();
    let ijk: Vec<Vec<[i32; 3]>> = found
        .iter()
        .map(|f| {
            f.a.outlines
                .iter()
                .flat_map(|o| o.points.iter().map(move |p| [p[1], p[0], o.z]))
                .collect()
        })
        .collect();
    let clusters = super::cluster::cluster(&ijk, tol);
    record.cluster_tolerance = clusters.tol;
    if clusters.unresolved {
        notes.push(format!(
            "the readers' annotations could not be grouped into nodules of at most 4 (tolerance down to {:.3}); as pylidc, the groups are kept as they are",
            clusters.tol
        ));
    }
    let mut nodules_map = Array3::<u8>::zeros((nz, ny, nx));
    let mut readers_map = Array3::<u8>::zeros((nz, ny, nx));
    let mut bits_map = Array3::<u8>::zeros((nz, ny, nx));
    let mut painted: Option<([usize; 3], [usize; 3])> = None;
    let s = grid.geometry.spacing_xyz;
    let voxel_ml = s[0] * s[1] * s[2] / 1000.0;
    for (id, members) in clusters.nodules.iter().enumerate() {
        let outlines: Vec<Vec<Outline>> =
            members.iter().map(|&i| found[i].a.outlines.clone()).collect();
        let Some((consensus, masks)) = super::mask::consensus(&outlines, CONSENSUS_LEVEL) else {
            continue;
        };
        for (&i, m) in members.iter().zip(&masks) {
            let f = &found[i];
            let (voxels, centre) = paint(m, grid, &mut readers_map, |v| v.saturating_add(1));
            // A contour that encloses no pixel centre fills nothing: its place is then the
            // mean of its points (a record holds no NaN).
            let centre = if voxels == 0 { points_centre(&f.a.outlines, grid) } else { centre };
            grow(&mut painted, m, grid);
            let bit = reader_bit(&mut record.readers, &f.a.reader);
            paint(m, grid, &mut bits_map, |v| v | bit);
            let mut zs: Vec<i32> = f.a.outlines.iter().map(|o| o.z).collect();
            zs.sort_unstable();
            zs.dedup();
            record.annotations.push(LidcAnnotation {
                nodule_id: id as u32,
                reader: f.a.reader.clone(),
                reader_nodule_id: f.a.nodule_id.clone(),
                xml_file: f.file.display().to_string(),
                characteristics: std::array::from_fn(|k| f.a.characteristics.get(k)),
                world_xyz: centre,
                voxels,
                volume_ml: voxels as f64 * voxel_ml,
                diameter_mm: contour_diameter(&f.a.outlines, [s[0], s[1]]),
                contour_slices: zs.len() as u32,
            });
        }
        let (voxels, centre) = paint(&consensus, grid, &mut nodules_map, |_| 1);
        let centre = if voxels == 0 {
            let all: Vec<Outline> =
                members.iter().flat_map(|&i| found[i].a.outlines.iter().cloned()).collect();
            points_centre(&all, grid)
        } else {
            centre
        };
        let volume_ml = voxels as f64 * voxel_ml;
        record.nodules.push(LidcNodule {
            nodule_id: id as u32,
            readers: members.len().min(4) as u8,
            world_xyz: centre,
            voxels,
            volume_ml,
            equivalent_diameter_mm: (6.0 * volume_ml * 1000.0 / std::f64::consts::PI).cbrt(),
            max_diameter_mm: axial_diameter(&consensus, [s[0], s[1]]),
            characteristics: std::array::from_fn(|k| {
                median(members.iter().filter_map(|&i| found[i].a.characteristics.get(k)))
            }),
        });
    }
    for (kind, file, p) in points {
        let [k, y, x] = p.zyx.map(f64::from);
        record.points.push(LidcPoint {
            kind: kind.to_string(),
            reader: p.reader,
            reader_id: p.id,
            xml_file: file.display().to_string(),
            world_xyz: grid.world(k, y, x),
        });
    }
    SeriesAnnotations {
        record,
        nodules: nodules_map,
        readers: readers_map,
        reader_masks: bits_map,
        painted_box: painted,
        notes,
        parse_seconds,
        mask_seconds: t1.elapsed().as_secs_f64(),
    }
}

/// Widens `b` to hold the box of mask `m` on the volume (its slices' planes; the
/// consensus of a nodule lies within its annotations' boxes).
fn grow(b: &mut Option<([usize; 3], [usize; 3])>, m: &BoxMask, grid: &SourceGrid) {
    let [bz, by, bx] = m.shape_zyx;
    let planes: Vec<usize> =
        (0..bz).filter_map(|dz| grid.volume_z(m.start_zyx[0] + dz as i32)).collect();
    let (Some(&z0), Some(&z1)) = (planes.iter().min(), planes.iter().max()) else { return };
    let clamp = |v: i32, n: usize| (v.max(0) as usize).min(n.saturating_sub(1));
    let [_, ny, nx] = grid.shape_zyx;
    let lo = [z0, clamp(m.start_zyx[1], ny), clamp(m.start_zyx[2], nx)];
    let hi =
        [z1, clamp(m.start_zyx[1] + by as i32 - 1, ny), clamp(m.start_zyx[2] + bx as i32 - 1, nx)];
    *b = Some(match *b {
        None => (lo, hi),
        Some((l, h)) => {
            (std::array::from_fn(|a| l[a].min(lo[a])), std::array::from_fn(|a| h[a].max(hi[a])))
        }
    });
}

/// The bit of `reader` in the `reader_masks` label volume: its place among `readers` (added
/// when new), the eighth and later sharing the last bit.
fn reader_bit(readers: &mut Vec<String>, reader: &str) -> u8 {
    let k = match readers.iter().position(|r| r == reader) {
        Some(k) => k,
        None => {
            readers.push(reader.to_string());
            readers.len() - 1
        }
    };
    1 << k.min(7)
}

/// Writes `m`'s voxels into `map` (each through `set`) and returns how many there are and
/// their centroid (x, y, z) mm (NaN for none).
fn paint(
    m: &BoxMask,
    grid: &SourceGrid,
    map: &mut Array3<u8>,
    set: impl Fn(u8) -> u8,
) -> (u64, [f64; 3]) {
    let [bz, by, bx] = m.shape_zyx;
    let (mut n, mut sum) = (0u64, [0.0f64; 3]);
    for dz in 0..bz {
        let k = m.start_zyx[0] + dz as i32;
        let Some(vz) = grid.volume_z(k) else { continue };
        let index_z = grid.slices[k as usize].index_z;
        for dy in 0..by {
            for dx in 0..bx {
                if !m.voxels[(dz * by + dy) * bx + dx] {
                    continue;
                }
                let (y, x) = (m.start_zyx[1] + dy as i32, m.start_zyx[2] + dx as i32);
                let (Ok(yu), Ok(xu)) = (usize::try_from(y), usize::try_from(x)) else { continue };
                if let Some(v) = map.get_mut((vz, yu, xu)) {
                    *v = set(*v);
                    n += 1;
                    sum[0] += index_z;
                    sum[1] += f64::from(y);
                    sum[2] += f64::from(x);
                }
            }
        }
    }
    if n == 0 {
        return (0, [f64::NAN; 3]);
    }
    let c = sum.map(|v| v / n as f64);
    (n, grid.geometry.index_to_world(c))
}

/// The mean of the outlines' points (x, y, z) mm: where an annotation whose mask is empty
/// lies (0, 0, 0 for no points, which [`super::resolve`] never lets through).
fn points_centre(outlines: &[Outline], grid: &SourceGrid) -> [f64; 3] {
    let (mut n, mut sum) = (0usize, [0.0f64; 3]);
    for o in outlines {
        for p in &o.points {
            n += 1;
            sum[0] += f64::from(o.z);
            sum[1] += f64::from(p[1]);
            sum[2] += f64::from(p[0]);
        }
    }
    if n == 0 {
        return [0.0; 3];
    }
    let [k, y, x] = sum.map(|v| v / n as f64);
    grid.world(k, y, x)
}

/// numpy's median of `values` (None for none).
fn median(values: impl Iterator<Item = u8>) -> Option<f64> {
    let mut v: Vec<u8> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        f64::from(v[m])
    } else {
        (f64::from(v[m - 1]) + f64::from(v[m])) / 2.0
    })
}

/// pylidc's `Annotation.diameter`: the greatest distance between two points of one
/// contour (contours of one point ignored), in mm with `spacing_xy` (column, row).
pub fn contour_diameter(outlines: &[Outline], spacing_xy: [f64; 2]) -> f64 {
    outlines
        .iter()
        .filter(|o| o.points.len() > 1)
        .map(|o| {
            let pts: Vec<[f64; 2]> = o
                .points
                .iter()
                .map(|p| [f64::from(p[0]) * spacing_xy[0], f64::from(p[1]) * spacing_xy[1]])
                .collect();
            farthest_pair(&pts)
        })
        .fold(0.0, f64::max)
}

/// The longest axial diameter of `m`: the greatest distance between two voxel centres on
/// one slice, mm (0 for a single voxel).
pub fn axial_diameter(m: &BoxMask, spacing_xy: [f64; 2]) -> f64 {
    let [bz, by, bx] = m.shape_zyx;
    let on = |dz: usize, dy: isize, dx: isize| {
        dy >= 0
            && dx >= 0
            && (dy as usize) < by
            && (dx as usize) < bx
            && m.voxels[(dz * by + dy as usize) * bx + dx as usize]
    };
    let mut best: f64 = 0.0;
    for dz in 0..bz {
        // The farthest pair lies on the region's edge: only edge voxels are compared.
        let mut pts = Vec::new();
        for dy in 0..by as isize {
            for dx in 0..bx as isize {
                if on(dz, dy, dx)
                    && !(on(dz, dy - 1, dx)
                        && on(dz, dy + 1, dx)
                        && on(dz, dy, dx - 1)
                        && on(dz, dy, dx + 1))
                {
                    pts.push([dx as f64 * spacing_xy[0], dy as f64 * spacing_xy[1]]);
                }
            }
        }
        best = best.max(farthest_pair(&pts));
    }
    best
}

/// The greatest distance between two of `pts`: over the vertices of their convex hull
/// (Andrew's monotone chain), so a long outline costs n log n, not n^2.
fn farthest_pair(pts: &[[f64; 2]]) -> f64 {
    let mut p = pts.to_vec();
    p.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    p.dedup();
    if p.len() < 2 {
        return 0.0;
    }
    let cross = |o: [f64; 2], a: [f64; 2], b: [f64; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(2 * p.len());
    for pass in [p.clone(), p.iter().rev().copied().collect()] {
        let start = hull.len();
        for q in pass {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0
            {
                hull.pop();
            }
            hull.push(q);
        }
        hull.pop();
    }
    let mut best: f64 = 0.0;
    for (i, a) in hull.iter().enumerate() {
        for b in &hull[i + 1..] {
            best = best.max(((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt());
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn farthest_pair_is_the_brute_force_answer() {
        // A hand case: the diagonal of a 3 x 4 rectangle is 5; interior points change nothing.
        let pts = [[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [0.0, 4.0], [1.0, 1.0], [2.0, 3.0]];
        assert!((farthest_pair(&pts) - 5.0).abs() < 1e-12);
        // Against all pairs, on scattered points.
        let mut s = 12345u64;
        let mut r = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as f64 / 2f64.powi(31) * 50.0
        };
        let pts: Vec<[f64; 2]> = (0..300).map(|_| [r(), r()]).collect();
        let mut brute: f64 = 0.0;
        for a in &pts {
            for b in &pts {
                brute = brute.max(((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt());
            }
        }
        assert!((farthest_pair(&pts) - brute).abs() < 1e-9);
        assert_eq!(farthest_pair(&[[1.0, 1.0]]), 0.0);
    }

    /// Three neighbouring pixels enclose no pixel centre: the annotation and its nodule
    /// are kept, empty, at the mean of the points; nothing in the record is NaN.
    #[test]
    fn an_annotation_that_fills_nothing_is_placed_at_its_points() {
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("069.xml");
        std::fs::write(
            &xml,
            r#"<LidcReadMessage xmlns="http://www.nih.gov"><ResponseHeader><SeriesInstanceUid>1.2</SeriesInstanceUid></ResponseHeader>
<readingSession><servicingRadiologistID>r1</servicingRadiologistID><unblindedReadNodule><noduleID>n</noduleID>
<characteristics><malignancy>3</malignancy></characteristics>
<roi><imageZposition>2</imageZposition><imageSOP_UID>1.2.2</imageSOP_UID><inclusion>TRUE</inclusion>
<edgeMap><xCoord>4</xCoord><yCoord>4</yCoord></edgeMap><edgeMap><xCoord>5</xCoord><yCoord>4</yCoord></edgeMap><edgeMap><xCoord>6</xCoord><yCoord>4</yCoord></edgeMap>
</roi></unblindedReadNodule></readingSession></LidcReadMessage>"#,
        )
        .unwrap();
        let g = Geometry::axis_aligned([0.0, 0.0, 0.0], [1.0, 1.0, 2.0]);
        let grid = SourceGrid::new("1.2", None, [3, 8, 8], &g);
        let order: Vec<PlacedSlice> = grid
            .slices
            .iter()
            .enumerate()
            .map(|(k, s)| PlacedSlice {
                sop_instance_uid: Some(format!("1.2.{}", k + 1)),
                ..s.clone()
            })
            .collect();
        let grid = SourceGrid::new("1.2", Some(&order), [3, 8, 8], &g);
        let a = annotate(&[xml], &grid);
        assert!(a.record.failed.is_empty(), "{:?}", a.record.failed);
        assert_eq!(a.record.nodules.len(), 1);
        assert_eq!(a.record.nodules[0].voxels, 0);
        assert_eq!(a.record.nodules[0].world_xyz, [5.0, 4.0, 2.0]);
        assert_eq!(a.record.annotations[0].world_xyz, [5.0, 4.0, 2.0]);
        a.record.check().unwrap();
    }

    #[test]
    fn medians_are_numpys() {
        assert_eq!(median([4u8, 5, 3].into_iter()), Some(4.0));
        assert_eq!(median([4u8, 5].into_iter()), Some(4.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn the_axial_diameter_of_a_square_is_its_diagonal() {
        // A 3 x 4 block of voxels on one slice: centres span 2 x 3 voxels.
        let mut m = BoxMask::empty([0, 0, 0], [1, 3, 4]);
        m.voxels.iter_mut().for_each(|v| *v = true);
        let d = axial_diameter(&m, [0.5, 2.0]);
        assert!((d - ((3.0f64 * 0.5).powi(2) + (2.0f64 * 2.0).powi(2)).sqrt()).abs() < 1e-12);
    }
}
