//! `ctstream._native`: PyO3 bindings over the `ctstream` crate. Bindings only: every read,
//! check, sample and batch is the library's; `ctstream/` (Python) is the thin adapter that
//! turns index tables into `pyarrow.Table`s and wraps these classes for PyTorch.
//!
//! - Arrays handed to Python own the Rust buffers they were built in (rust-numpy's
//!   `IntoPyArray` on an owned `ndarray`: no copy; the array's `base` holds the buffer).
//! - Waiting for a batch, reading a region and ingesting run with the GIL released; a wait
//!   checks for Ctrl-C every 50 ms.
//! - Errors become Python exceptions (`ctstream.StoreError`, `ctstream.LoaderError`,
//!   `ctstream.IngestError`, `ValueError` for bad options) with the text the CLI prints:
//!   the error and its causes, each once (the file and the field).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ctstream::ingest::{IngestConfig, IngestError as LibIngestError};
use ctstream::io::dicom::{DicomOptions, UnevenPolicy};
use ctstream::labels::files::LabelSource;
use ctstream::loader::spare::Spare;
use ctstream::loader::{
    Augment, Batch, Epoch, Loader, LoaderConfig, LoaderError as LibLoaderError, MaskLabel,
    Negatives, NoduleWeighting, Split,
};
use ctstream::store::cache::disk::DiskCacheConfig;
use ctstream::store::{Location, Region, Store, StoreError as LibStoreError};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3, PyArray5, PyArrayMethods};
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

pyo3::create_exception!(ctstream, Error, PyException, "Base class of the errors ctstream raises.");
pyo3::create_exception!(
    ctstream,
    StoreError,
    Error,
    "A store could not be opened or read: the message names the file (and the chunk or field)."
);
pyo3::create_exception!(
    ctstream,
    LoaderError,
    Error,
    "The loader failed while building a batch (a store error while streaming is a StoreError)."
);
pyo3::create_exception!(
    ctstream,
    IngestError,
    Error,
    "An ingest could not start or finish (a scan that fails alone is listed in the summary instead)."
);

/// The error and its causes, each once (as the CLI prints them).
fn text(e: &(dyn std::error::Error + 'static)) -> String {
    ctstream::message::causes_once(ctstream::message::chain(e))
}

fn store_err(e: LibStoreError) -> PyErr {
    StoreError::new_err(text(&e))
}

fn loader_err(e: LibLoaderError) -> PyErr {
    match e {
        LibLoaderError::Store(s) => store_err(s),
        LibLoaderError::Config(_) | LibLoaderError::Empty(_) => PyValueError::new_err(text(&e)),
        other => LoaderError::new_err(text(&other)),
    }
}

fn ingest_err(e: LibIngestError) -> PyErr {
    match e {
        LibIngestError::Config(_) => PyValueError::new_err(text(&e)),
        other => IngestError::new_err(text(&other)),
    }
}

/// The largest region one call may read: the store's own limit on a volume (2^31 voxels).
fn check_region(start_zyx: [i64; 3], shape_zyx: [usize; 3]) -> PyResult<Region> {
    let voxels = shape_zyx.iter().try_fold(1u64, |n, &s| n.checked_mul(s as u64));
    match voxels {
        Some(n) if n <= ctstream::volume::MAX_VOXELS => {}
        _ => {
            return Err(PyValueError::new_err(format!(
                "shape_zyx {shape_zyx:?}: at most {} voxels per read",
                ctstream::volume::MAX_VOXELS
            )));
        }
    }
    let mut end = [0i64; 3];
    for a in 0..3 {
        end[a] = i64::try_from(shape_zyx[a])
            .ok()
            .and_then(|s| start_zyx[a].checked_add(s))
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "start_zyx {start_zyx:?} + shape_zyx {shape_zyx:?} overflows"
                ))
            })?;
    }
    Ok(Region::new(start_zyx, end))
}

/// `ctstream view` serving a store on a thread of its own (`ctstream.Viewer` wraps it).
#[pyclass(module = "ctstream._native", name = "Viewer", frozen)]
struct PyViewer {
    url: String,
    spawned: std::sync::Mutex<Option<ctstream::view::server::Spawned>>,
}

fn view_err(e: ctstream::view::ViewError) -> PyErr {
    match e {
        ctstream::view::ViewError::Config(_) => PyValueError::new_err(text(&e)),
        ctstream::view::ViewError::Store { .. } => StoreError::new_err(text(&e)),
        other => Error::new_err(text(&other)),
    }
}

#[pymethods]
impl PyViewer {
    #[new]
    #[pyo3(signature = (store, run=None, pred=None, evaluation=None, host="127.0.0.1", port=0, cache_mb=512))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        store: &PyStore,
        run: Option<PathBuf>,
        pred: Option<PathBuf>,
        evaluation: Option<PathBuf>,
        host: &str,
        port: u16,
        cache_mb: usize,
    ) -> PyResult<Self> {
        let ip: std::net::IpAddr = host.parse().map_err(|_| {
            PyValueError::new_err(format!("host {host:?}: an IP address (127.0.0.1, ::1, 0.0.0.0)"))
        })?;
        let cfg = ctstream::view::ViewConfig {
            store: store.inner.root().display().to_string(),
            run,
            pred,
            eval: evaluation,
            addr: std::net::SocketAddr::new(ip, port),
            cache_bytes: cache_mb.saturating_mul(1 << 20),
        };
        let inner = store.inner.clone();
        let spawned = py
            .detach(|| ctstream::view::server::Server::bind(inner, &cfg).and_then(|s| s.spawn()))
            .map_err(view_err)?;
        let url = format!("http://{}/", spawned.addr());
        Ok(PyViewer { url, spawned: std::sync::Mutex::new(Some(spawned)) })
    }

    /// The page's address.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// Whether it is still serving.
    #[getter]
    fn running(&self) -> bool {
        self.spawned.lock().is_ok_and(|s| s.is_some())
    }

    /// Stops it (the requests in flight are answered first); again: nothing.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let spawned = self.spawned.lock().ok().and_then(|mut s| s.take());
        match spawned {
            Some(s) => py.detach(|| s.stop()).map_err(view_err),
            None => Ok(()),
        }
    }
}

/// A store opened from its folder (`ctstream.Store` wraps it).
#[pyclass(module = "ctstream._native", name = "Store", frozen)]
struct PyStore {
    inner: Arc<Store>,
}

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(signature = (path, disk_cache=None, disk_cache_gb=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        disk_cache: Option<PathBuf>,
        disk_cache_gb: Option<f64>,
    ) -> PyResult<Self> {
        let cache = match (disk_cache, disk_cache_gb) {
            (Some(dir), gb) => {
                Some(DiskCacheConfig { dir, gb: gb.unwrap_or(DiskCacheConfig::DEFAULT_GB) })
            }
            (None, None) => None,
            (None, Some(_)) => {
                return Err(PyValueError::new_err(
                    "disk_cache_gb is the size of disk_cache: give both",
                ));
            }
        };
        if let Some(c) = &cache {
            c.validate().map_err(|e| PyValueError::new_err(text(&e)))?;
        }
        // The disk cache is for stores on object storage; a local store reads its own files.
        let (store, _used) =
            py.detach(|| Store::open_with_disk_cache(&path, cache.as_ref())).map_err(store_err)?;
        Ok(PyStore { inner: Arc::new(store) })
    }

    /// The store's folder, or its URL on object storage.
    #[getter]
    fn path(&self) -> String {
        self.inner.root().display().to_string()
    }

    /// `manifest.json`, as JSON text.
    fn manifest_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.manifest())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Ids of the completely stored scans, in order.
    fn series_ids(&self) -> Vec<String> {
        self.inner.series_ids().map(str::to_string).collect()
    }

    /// A scan's record (`volumes/<id>.json`), as JSON text.
    fn record_json(&self, series_id: &str) -> PyResult<String> {
        let rec = self.inner.scan(series_id).map_err(store_err)?;
        serde_json::to_string(rec).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Scans left out because their record is damaged: (series id, record file, reason).
    fn damaged(&self) -> Vec<(String, String, String)> {
        self.inner
            .damaged()
            .iter()
            .map(|d| (d.series_id.clone(), d.path.display().to_string(), d.reason.clone()))
            .collect()
    }

    /// The bytes of `index/<name>.parquet`, checked against `index/checksums.json`; None
    /// when the store has no such table.
    fn table_bytes<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(PyValueError::new_err(format!(
                "table `{name}`: a table name is lower-case letters, digits and '_'"
            )));
        }
        let bytes = py.detach(|| self.inner.table_bytes(name)).map_err(store_err)?;
        Ok(bytes.map(|b| PyBytes::new(py, &b)))
    }

    /// The names of the index's tables (`index/*.parquet`), sorted.
    fn table_names(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.inner.table_names()).map_err(store_err)
    }

    /// The stored grid of a scan: (origin (x, y, z) mm, spacing (x, y, z) mm, direction
    /// (9 numbers, row-major)).
    fn geometry(&self, series_id: &str) -> PyResult<([f64; 3], [f64; 3], [f64; 9])> {
        let g = self.inner.scan(series_id).map_err(store_err)?.geometry();
        Ok((g.origin_xyz, g.spacing_xyz, g.direction))
    }

    /// HU of the box at `start_zyx` of `shape_zyx` voxels (voxels outside the scan read
    /// as the manifest's fill value), as an int16 array (z, y, x).
    fn read_region<'py>(
        &self,
        py: Python<'py>,
        series_id: &str,
        start_zyx: [i64; 3],
        shape_zyx: [usize; 3],
    ) -> PyResult<Bound<'py, PyArray3<i16>>> {
        let r = check_region(start_zyx, shape_zyx)?;
        let a = py.detach(|| self.inner.read_region(series_id, r)).map_err(store_err)?;
        Ok(a.into_pyarray(py))
    }

    /// The whole scan, int16 (z, y, x).
    fn volume<'py>(&self, py: Python<'py>, series_id: &str) -> PyResult<Bound<'py, PyArray3<i16>>> {
        let a = py
            .detach(|| self.inner.volume(series_id).and_then(|v| v.read_all()))
            .map_err(store_err)?;
        Ok(a.into_pyarray(py))
    }

    /// A box of the scan's label volume `name`, uint8 (z, y, x); 0 outside the scan.
    fn read_label_region<'py>(
        &self,
        py: Python<'py>,
        series_id: &str,
        name: &str,
        start_zyx: [i64; 3],
        shape_zyx: [usize; 3],
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let r = check_region(start_zyx, shape_zyx)?;
        let a =
            py.detach(|| self.inner.read_label_region(series_id, name, r)).map_err(store_err)?;
        Ok(a.into_pyarray(py))
    }

    /// The scan's whole label volume `name`, uint8 (z, y, x).
    fn label_volume<'py>(
        &self,
        py: Python<'py>,
        series_id: &str,
        name: &str,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let a = py
            .detach(|| self.inner.label(series_id, name).and_then(|v| v.read_all_as::<u8>()))
            .map_err(store_err)?;
        Ok(a.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "Store({:?}, {} scans)",
            self.inner.root().display().to_string(),
            self.inner.scans().len()
        )
    }
}

/// Reads an augmentation given as the CLI's words (`"flip,rot90"`) or as a dict of
/// `ctstream::loader::Augment`'s fields.
fn augment_from(v: &Bound<'_, PyAny>, patch_zyx: [usize; 3]) -> PyResult<Augment> {
    if let Ok(s) = v.extract::<String>() {
        return Augment::parse(&s, patch_zyx)
            .map_err(|e| PyValueError::new_err(format!("augment: {e}")));
    }
    let d = v.cast::<PyDict>().map_err(|_| PyValueError::new_err("augment: give words (\"flip,rot90,hu,noise\", \"all\", \"none\") or a dict of flip_zyx, rot90, hu_shift, hu_scale, noise_sigma"))?;
    let mut a = Augment::default();
    for (k, val) in d.iter() {
        let key: String =
            k.extract().map_err(|_| PyValueError::new_err("augment: keys are strings"))?;
        let bad = |what: &str| PyValueError::new_err(format!("augment[{key:?}]: {what}"));
        match key.as_str() {
            "flip_zyx" => {
                a.flip_zyx = match val.extract::<bool>() {
                    Ok(b) => [b; 3],
                    Err(_) => val
                        .extract::<[bool; 3]>()
                        .map_err(|_| bad("a bool or three bools (z, y, x)"))?,
                }
            }
            "rot90" => a.rot90 = val.extract().map_err(|_| bad("a bool"))?,
            // Values are checked by the library (`Augment::validate`).
            "hu_shift" | "hu_scale" | "noise_sigma" => {
                let x: f32 = val.extract().map_err(|_| bad("a number"))?;
                match key.as_str() {
                    "hu_shift" => a.hu_shift = x,
                    "hu_scale" => a.hu_scale = x,
                    _ => a.noise_sigma = x,
                }
            }
            // The spatial transforms and intensity stages as the loader's config shows
            // them (`Loader.config["augment"]`), read back through the same serde form.
            "spatial" | "intensity" => {
                let json: String = pyo3::types::PyModule::import(v.py(), "json")?
                    .call_method1("dumps", (val,))?
                    .extract()?;
                if key == "spatial" {
                    a.spatial = serde_json::from_str(&json).map_err(|e| bad(&e.to_string()))?;
                } else {
                    a.intensity = serde_json::from_str(&json).map_err(|e| bad(&e.to_string()))?;
                }
            }
            _ => {
                return Err(bad(
                    "not one of flip_zyx, rot90, hu_shift, hu_scale, noise_sigma, spatial, intensity",
                ));
            }
        }
    }
    Ok(a)
}

fn parsed<T: std::str::FromStr<Err = String>>(what: &str, s: &str) -> PyResult<T> {
    s.parse::<T>().map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// The loader (`ctstream.Loader` wraps it): every option of `LoaderBuilder`, None for
/// the library's default.
#[pyclass(module = "ctstream._native", name = "Loader", frozen)]
struct PyLoader {
    inner: Arc<Loader>,
    /// The process that built it: its worker threads do not survive a fork.
    pid: u32,
}

#[pymethods]
impl PyLoader {
    #[new]
    #[pyo3(signature = (store, *, patch=None, batch_size=None, positive_share=None, jitter=None, negatives=None, weighting=None, hu_window=None, augment=None, workers=None, prefetch=None, fetchers=None, cache_bytes=None, seed=None, series=None, split=None, val_fraction=None, rank=None, world=None, batches_per_epoch=None, mask_label=None, min_readers=None, min_malignancy=None, hard_negatives=None, compact=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        store: &PyStore,
        patch: Option<[usize; 3]>,
        batch_size: Option<usize>,
        positive_share: Option<f64>,
        jitter: Option<[usize; 3]>,
        negatives: Option<&str>,
        weighting: Option<&str>,
        hu_window: Option<[f32; 2]>,
        augment: Option<&Bound<'_, PyAny>>,
        workers: Option<usize>,
        prefetch: Option<usize>,
        fetchers: Option<usize>,
        cache_bytes: Option<usize>,
        seed: Option<u64>,
        series: Option<Vec<String>>,
        split: Option<&str>,
        val_fraction: Option<f64>,
        rank: Option<usize>,
        world: Option<usize>,
        batches_per_epoch: Option<usize>,
        mask_label: Option<&str>,
        min_readers: Option<u8>,
        min_malignancy: Option<f64>,
        hard_negatives: Option<std::path::PathBuf>,
        compact: Option<bool>,
    ) -> PyResult<Self> {
        let compact = compact.unwrap_or_default();
        let mut c = LoaderConfig { hard_negatives, compact, ..LoaderConfig::default() };
        if let Some(v) = patch {
            c.patch_zyx = v;
        }
        if let Some(v) = batch_size {
            c.batch_size = v;
        }
        if let Some(v) = positive_share {
            c.positive_share = v;
        }
        if let Some(v) = jitter {
            c.jitter_zyx = v;
        }
        if let Some(v) = negatives {
            c.negatives = parsed::<Negatives>("negatives", v)?;
        }
        if let Some(v) = weighting {
            c.weighting = parsed::<NoduleWeighting>("weighting", v)?;
        }
        if let Some(v) = hu_window {
            c.hu_window = v;
        }
        if let Some(v) = augment {
            c.augment = augment_from(v, c.patch_zyx)?;
        }
        if let Some(v) = workers {
            c.workers = v;
        }
        if let Some(v) = prefetch {
            c.prefetch = v;
        }
        if let Some(v) = fetchers {
            c.fetchers = v;
        }
        if let Some(v) = cache_bytes {
            c.cache_bytes = v;
        }
        if let Some(v) = seed {
            c.seed = v;
        }
        c.series = series;
        let val_fraction = val_fraction.unwrap_or(0.2);
        c.split = match split {
            None => None,
            Some("train") => Some(Split::Train { val_fraction }),
            Some("val") => Some(Split::Val { val_fraction }),
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "split `{other}`: give \"train\", \"val\" or None"
                )));
            }
        };
        c.shard = match (rank, world) {
            (None, None) => None,
            (Some(r), Some(w)) => Some((r, w)),
            _ => return Err(PyValueError::new_err("rank and world: give both or neither")),
        };
        c.batches_per_epoch = batches_per_epoch;
        c.mask_label = mask_label.map(|m| parsed::<MaskLabel>("mask_label", m)).transpose()?;
        c.nodule_filter = ctstream::loader::NoduleFilter { min_readers, min_malignancy };
        let store = store.inner.clone();
        let loader = py.detach(|| Loader::builder(&store).config(c).build()).map_err(loader_err)?;
        Ok(PyLoader { inner: Arc::new(loader), pid: std::process::id() })
    }

    /// The configuration in use (every option, defaults filled in), as JSON text.
    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.config())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Ids of the selected scans.
    fn series_ids(&self) -> Vec<String> {
        self.inner.series_ids().into_iter().map(str::to_string).collect()
    }

    /// Batches in one epoch.
    fn batches_per_epoch(&self) -> usize {
        self.inner.batches_per_epoch()
    }

    /// Nodules (or label components) available as positive targets.
    fn positive_targets(&self) -> usize {
        self.inner.positive_targets()
    }

    /// What the user should know about the selection (say, scans without a lung mask).
    fn notes(&self) -> Vec<String> {
        self.inner.notes().to_vec()
    }

    /// Chunk-cache counters: (hits, misses, decoded bytes, bytes held).
    fn cache_stats(&self) -> (u64, u64, u64, u64) {
        let s = self.inner.cache_stats();
        (s.hits, s.misses, s.decoded_bytes, s.held_bytes)
    }

    /// The batches `first .. first + count` of epoch `epoch` (all of it by default),
    /// built ahead by the Rust worker threads; closing or dropping the iterator stops them.
    #[pyo3(signature = (epoch, first=0, count=None))]
    fn batches(&self, epoch: u64, first: usize, count: Option<usize>) -> PyResult<PyEpoch> {
        same_process(self.pid, "Loader")?;
        let end = self.inner.batches_per_epoch();
        let count = count.unwrap_or(end.saturating_sub(first));
        let inner = self.inner.batches(epoch, first, count).map_err(loader_err)?;
        Ok(PyEpoch { inner: Some(inner), addresses: None, pid: self.pid })
    }

    /// Every batch from batch `first` of epoch `epoch` on, through the epochs after it,
    /// built by the same Rust threads (the next epoch's first batches are built while
    /// this one's last are used); it never ends: close or drop it.
    #[pyo3(signature = (epoch, first=0))]
    fn epochs(&self, epoch: u64, first: usize) -> PyResult<PyEpoch> {
        same_process(self.pid, "Loader")?;
        let inner = self.inner.epochs(epoch, first).map_err(loader_err)?;
        Ok(PyEpoch { inner: Some(inner), addresses: None, pid: self.pid })
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Loader({} scans, patch {:?}, batch_size {}, {} batches per epoch, seed {})",
            self.inner.series_ids().len(),
            c.patch_zyx,
            c.batch_size,
            self.inner.batches_per_epoch(),
            c.seed
        )
    }
}

/// `RuntimeError` unless this is the process (`built`) that built the object: after a
/// fork the loader's threads stay behind in the parent, so a child would wait forever.
fn same_process(built: u32, what: &str) -> PyResult<()> {
    let pid = std::process::id();
    if pid == built {
        return Ok(());
    }
    Err(PyRuntimeError::new_err(format!(
        "this ctstream {what} was built in process {built} and cannot run in process {pid} (a fork, such as a torch DataLoader worker): its threads stay behind in the parent. The loader is already parallel in Rust: use DataLoader(dataset, batch_size=None, num_workers=0), or build the Loader in the process that iterates it"
    )))
}

/// The batches of one epoch (a Python iterator of dicts).
#[pyclass(module = "ctstream._native", name = "Epoch")]
struct PyEpoch {
    inner: Option<Epoch>,
    /// Where the last batch's image and mask buffers were allocated by Rust (for the test
    /// that shows the arrays are those buffers, not copies).
    addresses: Option<(usize, usize)>,
    /// The process that started the worker threads.
    pid: u32,
}

impl Drop for PyEpoch {
    /// In a forked child the worker threads do not exist: joining them would wait
    /// forever, so the child lets go of the epoch without stopping anything (the parent's
    /// copy stops its own threads).
    fn drop(&mut self) {
        if std::process::id() != self.pid
            && let Some(e) = self.inner.take()
        {
            std::mem::forget(e);
        }
    }
}

/// A batch buffer lent to NumPy.
enum Held {
    F32(Vec<f32>),
    I16(Vec<i16>),
    U8(Vec<u8>),
    Gone,
}

/// The owner of a batch's image or mask buffer under its NumPy array (the array's
/// `base`): when NumPy, and every tensor sharing the memory (`torch.from_numpy`), lets
/// go of it, the buffer goes back to the loader's spare ones, and the workers build a
/// later batch in it rather than in memory the kernel maps and zeroes afresh.
#[pyclass(module = "ctstream._native", name = "BatchBuffer", frozen)]
struct BatchBuffer {
    held: Held,
    spare: Arc<Spare>,
    /// The process that made it: a forked child frees its copy, never hands it back.
    pid: u32,
}

impl Drop for BatchBuffer {
    fn drop(&mut self) {
        let held = std::mem::replace(&mut self.held, Held::Gone);
        if std::process::id() != self.pid {
            return;
        }
        match held {
            Held::F32(v) => self.spare.give_f32(v),
            Held::I16(v) => self.spare.give_i16(v),
            Held::U8(v) => self.spare.give_u8(v),
            Held::Gone => {}
        }
    }
}

/// A NumPy array of `shape` over `held`, without a copy, whose base hands the buffer back
/// to `spare` when it is freed ([`BatchBuffer`]).
fn lend<'py>(
    py: Python<'py>,
    held: Held,
    shape: [usize; 5],
    spare: &Arc<Spare>,
    index: usize,
    epoch: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let owner =
        Bound::new(py, BatchBuffer { held, spare: spare.clone(), pid: std::process::id() })?;
    let container = owner.clone().into_any();
    // SAFETY (each arm): the array's memory is the Vec that `owner` holds, which is neither
    // changed nor moved while `owner` lives (it is frozen; only its Drop takes the Vec),
    // and `owner` is the array's base, so it lives as long as the array.
    let array = match &owner.get().held {
        Held::F32(v) => unsafe { borrow(v, shape, container) },
        Held::I16(v) => unsafe { borrow(v, shape, container) },
        Held::U8(v) => unsafe { borrow(v, shape, container) },
        Held::Gone => return Err(LoaderError::new_err("a batch buffer was handed back twice")),
    };
    array.map_err(|e| LoaderError::new_err(format!("batch {index} of epoch {epoch}: {e}")))
}

/// A NumPy array of `shape` over `values`, with `container` as its base.
///
/// # Safety
/// `values` stay where they are, unchanged, as long as `container` lives.
unsafe fn borrow<'py, T: numpy::Element>(
    values: &[T],
    shape: [usize; 5],
    container: Bound<'py, PyAny>,
) -> Result<Bound<'py, PyAny>, ndarray::ShapeError> {
    let view = ndarray::ArrayView5::from_shape(shape, values)?;
    // SAFETY: the caller's.
    Ok(unsafe { PyArray5::borrow_from_array(&view, container) }.into_any())
}

/// A batch as the dict ctstream.Loader yields: `image`, `mask` (float32 [B, 1, D, H, W],
/// owning the Rust buffers; for a compact loader int16 HU and uint8, with `window` (lo,
/// hi), `hu_scale` and `hu_shift` (float32 [B]) to normalise them), `series_id` (list of str), `start_zyx` (int64 [B, 3]),
/// `positive` (bool [B]), `nodule_id` (int64 [B], -1 for negatives), `source` (list of
/// str: `positive`, or the negative's source), `epoch`, `index`.
fn batch_dict<'py>(
    py: Python<'py>,
    b: Batch,
    spare: &Arc<Spare>,
    addresses: &mut Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyDict>> {
    let [n, c, d, h, w] = b.shape;
    let out = PyDict::new(py);
    let shape = [n, c, d, h, w];
    if let Some(cb) = b.compact {
        *addresses = Some((cb.images.as_ptr() as usize, cb.masks.as_ptr() as usize));
        let image = lend(py, Held::I16(cb.images), shape, spare, b.index, b.epoch)?;
        let mask = lend(py, Held::U8(cb.masks), shape, spare, b.index, b.epoch)?;
        out.set_item("image", image)?;
        out.set_item("mask", mask)?;
        out.set_item("window", (cb.window[0], cb.window[1]))?;
        let scale: Bound<'py, PyArray1<f32>> = cb.hu_scale.into_pyarray(py);
        let shift: Bound<'py, PyArray1<f32>> = cb.hu_shift.into_pyarray(py);
        out.set_item("hu_scale", scale)?;
        out.set_item("hu_shift", shift)?;
    } else {
        *addresses = Some((b.images.as_ptr() as usize, b.masks.as_ptr() as usize));
        let image = lend(py, Held::F32(b.images), shape, spare, b.index, b.epoch)?;
        let mask = lend(py, Held::F32(b.masks), shape, spare, b.index, b.epoch)?;
        out.set_item("image", image)?;
        out.set_item("mask", mask)?;
    }
    let ids: Vec<&str> = b.patches.iter().map(|p| p.series_id.as_str()).collect();
    out.set_item("series_id", ids)?;
    let starts =
        ndarray::Array2::from_shape_fn((b.patches.len(), 3), |(i, a)| b.patches[i].start_zyx[a]);
    let starts: Bound<'py, PyArray2<i64>> = starts.into_pyarray(py);
    out.set_item("start_zyx", starts)?;
    let positive: Bound<'py, PyArray1<bool>> =
        b.patches.iter().map(|p| p.positive).collect::<Vec<bool>>().into_pyarray(py);
    out.set_item("positive", positive)?;
    let nodule: Bound<'py, PyArray1<i64>> = b
        .patches
        .iter()
        .map(|p| p.nodule_id.map_or(-1, i64::from))
        .collect::<Vec<i64>>()
        .into_pyarray(py);
    out.set_item("nodule_id", nodule)?;
    let source: Vec<&str> =
        b.patches.iter().map(|p| p.negative_source.map_or("positive", |s| s.name())).collect();
    out.set_item("source", source)?;
    out.set_item("epoch", b.epoch)?;
    out.set_item("index", b.index)?;
    Ok(out)
}

#[pymethods]
impl PyEpoch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        same_process(self.pid, "Epoch")?;
        loop {
            let Some(epoch) = self.inner.as_mut() else { return Ok(None) };
            // The GIL is released while the workers build the batch; every 50 ms the wait
            // comes back to check for Ctrl-C (KeyboardInterrupt) and the like.
            match py.detach(|| epoch.next_timeout(Duration::from_millis(50))) {
                Err(ctstream::loader::NotYet) => py.check_signals()?,
                Ok(None) => {
                    self.close(py);
                    return Ok(None);
                }
                Ok(Some(Err(e))) => {
                    self.close(py);
                    return Err(loader_err(e));
                }
                Ok(Some(Ok(b))) => {
                    let spare = epoch.spare();
                    return batch_dict(py, b, &spare, &mut self.addresses).map(Some);
                }
            }
        }
    }

    /// The index of the batch the next step yields.
    #[getter]
    fn next_index(&self) -> Option<usize> {
        self.inner.as_ref().map(Epoch::next_index)
    }

    /// Whether the worker threads are still running (False once closed or done).
    #[getter]
    fn running(&self) -> bool {
        self.inner.is_some()
    }

    /// Stops the worker threads (after the batch each has in hand) and waits for them.
    fn close(&mut self, py: Python<'_>) {
        if std::process::id() != self.pid {
            // A forked child: nothing of its own to stop (see `Drop`).
            if let Some(e) = self.inner.take() {
                std::mem::forget(e);
            }
        } else if let Some(e) = self.inner.take() {
            py.detach(move || drop(e));
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// Where Rust allocated the last batch's image and mask buffers: (image, mask)
    /// addresses, None before the first batch. The arrays' data pointers equal them.
    fn _buffer_addresses(&self) -> Option<(usize, usize)> {
        self.addresses
    }
}

/// Ingest progress as indicatif bars on stderr (hidden when stderr is not a terminal).
struct Bars {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl ctstream::progress::Progress for Bars {
    fn start(&self, what: &str, total: Option<u64>) {
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:24} [{bar:40}] {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n).with_style(style),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_prefix(what.to_string());
        if let Ok(mut b) = self.bar.lock()
            && let Some(old) = b.replace(bar)
        {
            old.finish_and_clear();
        }
    }
    fn set_message(&self, msg: &str) {
        if let Some(b) = self.bar.lock().ok().and_then(|b| b.clone()) {
            b.set_message(msg.to_string());
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.lock().ok().and_then(|b| b.clone()) {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            b.finish_and_clear();
        }
    }
}

/// Progress bars on the terminal, or none.
fn progress_for(show: bool) -> Box<dyn ctstream::progress::Progress> {
    if show { Box::new(Bars { bar: std::sync::Mutex::new(None) }) } else { Box::new(()) }
}

/// Builds or extends a store, as `ctstream ingest` (same options, same checks); returns
/// the summary as JSON text. Scans that fail are listed in it, not raised.
#[pyfunction]
#[pyo3(signature = (inputs, out, *, annotations=None, excluded=None, candidates=None, spacing=None, chunk=None, level=None, clip=None, jobs=None, resume=false, resample_uneven=false, allow_missing_slices=false, lung_mask=true, labels=None, nnunet=None, lidc_xml=None, shard=None, stage=None, progress=true))]
#[allow(clippy::too_many_arguments)]
fn ingest(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    out: PathBuf,
    annotations: Option<PathBuf>,
    excluded: Option<PathBuf>,
    candidates: Option<PathBuf>,
    spacing: Option<[f64; 3]>,
    chunk: Option<[usize; 3]>,
    level: Option<i32>,
    clip: Option<[i16; 2]>,
    jobs: Option<usize>,
    resume: bool,
    resample_uneven: bool,
    allow_missing_slices: bool,
    lung_mask: bool,
    labels: Option<Vec<String>>,
    nnunet: Option<Vec<PathBuf>>,
    lidc_xml: Option<Vec<PathBuf>>,
    shard: Option<String>,
    stage: Option<PathBuf>,
    progress: bool,
) -> PyResult<String> {
    let mut cfg = IngestConfig::new(inputs, PathBuf::new());
    if let Some(s) = shard {
        cfg.shard = Some(parsed::<ctstream::ingest::shard::Shard>("shard", &s)?);
    }
    // A folder or a URL on object storage (s3://bucket/prefix, ...).
    py.detach(|| cfg.set_out(&out.to_string_lossy(), stage)).map_err(ingest_err)?;
    cfg.annotations = annotations;
    cfg.excluded = excluded;
    cfg.candidates = candidates;
    if let Some(v) = spacing {
        cfg.spacing_xyz = v;
    }
    if let Some(v) = chunk {
        cfg.chunk_shape_zyx = v;
    }
    if let Some(v) = level {
        cfg.level = v;
    }
    if let Some(v) = clip {
        cfg.clip = v;
    }
    if let Some(v) = jobs {
        cfg.jobs = v;
    }
    cfg.resume = resume;
    cfg.lung_mask = lung_mask;
    for l in labels.unwrap_or_default() {
        cfg.labels.push(parsed::<LabelSource>("labels", &l)?);
    }
    cfg.lidc_xml = lidc_xml.unwrap_or_default();
    for d in nnunet.unwrap_or_default() {
        cfg.add_nnunet(&d).map_err(|e| PyValueError::new_err(text(&e)))?;
    }
    cfg.dicom = DicomOptions {
        series: None,
        uneven: if resample_uneven { UnevenPolicy::Resample } else { UnevenPolicy::Refuse },
        allow_missing_slices,
    };
    cfg.validate().map_err(ingest_err)?;
    let summary = py
        .detach(|| ctstream::ingest::ingest(&cfg, progress_for(progress).as_ref()))
        .map_err(ingest_err)?;
    serde_json::to_string(&summary).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// Rebuilds a store's parquet index from its records and the CSVs, as `ctstream index`
/// (run once the shards of a sharded ingest are done); returns the summary as JSON text.
#[pyfunction]
#[pyo3(signature = (store, *, annotations=None, excluded=None, candidates=None, drop_csv=false))]
fn index(
    py: Python<'_>,
    store: PathBuf,
    annotations: Option<PathBuf>,
    excluded: Option<PathBuf>,
    candidates: Option<PathBuf>,
    drop_csv: bool,
) -> PyResult<String> {
    let location =
        Location::parse(&store.to_string_lossy()).map_err(|e| PyValueError::new_err(text(&e)))?;
    let csv = py
        .detach(|| {
            ctstream::ingest::reindex::Annotations::read(
                annotations.as_deref(),
                excluded.as_deref(),
                candidates.as_deref(),
            )
        })
        .map_err(|e| IngestError::new_err(text(&e)))?;
    let summary = py.detach(|| ctstream::ingest::reindex::reindex(location, &csv, drop_csv)).map_err(|e| match e {
        LibIngestError::CsvForgotten { path, what, count, .. } => {
            let keys = if what == "nodules" { "annotations= (and excluded=)" } else { "candidates=" };
            IngestError::new_err(format!("{}: its index lists {count} {what}; give {keys} again (as to ingest), or drop_csv=True to drop them", path.display()))
        }
        other => ingest_err(other),
    })?;
    serde_json::to_string(&summary).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// World position (x, y, z) mm of the continuous voxel index (z, y, x) on a grid
/// (`Geometry::index_to_world`; `ctstream.Geometry.index_to_world` calls it).
#[pyfunction]
fn index_to_world(
    origin: [f64; 3],
    spacing: [f64; 3],
    direction: [f64; 9],
    index_zyx: [f64; 3],
) -> [f64; 3] {
    let g = ctstream::geometry::Geometry { origin_xyz: origin, spacing_xyz: spacing, direction };
    g.index_to_world(index_zyx)
}

/// Continuous voxel index (z, y, x) of a world position (x, y, z) mm on a grid
/// (`Geometry::world_to_index`, SimpleITK's `TransformPhysicalPointToContinuousIndex`);
/// ValueError for a degenerate grid.
#[pyfunction]
fn world_to_index(
    origin: [f64; 3],
    spacing: [f64; 3],
    direction: [f64; 9],
    world_xyz: [f64; 3],
) -> PyResult<[f64; 3]> {
    let g = ctstream::geometry::Geometry { origin_xyz: origin, spacing_xyz: spacing, direction };
    g.world_to_index(world_xyz).ok_or_else(|| {
        PyValueError::new_err(format!(
            "the grid (spacing {spacing:?}, direction {direction:?}) is degenerate: no voxel index for a world point"
        ))
    })
}

/// Writes a synthetic LUNA16-style dataset (MetaImage scans, annotations and candidates
/// CSVs; optionally DICOM series, label maps and nnU-Net's layout), as `ctstream synth`;
/// returns (scan files, annotations CSV, candidates CSV, nodules).
#[pyfunction]
#[pyo3(signature = (out, *, scans=4, seed=0, small=false, dicom=false, labels=false, nnunet=false, progress=true))]
#[allow(clippy::too_many_arguments)]
fn synth(
    py: Python<'_>,
    out: PathBuf,
    scans: usize,
    seed: u64,
    small: bool,
    dicom: bool,
    labels: bool,
    nnunet: bool,
    progress: bool,
) -> PyResult<(Vec<PathBuf>, PathBuf, PathBuf, usize)> {
    let cfg = ctstream::synth::SynthConfig { scans, seed, small, dicom, labels, nnunet };
    let s = py
        .detach(|| ctstream::synth::generate(&out, &cfg, progress_for(progress).as_ref()))
        .map_err(|e| match e {
            // The library checks the values (scans 1 to MAX_SCANS, a non-empty out).
            ctstream::synth::SynthError::Config(_) => PyValueError::new_err(text(&e)),
            e => Error::new_err(text(&e)),
        })?;
    Ok((s.scans, s.annotations, s.candidates, s.nodules))
}

/// What `predict` returns: a dict per scan, the findings' parquet bytes, the files written.
type Predicted<'py> =
    (Vec<Bound<'py, PyDict>>, Bound<'py, PyBytes>, Option<(PathBuf, PathBuf, PathBuf)>);

/// A detection as Python sees it: (series id, x, y, z, probability), world mm.
type DetectionRow = (String, f64, f64, f64, f64);

/// Whole-scan prediction with a Python model, as `ctstream predict` does with a trained
/// run: the lung region, the sliding window, Gaussian blending, the findings (see
/// `ctstream::predict::run`). `model` is called with a float32 array [B, 1, D, H, W]
/// (windowed HU in 0..1) and returns probabilities of the same size (anything
/// `numpy.asarray` takes). Settings left `None` take the library's defaults.
///
/// Returns (one dict per scan, the findings as the bytes of a `findings.parquet`, the
/// paths written or None); a scan's `probabilities` is kept only with `keep_maps`.
#[pyfunction]
#[pyo3(signature = (store, series, model, *, out=None, keep_maps=true, patch=None, overlap=None, batch_size=None, hu_window=None, threshold=None, min_voxels=None, merge_mm=None, score=None, lung_roi=None, map_format=None, mirror=None, progress=false))]
#[allow(clippy::too_many_arguments)]
fn predict<'py>(
    py: Python<'py>,
    store: &PyStore,
    series: Vec<String>,
    model: Py<PyAny>,
    out: Option<PathBuf>,
    keep_maps: bool,
    patch: Option<[usize; 3]>,
    overlap: Option<f64>,
    batch_size: Option<usize>,
    hu_window: Option<[f32; 2]>,
    threshold: Option<f32>,
    min_voxels: Option<usize>,
    merge_mm: Option<f64>,
    score: Option<String>,
    lung_roi: Option<bool>,
    map_format: Option<String>,
    mirror: Option<String>,
    progress: bool,
) -> PyResult<Predicted<'py>> {
    use ctstream::predict::run::{self, Looked, PredictConfig};
    let mut cfg = PredictConfig::default();
    let w = &mut cfg.window;
    w.patch_zyx = patch.unwrap_or(w.patch_zyx);
    w.overlap = overlap.unwrap_or(w.overlap);
    w.batch_size = batch_size.unwrap_or(w.batch_size);
    w.hu_window = hu_window.unwrap_or(w.hu_window);
    cfg.post.threshold = threshold.unwrap_or(cfg.post.threshold);
    cfg.post.min_voxels = min_voxels.unwrap_or(cfg.post.min_voxels);
    cfg.post.merge_mm = merge_mm.unwrap_or(cfg.post.merge_mm);
    if let Some(k) = score {
        cfg.post.score = parsed("score", &k)?;
    }
    cfg.lung_roi = lung_roi.unwrap_or(cfg.lung_roi);
    if let Some(f) = map_format {
        cfg.map_format = parsed("map_format", &f)?;
    }
    if let Some(m) = mirror {
        cfg.window.mirror_zyx =
            ctstream::predict::window::parse_mirror(&m).map_err(PyValueError::new_err)?;
    }
    // The model runs under the GIL: one batch at a time.
    cfg.threads = 1;
    cfg.validate().map_err(|e| PyValueError::new_err(text(&e)))?;
    let call = |x: &[f32], shape: [usize; 5]| -> Result<Vec<f32>, String> {
        Python::attach(|py| -> PyResult<Vec<f32>> {
            py.check_signals()?;
            let input = PyArray1::from_slice(py, x).reshape(shape)?;
            let result = model.call1(py, (input,))?;
            let np = py.import("numpy")?;
            let flat = np.call_method1("ascontiguousarray", (result, "float32"))?;
            let flat = flat.call_method0("ravel")?;
            let a: numpy::PyReadonlyArray1<'_, f32> = flat.extract()?;
            Ok(a.as_slice()?.to_vec())
        })
        .map_err(|e| Python::attach(|py| model_error(py, e)))
    };
    let mut scans = Vec::new();
    let mut findings = Vec::new();
    let written = py
        .detach(|| {
            run::run(
                &store.inner,
                &series,
                &cfg,
                out.as_deref(),
                call,
                progress_for(progress).as_ref(),
                |p| {
                    findings.extend(p.findings.iter().map(|c| (p.series_id.clone(), c.clone())));
                    scans.push(p);
                },
            )
        })
        .map_err(|e| match e {
            ctstream::predict::PredictError::Store(s) => store_err(s),
            ctstream::predict::PredictError::Config(_) => PyValueError::new_err(text(&e)),
            other => Error::new_err(text(&other)),
        })?;
    let mut dicts = Vec::with_capacity(scans.len());
    for p in scans {
        let d = PyDict::new(py);
        d.set_item("series_id", &p.series_id)?;
        d.set_item("tiles", p.tiles)?;
        d.set_item("tiles_computed", p.tiles_computed)?;
        let looked = match p.looked {
            Looked::LungRegion => "lung_region",
            Looked::NoLungMask => "everywhere (no lung mask)",
            Looked::Everywhere => "everywhere",
        };
        d.set_item("looked", looked)?;
        d.set_item("findings", p.findings.len())?;
        d.set_item("outside_region", p.outside_region)?;
        d.set_item("seconds", p.seconds)?;
        if keep_maps {
            d.set_item("probabilities", p.probabilities.into_pyarray(py))?;
        } else {
            d.set_item("probabilities", py.None())?;
        }
        dicts.push(d);
    }
    let batch = ctstream::predict::components::findings_batch(&findings);
    let bytes = ctstream::store::index::table_bytes("findings.parquet".as_ref(), &batch)
        .map_err(store_err)?;
    Ok((dicts, PyBytes::new(py, &bytes), written.map(|w| (w.candidates, w.findings, w.series))))
}

/// A model's failure as the error to raise: its own exception when it raised one (so a
/// KeyboardInterrupt stays one), named as the model's.
fn model_error(py: Python<'_>, e: PyErr) -> String {
    let t = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_default();
    format!("{t}: {}", e.value(py))
}

/// The LUNA16 FROC evaluation of `detections` ((series id, x, y, z, probability), world mm)
/// on the scans `series`, against the store's annotated nodules and excluded findings, as
/// `ctstream evaluate`; with `out`, writes froc.json, froc.csv and froc.png there.
/// Returns the result as JSON text.
#[pyfunction]
#[pyo3(signature = (store, detections, series, *, bootstrap=1000, seed=0, out=None, title=None))]
#[allow(clippy::too_many_arguments)]
fn evaluate(
    py: Python<'_>,
    store: &PyStore,
    detections: Vec<DetectionRow>,
    series: Vec<String>,
    bootstrap: usize,
    seed: u64,
    out: Option<PathBuf>,
    title: Option<String>,
) -> PyResult<String> {
    if bootstrap > ctstream::evaluate::MAX_BOOTSTRAP {
        return Err(PyValueError::new_err(format!(
            "bootstrap {bootstrap}: give 0 to {}",
            ctstream::evaluate::MAX_BOOTSTRAP
        )));
    }
    let dets: Vec<ctstream::annotations::Detection> = detections
        .into_iter()
        .map(|(series_id, x, y, z, probability)| ctstream::annotations::Detection {
            series_id,
            world_xyz: [x, y, z],
            probability,
        })
        .collect();
    let (nodules, excluded) =
        py.detach(|| ctstream::evaluate::truth_from_store(&store.inner)).map_err(store_err)?;
    let r = py
        .detach(|| ctstream::evaluate::froc(&series, &nodules, &excluded, &dets, bootstrap, seed));
    if let Some(dir) = out {
        ctstream::evaluate::write_report(&dir, &r).map_err(|e| Error::new_err(e.to_string()))?;
        let title = title.unwrap_or_else(|| "FROC".to_string());
        ctstream::picture::froc::plot(&r, &title)
            .and_then(|p| p.save(&dir.join("froc.png")))
            .map_err(|e| Error::new_err(text(&e)))?;
    }
    serde_json::to_string(&r).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The detections of a LUNA16 submission file (`candidates.csv`: seriesuid, coordX, coordY,
/// coordZ, probability), as `ctstream evaluate --predictions` reads them.
#[pyfunction]
fn read_predictions(path: PathBuf) -> PyResult<Vec<DetectionRow>> {
    let rows = ctstream::annotations::read_predictions(&path)
        .map_err(|e| PyValueError::new_err(text(&e)))?;
    Ok(rows
        .into_iter()
        .map(|d| (d.series_id, d.world_xyz[0], d.world_xyz[1], d.world_xyz[2], d.probability))
        .collect())
}

/// The scans of a list file (`series.txt`, LUNA16's `seriesuids.csv`), as `ctstream
/// evaluate --series-list` reads them.
#[pyfunction]
fn read_series_list(path: PathBuf) -> PyResult<Vec<String>> {
    ctstream::annotations::read_series_list(&path).map_err(|e| PyValueError::new_err(text(&e)))
}

/// The crate's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyStore>()?;
    m.add_class::<PyLoader>()?;
    m.add_class::<PyEpoch>()?;
    m.add_class::<BatchBuffer>()?;
    m.add_class::<PyViewer>()?;
    m.add_function(wrap_pyfunction!(ingest, m)?)?;
    m.add_function(wrap_pyfunction!(synth, m)?)?;
    m.add_function(wrap_pyfunction!(index, m)?)?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(read_predictions, m)?)?;
    m.add_function(wrap_pyfunction!(read_series_list, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(index_to_world, m)?)?;
    m.add_function(wrap_pyfunction!(world_to_index, m)?)?;
    m.add("DISK_CACHE_GB", DiskCacheConfig::DEFAULT_GB)?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("LoaderError", py.get_type::<LoaderError>())?;
    m.add("IngestError", py.get_type::<IngestError>())?;
    Ok(())
}
