//! The loader: a reproducible, prefetching stream of nodule-centred patches and masks
//! from a store, as ready `[B, 1, D, H, W]` f32 batches.
//!
//! ```no_run
//! use ctstream::loader::Loader;
//! use ctstream::store::Store;
//!
//! let store = Store::open("luna-store".as_ref())?;
//! let loader = Loader::builder(&store)
//!     .patch([32, 64, 64])
//!     .batch_size(16)
//!     .positive_share(0.8)
//!     .workers(2)
//!     .seed(7)
//!     .build()?;
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     // batch.images and batch.masks: [16, 1, 32, 64, 64] f32, C order.
//!     assert_eq!(batch.images.len(), 16 * 32 * 64 * 64);
//!     // Once the values are in a tensor, the buffers serve a later batch.
//!     loader.recycle(batch);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`sampler`] turns (seed, epoch, batch, item) into a patch: where, positive or not,
//!   which nodule, which augmentations. Batch k of epoch e is a pure function of
//!   (seed, e, k): the same for any number of workers and any thread timing.
//! - [`patch`] reads the region through the shared [`cache::ChunkCache`], makes the mask
//!   (the nodule spheres rasterised, or a label volume's chosen values:
//!   [`LoaderBuilder::mask_label`]), augments, and normalises to f32.
//! - [`stream`] runs the workers and delivers batches in order through bounded channels:
//!   one epoch, a range of it, or on through the epochs ([`Loader::epochs`]).
//! - [`batch`]: f32 batches, or compact ones ([`LoaderConfig::compact`]: int16 HU, uint8
//!   masks and what normalises them, a third of the bytes).
//! - [`spare`] keeps the buffers of batches handed back ([`Loader::recycle`]) for the
//!   workers' next batches.
//! - [`filter`] chooses the nodules positives are centred on (LIDC readers, malignancy).

pub mod augment;
pub mod batch;
pub mod bench;
pub mod cache;
pub mod filter;
pub mod hard;
pub mod negatives;
pub mod patch;
pub mod sampler;
pub mod spare;
pub mod spheres;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, VolumeFile, index};
pub use augment::Augment;
pub use augment::custom::{PatchMut, Transform, TransformError};
pub use batch::{Batch, PatchMeta};
pub use filter::NoduleFilter;
pub use negatives::{NegativeSource, Negatives};
pub use stream::{Epoch, NotYet};

/// Errors from building or running a loader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    /// The store could not be read (a corrupt chunk names the file and chunk).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The options make no sense.
    #[error("loader: {0}")]
    Config(String),
    /// The selection holds no scans.
    #[error("loader: the selection holds no scans ({0})")]
    Empty(String),
    /// A worker thread panicked while building a batch.
    #[error("loader: worker panicked building batch {batch}: {message}")]
    WorkerPanic {
        /// The batch.
        batch: usize,
        /// The panic message.
        message: String,
    },
    /// A transform of the user's own ([`Transform`]) failed.
    #[error("loader: transform `{name}` failed on batch {batch}, item {item}")]
    Transform {
        /// The transform's [`Transform::name`].
        name: String,
        /// The batch.
        batch: usize,
        /// The patch in the batch.
        item: usize,
        /// What the transform said.
        #[source]
        source: TransformError,
    },
}

/// Masks from a label volume instead of the nodule spheres: 1 where the label volume
/// `name` holds one of `values` (every value other than 0 when `values` is empty).
///
/// ```
/// use ctstream::loader::MaskLabel;
/// let m: MaskLabel = "labels:2,3".parse().unwrap();
/// assert_eq!((m.name.as_str(), m.values.as_slice()), ("labels", &[2u8, 3][..]));
/// assert!(m.is_foreground(3) && !m.is_foreground(1) && !m.is_foreground(0));
/// let any: MaskLabel = "nodules".parse().unwrap();
/// assert!(any.is_foreground(1) && any.is_foreground(255) && !any.is_foreground(0));
/// assert!("Nodules".parse::<MaskLabel>().is_err() && "labels:0".parse::<MaskLabel>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskLabel {
    /// The label volume (`nodules`, `labels`, `lungs`, ...).
    pub name: String,
    /// Its foreground values, 1..=255 (empty: every value other than 0).
    pub values: Vec<u8>,
}

/// `NAME`, or `NAME:V,V` with the chosen values (as it is written on the command line).
impl std::fmt::Display for MaskLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        for (k, v) in self.values.iter().enumerate() {
            write!(f, "{}{v}", if k == 0 { ':' } else { ',' })?;
        }
        Ok(())
    }
}

impl MaskLabel {
    /// Whether voxel value `v` is foreground.
    pub fn is_foreground(&self, v: u8) -> bool {
        v != 0 && (self.values.is_empty() || self.values.contains(&v))
    }
}

impl std::str::FromStr for MaskLabel {
    type Err = String;

    /// `NAME` or `NAME:V,V,...` (values 1..=255).
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, values) = s.split_once(':').unwrap_or((s, ""));
        if !crate::store::format::valid_label_name(name) {
            return Err(format!(
                "`{name}` is not a label volume name (lower-case letters, digits and '_', starting with a letter)"
            ));
        }
        let values = values
            .split(',')
            .filter(|v| !v.trim().is_empty())
            .map(|v| match v.trim().parse::<u8>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("`{v}` is not a label value 1..=255")),
            })
            .collect::<Result<Vec<u8>, String>>()?;
        Ok(MaskLabel { name: name.to_string(), values })
    }
}

/// How positive patches choose their nodule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoduleWeighting {
    /// Every nodule equally often.
    Uniform,
    /// In proportion to diameter (large nodules more often).
    Diameter,
}

impl std::str::FromStr for NoduleWeighting {
    type Err = String;

    /// `uniform` or `diameter`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(NoduleWeighting::Uniform),
            "diameter" => Ok(NoduleWeighting::Diameter),
            _ => Err(format!("`{s}` is not uniform or diameter")),
        }
    }
}

/// A train/validation split on series id: a series is in validation when a hash of its
/// id, as a fraction in [0, 1), is below `val_fraction`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training share.
    Train {
        /// Fraction of series held out for validation.
        val_fraction: f64,
    },
    /// The validation share.
    Val {
        /// Fraction of series held out for validation.
        val_fraction: f64,
    },
}

/// Every option of a loader (see [`LoaderBuilder`] for defaults). Serialisable, so a
/// training run can record the loader it used and rebuild it on resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// Patch shape (z, y, x).
    pub patch_zyx: [usize; 3],
    /// Patches per batch.
    pub batch_size: usize,
    /// Share of patches centred on a nodule.
    pub positive_share: f64,
    /// Largest random shift of a positive patch's centre, voxels (z, y, x).
    pub jitter_zyx: [usize; 3],
    /// Where negatives come from: sources with shares ([`Negatives`]).
    pub negatives: Negatives,
    /// Findings of an earlier prediction (a LUNA16 `candidates.csv` as `ctstream predict`
    /// writes it: seriesuid, coordX, coordY, coordZ, probability) to centre the `hard`
    /// negatives on; findings that hit an annotated nodule or excluded finding (within its
    /// radius, as LUNA16 counts a hit) are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_negatives: Option<std::path::PathBuf>,
    /// How nodules are chosen.
    pub weighting: NoduleWeighting,
    /// HU mapped to 0 and 1 (values outside are clamped).
    pub hu_window: [f32; 2],
    /// Augmentations.
    pub augment: Augment,
    /// Worker threads.
    pub workers: usize,
    /// Batches built ahead of the consumer.
    pub prefetch: usize,
    /// For a store on object storage: threads that fetch (and decode into the cache) the
    /// chunks of the patches ahead of the workers, so that many requests are in flight and
    /// the server's latency is hidden; none for a local store. Default
    /// [`DEFAULT_FETCHERS`].
    #[serde(default = "default_fetchers")]
    pub fetchers: usize,
    /// Decoded-chunk cache budget, bytes.
    pub cache_bytes: usize,
    /// Seed.
    pub seed: u64,
    /// Only these series (None: all).
    pub series: Option<Vec<String>>,
    /// Train/validation split.
    pub split: Option<Split>,
    /// (rank, world): this rank's share of the selected scans.
    pub shard: Option<(usize, usize)>,
    /// Batches per epoch (None: enough for every nodule once at the positive share).
    pub batches_per_epoch: Option<usize>,
    /// Masks from this label volume instead of the nodule spheres (None: spheres). Where
    /// the selection has no nodules in the index, positives are centred on the label's
    /// connected components of the chosen values instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_label: Option<MaskLabel>,
    /// Which nodules positives are centred on (default: every nodule of the index that is
    /// not an excluded finding).
    #[serde(default, skip_serializing_if = "NoduleFilter::is_none")]
    pub nodule_filter: NoduleFilter,
    /// Deliver compact batches ([`Batch::compact`]: int16 HU and uint8 masks, a third of
    /// the bytes) and leave the window to the consumer: on the device in the training
    /// loop or `ctstream.torch.normalise`. Refused with augmentations that interpolate or
    /// change values after the window (spatial, intensity, noise) and with transforms of
    /// the user's own: those need f32.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compact: bool,
}

/// The default of [`LoaderConfig::fetchers`]: requests in flight at once while the
/// workers build batches from a store on object storage.
pub const DEFAULT_FETCHERS: usize = 32;

fn default_fetchers() -> usize {
    DEFAULT_FETCHERS
}

/// The most voxels of one patch (a 512-voxel cube): a larger patch is refused before
/// anything is allocated.
pub const MAX_PATCH_VOXELS: u64 = 1 << 27;
/// The largest jitter of a patch centre per axis, voxels (a scan side is far smaller).
pub const MAX_JITTER: usize = 1 << 16;
/// The most bytes of one batch, its images and masks together (f32: 8 bytes a voxel).
pub const MAX_BATCH_BYTES: u64 = 4 << 30;
/// The most bytes of batches a loader holds at once: those prefetched, those its workers
/// are building and the one delivered (`(prefetch + workers + 1) x` a batch).
pub const MAX_IN_FLIGHT_BYTES: u64 = 16 << 30;
/// The largest decoded-chunk cache budget, bytes (1 TiB: a budget beyond any memory means
/// no budget).
pub const MAX_CACHE_BYTES: usize = 1 << 40;
/// The most ranks a selection is sharded over ([`LoaderConfig::shard`]).
pub const MAX_WORLD: usize = 1 << 16;
/// The most worker threads of a loader.
pub const MAX_WORKERS: usize = 256;
/// The most batches built ahead of the consumer.
pub const MAX_PREFETCH: usize = 1024;
/// The most threads fetching chunks from object storage ([`LoaderConfig::fetchers`]).
pub const MAX_FETCHERS: usize = 1024;

impl LoaderConfig {
    /// Checks every option on its own and against the others (not against a store: the
    /// series, labels and nodules are checked when the loader is built). The CLI and the
    /// Python package pass their values here unchecked.
    ///
    /// # Errors
    /// [`LoaderError::Config`] naming the option and its value.
    pub fn validate(&self) -> Result<(), LoaderError> {
        let bad = |m: String| Err(LoaderError::Config(m));
        // Sizes first, each against its documented limit, before any of them is used to
        // allocate or spawn anything.
        let voxels = self.patch_zyx.iter().try_fold(1u64, |n, &s| n.checked_mul(s as u64));
        if self.patch_zyx.contains(&0) || voxels.is_none_or(|n| n > MAX_PATCH_VOXELS) {
            return bad(format!(
                "patch {:?}: each side at least 1, at most {MAX_PATCH_VOXELS} voxels a patch",
                self.patch_zyx
            ));
        }
        let voxels = voxels.unwrap_or(MAX_PATCH_VOXELS);
        let batch_bytes = voxels.saturating_mul(8).saturating_mul(self.batch_size as u64);
        if self.batch_size == 0 || batch_bytes > MAX_BATCH_BYTES {
            return bad(format!(
                "batch_size {}: give 1 to {} for patch {:?} (a batch of images and masks holds at most {} GiB)",
                self.batch_size,
                (MAX_BATCH_BYTES / (voxels * 8)).max(1),
                self.patch_zyx,
                MAX_BATCH_BYTES >> 30
            ));
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return bad(format!("workers {}: give 1 to {MAX_WORKERS}", self.workers));
        }
        if self.prefetch == 0 || self.prefetch > MAX_PREFETCH {
            return bad(format!("prefetch {}: give 1 to {MAX_PREFETCH}", self.prefetch));
        }
        let held = (self.prefetch + self.workers + 1) as u64;
        if held.saturating_mul(batch_bytes) > MAX_IN_FLIGHT_BYTES {
            return bad(format!(
                "prefetch {} and workers {} with batches of {} MiB hold {} MiB at once: at most {} GiB (lower prefetch, workers or batch_size)",
                self.prefetch,
                self.workers,
                batch_bytes >> 20,
                held.saturating_mul(batch_bytes) >> 20,
                MAX_IN_FLIGHT_BYTES >> 30
            ));
        }
        if self.fetchers > MAX_FETCHERS {
            return bad(format!("fetchers {}: give 0 to {MAX_FETCHERS}", self.fetchers));
        }
        if self.cache_bytes > MAX_CACHE_BYTES {
            return bad(format!(
                "cache_bytes {}: give 0 to {MAX_CACHE_BYTES} (1 TiB)",
                self.cache_bytes
            ));
        }
        if self.jitter_zyx.iter().any(|&j| j > MAX_JITTER) {
            return bad(format!("jitter {:?}: at most {MAX_JITTER} a side", self.jitter_zyx));
        }
        if self.batches_per_epoch == Some(0) {
            return bad("batches_per_epoch 0: an epoch needs at least 1 batch".to_string());
        }
        if !(0.0..=1.0).contains(&self.positive_share) {
            return bad(format!("positive_share {}: must lie in [0, 1]", self.positive_share));
        }
        if !self.hu_window.iter().all(|x| x.is_finite()) {
            return bad(format!("hu_window {:?}: must be finite", self.hu_window));
        }
        if self.hu_window[0] >= self.hu_window[1] {
            return bad(format!("hu_window {:?}: must be LO < HI", self.hu_window));
        }
        self.augment.validate(self.patch_zyx).map_err(LoaderError::Config)?;
        if self.compact
            && let Some(what) = self.augment.needs_float()
        {
            return bad(format!(
                "compact batches hold the stored HU, and augment {what} needs f32 values: turn compact off or leave {what} out"
            ));
        }
        if let Some(Split::Train { val_fraction } | Split::Val { val_fraction }) = self.split
            && !(0.0..1.0).contains(&val_fraction)
        {
            return bad(format!("val_fraction {val_fraction}: must lie in [0, 1)"));
        }
        if let Some((rank, world)) = self.shard
            && (world == 0 || world > MAX_WORLD || rank >= world)
        {
            return bad(format!(
                "shard (rank {rank}, world {world}): needs rank < world <= {MAX_WORLD}"
            ));
        }
        self.nodule_filter.validate().map_err(LoaderError::Config)?;
        match (self.negatives.uses(NegativeSource::Hard), &self.hard_negatives) {
            (true, None) => {
                return bad(
                    "negatives from `hard` asked for without a findings file (hard_negatives)"
                        .to_string(),
                );
            }
            (false, Some(f)) => {
                return bad(format!(
                    "hard_negatives {}: give `hard` a share of the negatives to use it (negatives {})",
                    f.display(),
                    self.negatives
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            patch_zyx: [32, 64, 64],
            batch_size: 8,
            positive_share: 0.8,
            jitter_zyx: [8, 8, 8],
            negatives: Negatives::default(),
            hard_negatives: None,
            weighting: NoduleWeighting::Uniform,
            hu_window: [-1000.0, 400.0],
            augment: Augment::default(),
            workers: 2,
            prefetch: 4,
            fetchers: DEFAULT_FETCHERS,
            cache_bytes: 256 << 20,
            seed: 0,
            series: None,
            split: None,
            shard: None,
            batches_per_epoch: None,
            mask_label: None,
            nodule_filter: NoduleFilter::default(),
            compact: false,
        }
    }
}

/// Builds a [`Loader`]; every method sets one option of [`LoaderConfig`].
#[derive(Debug)]
pub struct LoaderBuilder<'s> {
    store: &'s Store,
    cfg: LoaderConfig,
    transforms: Vec<Arc<dyn Transform>>,
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident: $t:ty => $field:ident),* $(,)?) => {$(
        $(#[$m])*
        pub fn $name(mut self, v: $t) -> Self {
            self.cfg.$field = v;
            self
        }
    )*};
}

impl<'s> LoaderBuilder<'s> {
    setters! {
        /// Patch shape (z, y, x); default 32 x 64 x 64.
        patch: [usize; 3] => patch_zyx,
        /// Patches per batch; default 8.
        batch_size: usize => batch_size,
        /// Share of nodule-centred patches; default 0.8 (as RadIO's `sample_nodules`).
        positive_share: f64 => positive_share,
        /// Largest shift of a positive patch's centre (z, y, x) voxels; default 8, 8, 8.
        jitter: [usize; 3] => jitter_zyx,
        /// Sources of negatives with their shares; default uniform inside the lung mask.
        negatives: Negatives => negatives,
        /// Findings to centre `hard` negatives on ([`LoaderConfig::hard_negatives`]).
        hard_negatives: Option<std::path::PathBuf> => hard_negatives,
        /// Nodule choice; default uniform.
        weighting: NoduleWeighting => weighting,
        /// HU window mapped to 0..1; default -1000..400 (RadIO's `normalize_hu`).
        hu_window: [f32; 2] => hu_window,
        /// Augmentations; default none.
        augment: Augment => augment,
        /// Worker threads; default 2.
        workers: usize => workers,
        /// Batches built ahead; default 4.
        prefetch: usize => prefetch,
        /// Threads fetching the chunks of coming patches from object storage; default
        /// [`DEFAULT_FETCHERS`] (none are started for a local store).
        fetchers: usize => fetchers,
        /// Cache budget in bytes; default 256 MiB.
        cache_bytes: usize => cache_bytes,
        /// Seed; default 0.
        seed: u64 => seed,
        /// Train/validation split on series id.
        split: Option<Split> => split,
        /// Batches per epoch.
        batches_per_epoch: Option<usize> => batches_per_epoch,
        /// Which nodules positives are centred on; default all.
        nodule_filter: NoduleFilter => nodule_filter,
        /// Compact batches (int16 HU, uint8 masks; [`LoaderConfig::compact`]); default off.
        compact: bool => compact,
    }

    /// Masks from label volume `name`, foreground where it holds one of `values` (every
    /// value other than 0 when empty), instead of the nodule spheres; see
    /// [`LoaderConfig::mask_label`].
    pub fn mask_label(mut self, name: &str, values: &[u8]) -> Self {
        self.cfg.mask_label = Some(MaskLabel { name: name.to_string(), values: values.to_vec() });
        self
    }

    /// Only these series.
    pub fn series(mut self, ids: &[&str]) -> Self {
        self.cfg.series = Some(ids.iter().map(|s| s.to_string()).collect());
        self
    }

    /// This rank's share of the selected scans, for data-parallel training: scan i (in
    /// id order) belongs to rank i % world.
    pub fn shard(mut self, rank: usize, world: usize) -> Self {
        self.cfg.shard = Some((rank, world));
        self
    }

    /// Adds a transform of the user's own, run on every patch after the built-in
    /// augmentations and after the transforms added before it ([`augment::custom`]).
    pub fn transform(mut self, t: impl Transform + 'static) -> Self {
        self.transforms.push(Arc::new(t));
        self
    }

    /// Replaces the whole configuration (the transforms added stay).
    pub fn config(mut self, cfg: LoaderConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Checks the options, selects the scans, opens their volume files and reads the
    /// nodules (and candidates) from the index.
    ///
    /// # Errors
    /// [`LoaderError::Config`] for inconsistent options, [`LoaderError::Empty`] for an
    /// empty selection, [`LoaderError::Store`] for unreadable files.
    pub fn build(self) -> Result<Loader, LoaderError> {
        Loader::new(self.store, self.cfg, self.transforms)
    }
}

/// A sphere in a scan's stored grid: centre and radii in voxels (z, y, x).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sphere {
    /// Centre (z, y, x), continuous voxel index.
    pub centre_zyx: [f64; 3],
    /// Radius per axis in voxels (z, y, x).
    pub radius_zyx: [f64; 3],
}

/// One selected scan.
#[derive(Debug)]
pub struct ScanEntry {
    /// Series id.
    pub id: String,
    /// Its volume file.
    pub volume: Arc<VolumeFile>,
    /// Nodules of `annotations.csv` in this scan (the mask).
    pub nodules: Vec<Sphere>,
    /// Nodule ids (`nodule_id` of the index), parallel to `nodules`.
    pub nodule_ids: Vec<i32>,
    /// `nodules` bucketed by position, so a patch's mask looks only at those near it.
    pub nodule_grid: spheres::SphereGrid,
    /// Where its lung voxels are, for [`NegativeSource::Lungs`] (`None`: no lung mask, or an
    /// empty one).
    pub lungs: Option<LungIndex>,
    /// The label volume masks come from ([`LoaderConfig::mask_label`]).
    pub mask_label: Option<Arc<VolumeFile>>,
}

/// Where one scan's lung voxels are, chunk by chunk: a lung voxel is drawn uniformly by
/// choosing a chunk in proportion to its lung voxels, then one of them
/// ([`patch::resolve`] finds it in the decoded chunk).
#[derive(Debug)]
pub struct LungIndex {
    /// The `lungs` label volume.
    pub label: Arc<VolumeFile>,
    /// Numbers (C order) of the chunks that hold lung voxels.
    pub chunks: Vec<u32>,
    /// Lung voxels in `chunks[..=k]`.
    pub cumulative: Vec<u64>,
}

impl LungIndex {
    /// Reads the label volume once and counts its lung voxels per chunk; `None` when it
    /// has none.
    fn build(label: Arc<VolumeFile>) -> Result<Option<LungIndex>, LoaderError> {
        let grid = label.header().grid();
        let mut chunks = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        // On object storage, the whole label volume in a few coalesced requests (it is small:
        // mostly zeros, compressed).
        let fetched = label.fetch_region(
            crate::store::Region { start_zyx: [0; 3], shape_zyx: label.shape_zyx() },
            |_| false,
        )?;
        for cz in 0..grid[0] {
            for cy in 0..grid[1] {
                for cx in 0..grid[2] {
                    let n = label
                        .decode_chunk_fetched::<u8>([cz, cy, cx], &fetched)?
                        .iter()
                        .filter(|&&v| v != 0)
                        .count() as u64;
                    if n > 0 {
                        total += n;
                        chunks.push(((cz * grid[1] + cy) * grid[2] + cx) as u32);
                        cumulative.push(total);
                    }
                }
            }
        }
        Ok((total > 0).then_some(LungIndex { label, chunks, cumulative }))
    }

    /// Lung voxels in the scan.
    pub fn voxels(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// A lung voxel drawn uniformly: (position in [`LungIndex::chunks`], rank of the voxel
    /// in that chunk, C order), one draw from `rng`. Every index the loader builds holds
    /// at least one lung voxel (a scan without any gets none); an empty one, made by hand
    /// from the public fields, panics here.
    pub fn draw(&self, rng: &mut impl rand::Rng) -> (usize, u64) {
        let t = rng.random_range(0..self.voxels());
        let k = self.cumulative.partition_point(|&c| c <= t).min(self.chunks.len() - 1);
        (k, t - if k == 0 { 0 } else { self.cumulative[k - 1] })
    }
}

impl ScanEntry {
    /// The mask of the patch of `shape` voxels at `start_zyx`: the nodules near it
    /// rasterised ([`patch::rasterize`]), at a cost independent of the nodules elsewhere.
    pub fn mask(&self, start_zyx: [i64; 3], shape: [usize; 3]) -> Vec<u8> {
        let mut m = Vec::new();
        self.mask_into(start_zyx, shape, &mut m);
        m
    }

    /// [`ScanEntry::mask`] into `m` (resized to the patch; what it held is overwritten).
    /// Returns the box of its voxels that are on.
    pub fn mask_into(
        &self,
        start_zyx: [i64; 3],
        shape: [usize; 3],
        m: &mut Vec<u8>,
    ) -> Option<augment::sample::OnBox> {
        m.resize(shape.iter().product(), 0);
        self.mask_onto(start_zyx, shape, m)
    }

    /// [`ScanEntry::mask`] into `m`, which holds exactly the patch's voxels (what it held
    /// is overwritten). Returns the box of its voxels that are on.
    pub fn mask_onto(
        &self,
        start_zyx: [i64; 3],
        shape: [usize; 3],
        m: &mut [u8],
    ) -> Option<augment::sample::OnBox> {
        let near: Vec<Sphere> =
            self.nodule_grid.near(start_zyx, shape).into_iter().map(|i| self.nodules[i]).collect();
        m.fill(0);
        patch::rasterize_onto(&near, start_zyx, shape, m)
    }
}

/// State shared by the loader and its workers.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub cfg: LoaderConfig,
    /// Selected scans, in id order.
    pub scans: Vec<ScanEntry>,
    /// Positive targets: (scan, index into its nodules), with cumulative weights.
    pub positives: Vec<(usize, usize)>,
    /// Cumulative weights of `positives` (last = total).
    pub cumulative: Vec<f64>,
    /// Class-0 candidates of the index in the selection: (scan, centre (z, y, x)).
    pub candidates: Vec<(usize, [f64; 3])>,
    /// Hard negatives from [`LoaderConfig::hard_negatives`]: (scan, centre (z, y, x)).
    pub hard_negatives: Vec<(usize, [f64; 3])>,
    /// The decoded-chunk cache (scan chunks, and label chunks under
    /// [`cache::label_key`]).
    pub cache: cache::ChunkCache,
    /// What the user should know about this selection (scans without lungs under
    /// [`NegativeSource::Lungs`]), said once by whoever builds the loader.
    pub notes: Vec<String>,
    /// The user's own transforms, in the order they run ([`LoaderBuilder::transform`]).
    pub transforms: Vec<Arc<dyn Transform>>,
    /// Batch buffers handed back by the consumer ([`Loader::recycle`]).
    pub spare: Arc<spare::Spare>,
}

/// The loader. Cheap to keep; each [`Loader::epoch`] starts its own workers.
#[derive(Debug)]
pub struct Loader {
    shared: Arc<Shared>,
}

/// Hash of a series id as a fraction in [0, 1) (FNV-1a, 64 bit).
pub fn split_fraction(id: &str) -> f64 {
    (crate::seed::fnv1a(id.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

impl Loader {
    /// A builder with the defaults of [`LoaderConfig`].
    pub fn builder(store: &Store) -> LoaderBuilder<'_> {
        LoaderBuilder { store, cfg: LoaderConfig::default(), transforms: Vec::new() }
    }

    fn new(
        store: &Store,
        cfg: LoaderConfig,
        transforms: Vec<Arc<dyn Transform>>,
    ) -> Result<Loader, LoaderError> {
        cfg.validate()?;
        if cfg.compact && !transforms.is_empty() {
            return Err(LoaderError::Config(format!(
                "compact batches hold the stored HU, and transform `{}` works on f32 patches: turn compact off",
                transforms[0].name()
            )));
        }
        // Selection.
        let mut ids: Vec<&str> = store.series_ids().collect();
        if let Some(list) = &cfg.series {
            for id in list {
                store.scan(id)?;
            }
            ids.retain(|id| list.iter().any(|l| l == id));
        }
        if let Some(split) = cfg.split {
            ids.retain(|id| match split {
                Split::Train { val_fraction } => split_fraction(id) >= val_fraction,
                Split::Val { val_fraction } => split_fraction(id) < val_fraction,
            });
        }
        if let Some((rank, world)) = cfg.shard {
            ids = ids
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % world == rank)
                .map(|(_, id)| id)
                .collect();
        }
        if ids.is_empty() {
            return Err(LoaderError::Empty(format!(
                "store has {} scans; series {:?}, split {:?}, shard {:?}",
                store.scans().len(),
                cfg.series,
                cfg.split,
                cfg.shard
            )));
        }
        let nodule_rows = store.nodules()?;
        let mut by_id: BTreeMap<&str, Vec<&index::NoduleRow>> = BTreeMap::new();
        for n in nodule_rows.iter().filter(|n| !n.is_excluded() && cfg.nodule_filter.keeps(n)) {
            by_id.entry(n.series_id.as_str()).or_default().push(n);
        }
        let mut scans = Vec::new();
        let mut positives = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        // Masks from a label volume: every selected scan must have it. Without nodules in
        // the index for the selection, its components are the positives.
        let from_components =
            cfg.mask_label.is_some() && ids.iter().all(|id| !by_id.contains_key(id));
        for (si, id) in ids.iter().enumerate() {
            let volume = store.volume(id)?;
            let mut nodules = Vec::new();
            let mut nodule_ids = Vec::new();
            let mut mask_label = None;
            if let Some(ml) = &cfg.mask_label {
                let rec = store.scan(id)?;
                let Some(l) = rec.label(&ml.name) else {
                    let have: Vec<&str> = rec.labels.iter().map(|l| l.name.as_str()).collect();
                    return Err(LoaderError::Config(format!(
                        "scan {id} has no label volume `{}` to take masks from (it has: {})",
                        ml.name,
                        if have.is_empty() { "none".to_string() } else { have.join(", ") }
                    )));
                };
                mask_label = Some(store.label(id, &ml.name)?);
                if from_components {
                    let sp = rec.spacing_xyz;
                    for (k, c) in
                        l.components.iter().enumerate().filter(|(_, c)| ml.is_foreground(c.value))
                    {
                        // The sphere of the component's volume stands for its size; the mask
                        // is the label volume's own.
                        let r_mm = c.equivalent_diameter_mm / 2.0;
                        nodules.push(Sphere {
                            centre_zyx: c.centroid_zyx,
                            radius_zyx: [r_mm / sp[2], r_mm / sp[1], r_mm / sp[0]],
                        });
                        nodule_ids.push(k as i32);
                        positives.push((si, nodules.len() - 1));
                        total += match cfg.weighting {
                            NoduleWeighting::Uniform => 1.0,
                            NoduleWeighting::Diameter => c.equivalent_diameter_mm,
                        };
                        cumulative.push(total);
                    }
                }
            }
            for n in by_id.get(id).map(Vec::as_slice).unwrap_or(&[]) {
                let Some(r) = n.radius_zyx else { continue };
                nodules.push(Sphere { centre_zyx: n.voxel_zyx, radius_zyx: r });
                nodule_ids.push(n.nodule_id);
                if n.inside {
                    positives.push((si, nodules.len() - 1));
                    total += match cfg.weighting {
                        NoduleWeighting::Uniform => 1.0,
                        NoduleWeighting::Diameter => n.diameter_mm.unwrap_or(1.0),
                    };
                    cumulative.push(total);
                }
            }
            let nodule_grid = spheres::SphereGrid::build(&nodules);
            scans.push(ScanEntry {
                id: id.to_string(),
                volume,
                nodules,
                nodule_ids,
                nodule_grid,
                lungs: None,
                mask_label,
            });
        }
        let mut notes = Vec::new();
        // A scan whose record is damaged is not in `store.scans()`: say so, or a run on
        // the store quietly trains or measures on fewer scans than the user stored.
        if let Some(first) = store.damaged().first() {
            let n = store.damaged().len();
            let (s, its, it, more) =
                if n == 1 { ("", "its", "it", "") } else { ("s", "their", "them", ", and more") };
            notes.push(format!(
                "{n} scan{s} of the store left out, {its} record damaged ({}: {}{more}); `ctstream inspect` lists {it}, `ctstream ingest --resume` with the inputs stores {it} again",
                first.path.display(),
                first.reason,
            ));
        }
        let negatives_drawn = cfg.positive_share < 1.0;
        if (cfg.negatives.uses(NegativeSource::Lungs) || cfg.negatives.uses(NegativeSource::Dense))
            && negatives_drawn
        {
            // Each scan's lung mask, counted per chunk once (in parallel over scans).
            use rayon::prelude::*;
            let indexes: Vec<Result<Option<LungIndex>, LoaderError>> = scans
                .par_iter()
                .map(|s| match store.scan(&s.id)?.label(crate::labels::LUNGS) {
                    Some(l) if l.foreground_voxels() > 0 => {
                        LungIndex::build(store.label(&s.id, crate::labels::LUNGS)?)
                    }
                    _ => Ok(None),
                })
                .collect();
            for (s, ix) in scans.iter_mut().zip(indexes) {
                s.lungs = ix?;
            }
            let without: Vec<&str> =
                scans.iter().filter(|s| s.lungs.is_none()).map(|s| s.id.as_str()).collect();
            if !without.is_empty() {
                let shown: Vec<&str> = without.iter().take(5).copied().collect();
                notes.push(format!(
                    "{} of {} scans have no lung mask (or an empty one): their lung negatives are drawn at random positions, their dense ones on tissue anywhere ({}{}); `ctstream ingest` computes lung masks unless --no-lung-mask",
                    without.len(),
                    scans.len(),
                    shown.join(", "),
                    if without.len() > shown.len() { ", ..." } else { "" }
                ));
            }
        }
        let mut candidates = Vec::new();
        if cfg.negatives.uses(NegativeSource::Candidates) {
            for c in store.candidates()? {
                if c.class == 0
                    && c.inside
                    && let Some(si) = scans.iter().position(|s| s.id == c.series_id)
                {
                    candidates.push((si, c.voxel_zyx));
                }
            }
            if candidates.is_empty() && negatives_drawn {
                return Err(LoaderError::Config(
                    "negatives from candidates asked for, but the index has no class-0 candidates in the selection".to_string(),
                ));
            }
        }
        let mut hard_negatives = Vec::new();
        if let Some(path) = cfg.hard_negatives.as_deref() {
            hard_negatives = hard::read(path, &scans, &nodule_rows)?;
            if hard_negatives.is_empty() && negatives_drawn {
                return Err(LoaderError::Config(format!(
                    "{}: none of its findings lies in a selected scan away from every annotated nodule: no hard negatives to draw",
                    path.display()
                )));
            }
        }
        let cache = cache::ChunkCache::new(cfg.cache_bytes);
        let workers = cfg.workers;
        Ok(Loader {
            shared: Arc::new(Shared {
                cfg,
                scans,
                positives,
                cumulative,
                candidates,
                hard_negatives,
                cache,
                notes,
                transforms,
                spare: Arc::new(spare::Spare::new(2 * (workers + 1))),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.shared.cfg
    }

    /// Ids of the selected scans.
    pub fn series_ids(&self) -> Vec<&str> {
        self.shared.scans.iter().map(|s| s.id.as_str()).collect()
    }

    /// Nodules available as positive targets.
    pub fn positive_targets(&self) -> usize {
        self.shared.positives.len()
    }

    /// Batches in one epoch: the configured number, or enough batches for every nodule
    /// once at the positive share (at least 1).
    pub fn batches_per_epoch(&self) -> usize {
        let c = &self.shared.cfg;
        c.batches_per_epoch.unwrap_or_else(|| {
            let per_batch = (c.batch_size as f64 * c.positive_share).max(1e-9);
            ((self.shared.positives.len() as f64 / per_batch).ceil() as usize).max(1)
        })
    }

    /// The batches of epoch `epoch`, built ahead by the workers, delivered in order.
    /// Dropping the iterator stops the workers.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        Epoch::start(self.shared.clone(), epoch, self.batches_per_epoch())
    }

    /// The batches `first..first + count` of epoch `epoch` (for resuming mid-epoch).
    ///
    /// # Errors
    /// [`LoaderError::Config`] when the range runs past the epoch's
    /// [`Loader::batches_per_epoch`] batches (the batches after it belong to no epoch).
    pub fn batches(&self, epoch: u64, first: usize, count: usize) -> Result<Epoch, LoaderError> {
        let n = self.batches_per_epoch();
        match first.checked_add(count) {
            Some(end) if end <= n => {
                Ok(Epoch::start_range(self.shared.clone(), epoch, first, count, n))
            }
            _ => Err(LoaderError::Config(format!(
                "batches from first {first}, count {count}: an epoch has batches 0..{n} (give first + count <= {n})"
            ))),
        }
    }

    /// Every batch from batch `first` of epoch `epoch` on, through the epochs after it,
    /// built by the same threads: where an epoch ends, the workers are already building
    /// the next one's first batches (each batch says its `epoch` and `index`). For a
    /// consumer that reads epoch after epoch, an epoch of few batches then costs no
    /// thread start and no empty pipeline.
    ///
    /// # Errors
    /// [`LoaderError::Config`] when `first` is not a batch of an epoch.
    pub fn epochs(&self, epoch: u64, first: usize) -> Result<Epoch, LoaderError> {
        let n = self.batches_per_epoch();
        if first >= n {
            return Err(LoaderError::Config(format!(
                "epochs from batch {first}: an epoch has batches 0..{n}"
            )));
        }
        Ok(Epoch::start_range(self.shared.clone(), epoch, first, usize::MAX - first, n))
    }

    /// `count` batches from batch `first` of epoch `epoch` on, through the epochs after it
    /// ([`Loader::epochs`]): for benchmarks that stream for a time.
    pub(crate) fn stream(&self, epoch: u64, first: usize, count: usize) -> Epoch {
        Epoch::start_range(self.shared.clone(), epoch, first, count, self.batches_per_epoch())
    }

    /// Builds one batch on the calling thread (what each worker does).
    ///
    /// # Errors
    /// [`LoaderError::Store`] for unreadable chunks.
    pub fn build_batch(&self, epoch: u64, index: usize) -> Result<Batch, LoaderError> {
        patch::build_batch(&self.shared, epoch, index)
    }

    /// What the user should know about this loader's selection (for example scans
    /// without lungs under [`NegativeSource::Lungs`]); print each once.
    pub fn notes(&self) -> &[String] {
        &self.shared.notes
    }

    /// Chunk cache counters.
    pub fn cache_stats(&self) -> cache::CacheStats {
        self.shared.cache.stats()
    }

    /// Hands `batch`'s buffers back to the loader, whose workers build later batches in
    /// them rather than in fresh allocations (each of which the kernel maps and zeroes page
    /// by page, and takes back when it is dropped): for a consumer done with a batch's
    /// values, e.g. once they are copied into a tensor. Dropping a batch instead is
    /// always correct.
    pub fn recycle(&self, batch: Batch) {
        self.shared.spare.give(batch);
    }

    /// The shared state (for benchmarks and tests).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A size as a user types it: mostly a plain one (1..=64), else a hostile one: 0, a
    /// power of two near a limit (either side), a large number, or the largest.
    fn size(rng: &mut rand_chacha::ChaCha8Rng) -> usize {
        if rng.random_bool(0.8) {
            return rng.random_range(1..=64);
        }
        match rng.random_range(0..4) {
            0 => 0,
            1 => {
                let p = 1usize << rng.random_range(0..40);
                p + rng.random_range(0..3) - 1
            }
            2 => rng.random_range(0..usize::MAX),
            _ => usize::MAX,
        }
    }

    /// The rule of issue 32, as a property over 20,000 random configurations: validation
    /// never panics (no overflow in its arithmetic), and whatever it accepts stays under the
    /// memory cap: batches in flight at most MAX_IN_FLIGHT_BYTES, computed here the way the
    /// stream holds them ((prefetch + workers + 1) batches of patch voxels x batch x 8 bytes),
    /// threads at most MAX_WORKERS + MAX_FETCHERS, a jittered centre inside i64.
    #[test]
    fn whatever_validation_accepts_fits_the_memory_cap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(32);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let c = LoaderConfig {
                patch_zyx: [size(&mut rng), size(&mut rng), size(&mut rng)],
                batch_size: size(&mut rng),
                workers: size(&mut rng),
                prefetch: size(&mut rng),
                fetchers: size(&mut rng),
                jitter_zyx: [size(&mut rng), size(&mut rng), size(&mut rng)],
                cache_bytes: size(&mut rng),
                ..LoaderConfig::default()
            };
            let verdict = std::panic::catch_unwind(|| c.validate());
            let Ok(verdict) = verdict else { panic!("validate panicked on {c:?}") };
            if verdict.is_err() {
                continue;
            }
            accepted += 1;
            let voxels: u128 = c.patch_zyx.iter().map(|&s| s as u128).product();
            let batch = voxels * c.batch_size as u128 * 8;
            let held = (c.prefetch + c.workers + 1) as u128 * batch;
            assert!(batch <= u128::from(MAX_BATCH_BYTES), "{c:?}");
            assert!(held <= u128::from(MAX_IN_FLIGHT_BYTES), "{c:?}");
            assert!(c.workers + c.fetchers <= MAX_WORKERS + MAX_FETCHERS, "{c:?}");
            assert!(c.jitter_zyx.iter().all(|&j| (j as i64) >= 0), "{c:?}");
            assert!(c.cache_bytes <= MAX_CACHE_BYTES, "{c:?}");
        }
        // Not a test that passes by refusing everything: small sizes are accepted.
        assert!(accepted > 100, "{accepted} of 20000 accepted");
    }
}
