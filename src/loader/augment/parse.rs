//! The `--augment` words: comma-separated names, each with optional `:key=value`
//! settings (a range as `lo..hi`, or one number for both ends). Every setting's default is
//! nnU-Net v2's value ([`super::Augment::nnunet`]).
//!
//! | name | keys (defaults) |
//! |---|---|
//! | `nnunet` | nnU-Net v2's 3D default: all below that nnU-Net uses, with its values |
//! | `flip`, `mirror` | `axes=zyx`: mirror each named axis with probability 1/2 |
//! | `rot90` | quarter turns in-plane (square patches) |
//! | `hu` | `shift=25` (HU, +-), `scale=0.05` (1 +- it), before the window |
//! | `noise` | `sigma=0.01`, every patch, after the window |
//! | `rotation` | `p=0.2`, `deg=30` (each axis in +-deg), or `z=`, `y=`, `x=` ranges (degrees) |
//! | `scaling` | `p=0.2`, `range=0.7..1.4`, `per_axis=false` |
//! | `elastic` | `p=0.2`, `magnitude=1..4` (voxels), `scale=0.1..0.2` (of the patch edge) |
//! | `bspline` | the image of a moved patch by cubic B-spline, not trilinear |
//! | `gaussian_noise` | `p=0.1`, `sigma=0..0.1` |
//! | `blur` | `p=0.1`, `sigma=0.5..1` (voxels, drawn per axis) |
//! | `brightness` | `p=0.15`, `range=0.75..1.25`, `around_one=true` |
//! | `contrast` | `p=0.15`, `range=0.75..1.25`, `preserve_range=true`, `around_one=true` |
//! | `low_resolution` | `p=0.125`, `scale=0.5..1`, `upsample=linear` (or `cubic`) |
//! | `gamma` | `p=0.3`, `range=0.7..1.5`, `retain_stats=true`, `around_one=true` |
//! | `inverted_gamma` | as `gamma`, on the inverted image, `p=0.1` |
//! | `none` | nothing; `all`: flip, rot90 (square patches), hu, noise |

use super::intensity::{Intensity, Stage, Upsample};
use super::spatial::Interpolation;
use super::{Augment, Range};

/// Every name `--augment` takes.
pub const NAMES: &[&str] = &[
    "nnunet",
    "flip",
    "mirror",
    "rot90",
    "hu",
    "noise",
    "rotation",
    "scaling",
    "elastic",
    "bspline",
    "gaussian_noise",
    "blur",
    "brightness",
    "contrast",
    "low_resolution",
    "gamma",
    "inverted_gamma",
    "none",
    "all",
];

/// Reads `spec` ([`super::Augment::parse`]) and validates the result.
///
/// # Errors
/// The word, the key or the value that is wrong, named.
pub fn parse(spec: &str, patch_zyx: [usize; 3]) -> Result<Augment, String> {
    let mut a = Augment::default();
    for item in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = item.split(':').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let mut keys = Keys::new(name);
        for kv in parts {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(format!("augment {name}: `{kv}` is not key=value"));
            };
            keys.items.push((k.trim().to_string(), v.trim().to_string(), false));
        }
        apply(&mut a, name, &mut keys, patch_zyx)?;
        keys.all_used()?;
    }
    a.validate(patch_zyx)?;
    Ok(a)
}

/// One word's `key=value` settings, each marked when read.
struct Keys {
    name: String,
    items: Vec<(String, String, bool)>,
}

impl Keys {
    fn new(name: &str) -> Keys {
        Keys { name: name.to_string(), items: Vec::new() }
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let hit = self.items.iter_mut().rev().find(|(k, _, _)| k == key)?;
        hit.2 = true;
        Some(hit.1.clone())
    }

    fn number(&mut self, key: &str, default: f32) -> Result<f32, String> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<f32>()
                .map_err(|_| format!("augment {}: {key}={v} is not a number", self.name)),
        }
    }

    fn range(&mut self, key: &str, lo: f32, hi: f32) -> Result<Range, String> {
        let Some(v) = self.take(key) else { return Ok(Range { lo, hi, around_one: false }) };
        let bad = || format!("augment {}: {key}={v} is not a number or a range lo..hi", self.name);
        let (a, b) = match v.split_once("..") {
            Some((a, b)) => (a.trim().parse::<f32>(), b.trim().parse::<f32>()),
            None => (v.parse::<f32>(), v.parse::<f32>()),
        };
        Ok(Range { lo: a.map_err(|_| bad())?, hi: b.map_err(|_| bad())?, around_one: false })
    }

    fn flag(&mut self, key: &str, default: bool) -> Result<bool, String> {
        match self.take(key).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => Err(format!("augment {}: {key}={v} is not true or false", self.name)),
        }
    }

    fn all_used(&self) -> Result<(), String> {
        match self.items.iter().find(|(_, _, used)| !used) {
            None => Ok(()),
            Some((k, _, _)) => Err(format!("augment {}: no setting `{k}`", self.name)),
        }
    }
}

/// Adds word `name` with its settings to `a`.
fn apply(a: &mut Augment, name: &str, k: &mut Keys, patch: [usize; 3]) -> Result<(), String> {
    let stage = |p: f32, op: Intensity| Stage { p, op };
    match name {
        "none" => {}
        "nnunet" => {
            let n = Augment::nnunet();
            a.flip_zyx = n.flip_zyx;
            a.spatial = n.spatial;
            a.intensity.extend(n.intensity);
        }
        "flip" | "mirror" => {
            let axes = k.take("axes").unwrap_or_else(|| "zyx".into());
            if axes.is_empty() || !axes.chars().all(|c| "zyx".contains(c)) {
                return Err(format!("augment {name}: axes={axes} must name axes among z, y, x"));
            }
            a.flip_zyx = ['z', 'y', 'x'].map(|c| axes.contains(c));
        }
        "rot90" => a.rot90 = true,
        "hu" => (a.hu_shift, a.hu_scale) = (k.number("shift", 25.0)?, k.number("scale", 0.05)?),
        "noise" => a.noise_sigma = k.number("sigma", 0.01)?,
        "all" => {
            a.flip_zyx = [true; 3];
            a.rot90 = patch[1] == patch[2];
            (a.hu_shift, a.hu_scale, a.noise_sigma) = (25.0, 0.05, 0.01);
        }
        "rotation" => {
            a.spatial.p_rotation = k.number("p", 0.2)?;
            let deg = k.number("deg", 30.0)?;
            let each = ["z", "y", "x"].map(|ax| k.range(ax, -deg, deg));
            for (slot, r) in a.spatial.rotation_rad_zyx.iter_mut().zip(each) {
                let r = r?;
                *slot = Range { lo: r.lo.to_radians(), hi: r.hi.to_radians(), around_one: false };
            }
        }
        "scaling" => {
            a.spatial.p_scaling = k.number("p", 0.2)?;
            a.spatial.scaling = k.range("range", 0.7, 1.4)?;
            a.spatial.scaling_per_axis = k.flag("per_axis", false)?;
        }
        "elastic" => {
            a.spatial.p_elastic = k.number("p", 0.2)?;
            a.spatial.elastic_magnitude = k.range("magnitude", 1.0, 4.0)?;
            a.spatial.elastic_scale = k.range("scale", 0.1, 0.2)?;
        }
        "bspline" => a.spatial.interpolation = Interpolation::BSpline3,
        "gaussian_noise" => {
            let sigma = k.range("sigma", 0.0, 0.1)?;
            a.intensity.push(stage(k.number("p", 0.1)?, Intensity::GaussianNoise { sigma }));
        }
        "blur" => {
            let sigma = k.range("sigma", 0.5, 1.0)?;
            a.intensity.push(stage(k.number("p", 0.1)?, Intensity::Blur { sigma }));
        }
        "brightness" => {
            let mut factor = k.range("range", 0.75, 1.25)?;
            factor.around_one = k.flag("around_one", true)?;
            a.intensity.push(stage(k.number("p", 0.15)?, Intensity::Brightness { factor }));
        }
        "contrast" => {
            let mut factor = k.range("range", 0.75, 1.25)?;
            factor.around_one = k.flag("around_one", true)?;
            let preserve_range = k.flag("preserve_range", true)?;
            a.intensity
                .push(stage(k.number("p", 0.15)?, Intensity::Contrast { factor, preserve_range }));
        }
        "low_resolution" => {
            let scale = k.range("scale", 0.5, 1.0)?;
            let upsample = match k.take("upsample").as_deref() {
                None | Some("linear") => Upsample::Linear,
                Some("cubic") => Upsample::Cubic,
                Some(v) => {
                    return Err(format!("augment {name}: upsample={v} is not linear or cubic"));
                }
            };
            a.intensity
                .push(stage(k.number("p", 0.125)?, Intensity::LowResolution { scale, upsample }));
        }
        "gamma" | "inverted_gamma" => {
            let invert = name == "inverted_gamma";
            let mut gamma = k.range("range", 0.7, 1.5)?;
            gamma.around_one = k.flag("around_one", true)?;
            let retain_stats = k.flag("retain_stats", true)?;
            let p = k.number("p", if invert { 0.1 } else { 0.3 })?;
            a.intensity.push(stage(p, Intensity::Gamma { gamma, invert, retain_stats }));
        }
        other => {
            return Err(format!("`{other}` is not one of {}", NAMES.join(", ")));
        }
    }
    Ok(())
}
