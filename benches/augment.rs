//! What each augmentation costs: microseconds per 32x64x64 patch, one thread, each
//! transform always applied with mid-range parameters, and what the nnU-Net preset costs
//! on average (each cost times its probability).
//!
//! `cargo bench --bench augment` (prints a table; `-- --json` prints JSON; `-- WORD`
//! measures only the rows whose name holds WORD, 500 times each, for a profiler).

use std::time::Instant;

use ctstream::loader::Augment;
use ctstream::loader::augment::elastic::ElasticParams;
use ctstream::loader::augment::intensity::{Applied, Upsample};
use ctstream::loader::augment::sample::SourceMap;
use ctstream::loader::augment::spatial::{Interpolation, SpatialParams, matrix};

const P: [usize; 3] = [32, 64, 64];

/// Median microseconds of `f` over `reps` runs.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn spatial_cost(p: &SpatialParams, reps: usize) -> f64 {
    let map = SourceMap::new(p, P);
    let r = map.region([100, 100, 100]);
    let n: usize = r.shape_zyx.iter().product();
    let hu: Vec<i16> = (0..n).map(|i| ((i * 7919) % 1400) as i16 - 1000).collect();
    let m: Vec<u8> = (0..n).map(|i| (i % 97 == 0) as u8).collect();
    time(reps, || {
        std::hint::black_box(map.sample([100, 100, 100], r, &hu, &m));
    })
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    // cargo passes `--bench`; a word without dashes picks rows.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let reps = if only.is_some() { 500 } else { 50 };
    let want = |name: &str| only.as_deref().is_none_or(|w| name.contains(w));
    let n: usize = P.iter().product();
    let base: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let mut rows: Vec<(&str, f64)> = Vec::new();
    let sp = |angles: [f32; 3], scales: [f32; 3], elastic: Option<ElasticParams>| SpatialParams {
        angles_zyx: angles,
        scales_zyx: scales,
        matrix: matrix(angles, scales),
        elastic,
        interpolation: Interpolation::Linear,
    };
    if want("rotation (sample)") {
        rows.push((
            "rotation (sample)",
            spatial_cost(&sp([0.3, -0.2, 0.25], [1.0; 3], None), reps),
        ));
    }
    let cubic = SpatialParams {
        interpolation: Interpolation::BSpline3,
        ..sp([0.3, -0.2, 0.25], [1.0; 3], None)
    };
    if want("rotation, B-spline (sample)") {
        rows.push(("rotation, B-spline (sample)", spatial_cost(&cubic, reps)));
    }
    if want("scaling 1.2 (sample)") {
        rows.push(("scaling 1.2 (sample)", spatial_cost(&sp([0.0; 3], [1.2; 3], None), reps)));
    }
    let e = ElasticParams { magnitude_zyx: [3.0; 3], scale_zyx: [0.15; 3], seed: 1 };
    if want("elastic field") {
        rows.push((
            "elastic field",
            time(reps, || {
                std::hint::black_box(ctstream::loader::augment::elastic::field(&e, P));
            }),
        ));
    }
    if want("elastic (sample)") {
        rows.push(("elastic (sample)", spatial_cost(&sp([0.0; 3], [1.0; 3], Some(e)), reps)));
    }
    let stages: [(&str, Applied); 8] = [
        ("gaussian_noise", Applied::GaussianNoise { sigma: 0.05, seed: 3 }),
        ("blur", Applied::Blur { sigma_zyx: [0.75; 3] }),
        ("brightness", Applied::Brightness { factor: 1.1 }),
        ("contrast", Applied::Contrast { factor: 1.1, preserve_range: true }),
        (
            "low_resolution linear",
            Applied::LowResolution { scale: 0.75, upsample: Upsample::Linear },
        ),
        ("low_resolution cubic", Applied::LowResolution { scale: 0.75, upsample: Upsample::Cubic }),
        ("gamma", Applied::Gamma { gamma: 1.2, invert: false, retain_stats: true }),
        ("inverted_gamma", Applied::Gamma { gamma: 0.8, invert: true, retain_stats: true }),
    ];
    for (name, a) in stages.into_iter().filter(|(name, _)| want(name)) {
        let mut x = base.clone();
        rows.push((
            name,
            time(reps, || {
                x.copy_from_slice(&base);
                a.apply(&mut x, P);
            }),
        ));
    }
    // The preset's average: each stage's cost times its probability; the spatial sample
    // at a rotation's cost when a rotation is drawn (0.2), at a scaling's when only a
    // scaling is (0.8 x 0.2 = 0.16: sampled one axis at a time).
    let preset = Augment::nnunet();
    let cost = |name: &str| rows.iter().find(|r| r.0 == name).map_or(0.0, |r| r.1);
    let (p_rot, p_scale) = (preset.spatial.p_rotation as f64, preset.spatial.p_scaling as f64);
    let mut avg =
        p_rot * cost("rotation (sample)") + (1.0 - p_rot) * p_scale * cost("scaling 1.2 (sample)");
    for s in &preset.intensity {
        let key = match s.name() {
            "low_resolution" => "low_resolution linear",
            other => other,
        };
        avg += s.p as f64 * cost(key);
    }
    if json {
        let m: serde_json::Map<String, serde_json::Value> =
            rows.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
        println!("{}", serde_json::json!({"us_per_patch": m, "nnunet_preset_mean_us": avg}));
    } else {
        println!("{:<26} {:>10}", "transform (32x64x64)", "us/patch");
        for (k, v) in &rows {
            println!("{k:<26} {v:>10.0}");
        }
        if only.is_none() {
            println!("{:<26} {avg:>10.0}", "nnunet preset, mean");
        }
    }
}
