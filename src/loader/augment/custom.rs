//! Transforms of the user's own, chained after the built-in ones: a [`Transform`] is
//! registered on the loader builder ([`crate::loader::LoaderBuilder::transform`]) and run
//! by the loader's workers on every patch, in the order registered, after the built-in
//! stages (so on the windowed, augmented, mirrored values the batch delivers). Each call
//! gets a generator seeded by (seed, epoch, batch, item, the transform's position), so a
//! batch stays a function of (seed, epoch, batch) with any number of workers.

use ndarray::ArrayViewMut3;

/// The error a [`Transform`] returns; the loader names the transform with it.
pub type TransformError = Box<dyn std::error::Error + Send + Sync>;

/// One patch as a [`Transform`] sees it: image and mask (z, y, x), to change in place, and
/// where it came from.
#[derive(Debug)]
pub struct PatchMut<'a> {
    /// The image, as the built-in stages left it (windowed to 0..1, then augmented).
    pub image: ArrayViewMut3<'a, f32>,
    /// The mask (0 or 1 as built; a transform may write soft values).
    pub mask: ArrayViewMut3<'a, f32>,
    /// The scan's series id.
    pub series_id: &'a str,
    /// First voxel (z, y, x) of the patch in the stored grid.
    pub start_zyx: [i64; 3],
    /// Drawn as a positive (centred on a nodule).
    pub positive: bool,
}

/// A transform of one patch, run by the loader's workers (hence `Send + Sync`).
///
/// ```
/// use ctstream::loader::{PatchMut, Transform, TransformError};
/// use rand::Rng;
///
/// /// Zeroes a random 8-voxel cube of the image half the time (a cut-out).
/// #[derive(Debug)]
/// struct CutOut;
///
/// impl Transform for CutOut {
///     fn name(&self) -> &str {
///         "cutout"
///     }
///     fn apply(&self, p: PatchMut<'_>, rng: &mut dyn rand::RngCore) -> Result<(), TransformError> {
///         if rng.random_bool(0.5) {
///             let (z, y, x) = p.image.dim();
///             let at = [rng.random_range(0..z - 7), rng.random_range(0..y - 7), rng.random_range(0..x - 7)];
///             let mut image = p.image;
///             image.slice_mut(ndarray::s![at[0]..at[0] + 8, at[1]..at[1] + 8, at[2]..at[2] + 8]).fill(0.0);
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Transform: Send + Sync + std::fmt::Debug {
    /// A short name, for errors and logs.
    fn name(&self) -> &str;

    /// Changes one patch in place, drawing whatever it needs from `rng` (and nothing from
    /// elsewhere, so that batches stay reproducible).
    ///
    /// # Errors
    /// Whatever the transform finds wrong; the loader reports it with the transform's name
    /// and the batch.
    fn apply(&self, patch: PatchMut<'_>, rng: &mut dyn rand::RngCore)
    -> Result<(), TransformError>;
}
