"""ctstream from Python: a chunked CT store and a prefetching patch loader whose worker
threads run in Rust.

    import ctstream
    store = ctstream.Store("luna-store")
    store.table("nodules").to_pandas()          # the parquet index, as pyarrow tables
    hu = store.read_region(store.series_ids[0], (0, 0, 0), (32, 64, 64))   # int16 (z, y, x)
    loader = ctstream.Loader(store, patch=(32, 64, 64), batch_size=16, seed=0)
    for batch in loader.epoch(0):
        batch["image"], batch["mask"]           # float32 [16, 1, 32, 64, 64], no copy

Prediction and evaluation with your own model, as ``ctstream predict`` and ``ctstream
evaluate`` do with a trained run::

    net.eval()
    pred = ctstream.predict(store, store.series_ids, net, out="pred")   # a torch module or a callable
    pred.findings.to_pandas()                   # one row per finding (findings.parquet)
    ctstream.evaluate(pred, store)["cpm"]       # LUNA16 FROC and CPM

The store in the browser (``ctstream view``'s server, on a thread of its own)::

    with ctstream.Viewer(store, pred="pred") as v:
        print(v.url)

Everything is the Rust library's (``ctstream._native``); this module only turns index
tables into ``pyarrow.Table`` objects and JSON into dicts. For PyTorch see
``ctstream.torch``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._keywords import integer, integers, names_keywords, number, numbers_, optional, paths, strings
from ._keywords import path as _path
from ._native import Error, IngestError, LoaderError, StoreError

__all__ = [
    "Store",
    "Loader",
    "Epoch",
    "Viewer",
    "Geometry",
    "ingest",
    "index",
    "synth",
    "predict",
    "evaluate",
    "Predictions",
    "Error",
    "StoreError",
    "LoaderError",
    "IngestError",
    "__version__",
]

__version__: str = _native.version()

PathLike = Union[str, "os.PathLike[str]"]


class Geometry:
    """The stored grid of a scan: ``origin`` and ``spacing`` are (x, y, z) mm, ``direction``
    is SimpleITK's row-major ``GetDirection()``; arrays are indexed (z, y, x)."""

    __slots__ = ("origin", "spacing", "direction")

    def __init__(
        self,
        origin: Tuple[float, float, float],
        spacing: Tuple[float, float, float],
        direction: Tuple[float, ...],
    ):
        self.origin = tuple(origin)
        self.spacing = tuple(spacing)
        self.direction = tuple(direction)

    @names_keywords
    def index_to_world(self, index_zyx: Sequence[float]) -> Tuple[float, float, float]:
        """World position (x, y, z) mm of the voxel at ``index_zyx`` (continuous)."""
        x, y, z = _native.index_to_world(
            self.origin, self.spacing, self.direction, numbers_("index_zyx", index_zyx, 3)
        )
        return (x, y, z)

    @names_keywords
    def world_to_index(self, world_xyz: Sequence[float]) -> Tuple[float, float, float]:
        """Continuous voxel index (z, y, x) of the world position ``world_xyz`` (x, y, z) mm,
        as SimpleITK's ``TransformPhysicalPointToContinuousIndex`` (which gives x, y, z)."""
        z, y, x = _native.world_to_index(
            self.origin, self.spacing, self.direction, numbers_("world_xyz", world_xyz, 3)
        )
        return (z, y, x)

    def __repr__(self) -> str:
        return f"Geometry(origin={self.origin}, spacing={self.spacing}, direction={self.direction})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Geometry) and (self.origin, self.spacing, self.direction) == (
            other.origin,
            other.spacing,
            other.direction,
        )


class Store:
    """A ctstream store, opened from its folder (made by ``ctstream ingest`` or
    :func:`ingest`) or its URL on object storage (``s3://bucket/luna``, ``gs://``, ``az://``,
    ``https://``; credentials and endpoint from the usual ``AWS_*`` / ``GOOGLE_*`` /
    ``AZURE_*`` environment variables). For a store on object storage, ``disk_cache`` is a
    local folder that keeps the chunk bytes fetched (at most ``disk_cache_gb`` GB, 10 unless
    given; least recently used out first), read from there first by later epochs and runs; a
    local store reads its own files and uses none. Raises :class:`StoreError` naming the file
    when it cannot be opened, ``ValueError`` for a size out of range."""

    @names_keywords
    def __init__(
        self,
        path: PathLike,
        disk_cache: Optional[PathLike] = None,
        disk_cache_gb: Optional[float] = None,
    ):
        self._native = _native.Store(
            _path("path", path),
            optional(_path, "disk_cache", disk_cache),
            optional(number, "disk_cache_gb", disk_cache_gb),
        )
        self.manifest: Dict[str, Any] = json.loads(self._native.manifest_json())

    @property
    def path(self) -> str:
        """The store's folder, or its URL."""
        return self._native.path

    @property
    def series_ids(self) -> List[str]:
        """Ids of the completely stored scans, sorted."""
        return self._native.series_ids()

    @property
    def damaged(self) -> List[Tuple[str, str, str]]:
        """Scans left out because their record is damaged: (series id, record file, reason)."""
        return list(self._native.damaged())

    def record(self, series_id: str) -> Dict[str, Any]:
        """A scan's record (``volumes/<id>.json``: shapes, geometry, HU range, label volumes)."""
        return json.loads(self._native.record_json(series_id))

    @property
    def table_names(self) -> List[str]:
        """The index's tables (``scans``, ``nodules``, ``candidates``, ``labels``, ``components``,
        ``annotations``)."""
        return self._native.table_names()

    def table(self, name: str):
        """The index table ``name`` as a ``pyarrow.Table``, after its SHA-256 is checked
        against ``index/checksums.json``. Raises ``KeyError`` when the store has no such table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self._native.table_bytes(name)
        if data is None:
            raise KeyError(
                f"{self.path}: the index has no table `{name}` (it has: {', '.join(self.table_names) or 'none'})"
            )
        return pq.read_table(pa.BufferReader(data))

    @property
    def scans(self):
        """``index/scans.parquet`` as a ``pyarrow.Table``."""
        return self.table("scans")

    @property
    def nodules(self):
        """``index/nodules.parquet`` as a ``pyarrow.Table`` (world and stored-grid voxel coordinates)."""
        return self.table("nodules")

    @property
    def annotations(self):
        """``index/annotations.parquet`` as a ``pyarrow.Table``: one row per LIDC reader
        annotation, small nodule and non-nodule (format 1.3; empty without reader XML)."""
        return self.table("annotations")

    @property
    def candidates(self):
        """``index/candidates.parquet`` as a ``pyarrow.Table`` (an empty table when ingest had no candidates CSV)."""
        return self.table("candidates")

    def geometry(self, series_id: str) -> Geometry:
        """The stored grid of a scan."""
        return Geometry(*self._native.geometry(series_id))

    @names_keywords
    def read_region(
        self, series_id: str, start_zyx: Sequence[int], shape_zyx: Sequence[int]
    ) -> np.ndarray:
        """HU (int16, shape ``shape_zyx``) of the box starting at voxel ``start_zyx`` of the
        stored grid; voxels outside the scan read as the manifest's fill value. Decodes only
        the chunks the box touches, each checked by its CRC."""
        return self._native.read_region(
            series_id, integers("start_zyx", start_zyx, 3), integers("shape_zyx", shape_zyx, 3)
        )

    def volume(self, series_id: str) -> np.ndarray:
        """The whole stored scan, HU int16 (z, y, x); :meth:`geometry` gives its grid."""
        return self._native.volume(series_id)

    def label(self, series_id: str, name: str = "lungs") -> np.ndarray:
        """The scan's whole label volume ``name`` (``lungs``: 0 outside, 1 right, 2 left), uint8 (z, y, x)."""
        return self._native.label_volume(series_id, name)

    @names_keywords
    def read_label_region(
        self, series_id: str, name: str, start_zyx: Sequence[int], shape_zyx: Sequence[int]
    ) -> np.ndarray:
        """A box of the scan's label volume ``name``, uint8; 0 outside the scan."""
        return self._native.read_label_region(
            series_id,
            name,
            integers("start_zyx", start_zyx, 3),
            integers("shape_zyx", shape_zyx, 3),
        )

    def __len__(self) -> int:
        return len(self.series_ids)

    def __repr__(self) -> str:
        return repr(self._native)


class Viewer:
    """``ctstream view`` from Python (a notebook, a script): a local, read-only web server on
    a thread of its own showing ``store`` in the browser at :attr:`url` (the scans table with
    thumbnails and flags; a scan's axial, coronal and sagittal slices with its label volumes,
    nodules, candidates and, with ``pred``, a ``ctstream predict`` folder's probability map
    and findings), with ``run`` a training run's curves and with ``evaluation`` (else
    ``eval/`` beside ``run`` or ``pred``) its FROC. It serves until :meth:`stop`, the end of a
    ``with`` block, or the interpreter's exit. ``port`` 0 takes a free port; ``host`` is
    127.0.0.1 unless told otherwise; ``cache_mb`` bounds the decoded chunks it keeps (16
    MiB or more). Raises ``ValueError`` for a keyword out of range, :class:`Error` naming a
    folder that is not there or an address that cannot be listened on::

        with ctstream.Viewer(store, run="run", pred="pred") as v:
            print(v.url)            # open it in a browser
            input("Enter stops it")
    """

    @names_keywords
    def __init__(
        self,
        store: "Store",
        run: Optional[PathLike] = None,
        pred: Optional[PathLike] = None,
        evaluation: Optional[PathLike] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cache_mb: int = 512,
    ):
        if not isinstance(store, Store):
            raise TypeError(f"store: a ctstream.Store, not {type(store).__name__}")
        port = integer("port", port)
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port}: 0 to 65535 (0: any free port)")
        cache_mb = integer("cache_mb", cache_mb)
        if not 16 <= cache_mb <= 1 << 24:
            raise ValueError(f"cache_mb {cache_mb}: 16 to {1 << 24} (MiB)")
        if not isinstance(host, str):
            raise TypeError(f"host: an IP address as a str, not {type(host).__name__}")
        self._native = _native.Viewer(
            store._native,
            optional(_path, "run", run),
            optional(_path, "pred", pred),
            optional(_path, "evaluation", evaluation),
            host,
            port,
            cache_mb,
        )

    @property
    def url(self) -> str:
        """The page's address (``http://127.0.0.1:PORT/``)."""
        return self._native.url

    @property
    def running(self) -> bool:
        """Whether it is still serving."""
        return self._native.running

    def stop(self) -> None:
        """Stops serving (the requests in flight are answered first); again: nothing."""
        self._native.stop()

    def __enter__(self) -> "Viewer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ctstream.Viewer({self.url}{'' if self.running else ', stopped'})"


class Epoch:
    """The batches of one epoch, built ahead by the loader's Rust threads. Iterate it;
    :meth:`close` (or leaving a ``with`` block, or dropping it) stops the threads."""

    def __init__(self, native: "_native.Epoch"):
        self._native = native

    def __iter__(self) -> "Epoch":
        return self

    def __next__(self) -> Dict[str, Any]:
        batch = self._native.__next__()
        if batch is None:
            raise StopIteration
        return batch

    @property
    def next_index(self) -> Optional[int]:
        """The index of the batch the next step yields (None once closed or done)."""
        return self._native.next_index

    @property
    def running(self) -> bool:
        """Whether the worker threads are still running."""
        return self._native.running

    def close(self) -> None:
        """Stops the worker threads and waits for them."""
        self._native.close()

    def __enter__(self) -> "Epoch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Loader:
    """Random nodule-centred patches with masks from a store, as ready batches, exactly
    the Rust ``LoaderBuilder``'s (the same options, under the same names; None keeps the
    library's default, shown in brackets):

    - ``patch`` (z, y, x) [32, 64, 64]; ``batch_size`` [8]; ``positive_share`` [0.8];
      ``jitter`` (z, y, x) voxels of a positive's centre [8, 8, 8];
    - ``negatives``: one source or several with shares, as ``ctstream train --negatives``:
      ``"lungs"`` (a lung-mask voxel), ``"body"`` (a tissue voxel anywhere), ``"dense"`` (a
      tissue voxel in or within 10 mm of the lungs), ``"candidates"`` (LUNA16 class-0), ``"random"``, ``"hard"`` (findings of ``hard_negatives``), or
      ``"lungs=0.5,body=0.5"`` [lungs]; ``hard_negatives``: a findings CSV (LUNA16
      ``candidates.csv`` as ``ctstream predict`` writes it) for ``"hard"``;
      ``weighting``: ``"uniform"`` or ``"diameter"`` [uniform];
    - ``hu_window`` (lo, hi) HU mapped to 0..1 [-1000, 400] (``window`` is the same);
    - ``augment``: ``"flip,rot90,hu,noise"``, ``"all"``, ``"none"``, or a dict of
      ``flip_zyx``, ``rot90``, ``hu_shift``, ``hu_scale``, ``noise_sigma`` [none];
    - ``workers`` threads [2]; ``prefetch`` batches ahead [4]; ``fetchers``: threads
      fetching the chunks of coming patches from a store on object storage [32; none for
      a local store]; ``cache_bytes`` of decoded chunks [256 MiB] (``cache_mb`` is the
      same in MiB);
    - ``seed`` [0]; ``series`` (only these ids); ``split``: ``"train"`` or ``"val"`` with
      ``val_fraction`` [0.2]; ``rank`` and ``world`` (this rank's share of the scans);
      ``batches_per_epoch`` [every nodule once]; ``mask_label``: ``"NAME"`` or ``"NAME:V,V"``
      (masks from a label volume, not the annotated spheres: ``"nodules"`` for LIDC's
      consensus, ``"readers:2,3,4"`` for where at least 2 readers drew);
    - ``min_readers`` (1-4) and ``min_malignancy`` (1-5): positives only on LIDC nodules
      that many readers annotated, whose median malignancy is that high [all nodules];
    - ``compact``: batches of int16 HU and uint8 masks, a third of the bytes, normalised by
      the consumer (``ctstream.torch.normalise``, on the GPU) to exactly the float32 values
      [False]; refused with augmentations that interpolate or act after the window.

    Batch ``k`` of epoch ``e`` depends only on (seed, e, k), never on ``workers`` or timing.
    Each batch is a dict: ``image`` and ``mask`` float32 ``[B, 1, D, H, W]`` (arrays that own
    the Rust buffers: no copy), ``series_id`` (list of str), ``start_zyx`` int64 ``[B, 3]``,
    ``positive`` bool ``[B]``, ``nodule_id`` int64 ``[B]`` (-1 for negatives), ``source`` (list of
    str: ``"positive"`` or the negative's source), ``epoch``, ``index``. A compact batch has
    ``image`` int16 and ``mask`` uint8 instead, with ``window`` (lo, hi) and ``hu_scale``,
    ``hu_shift`` float32 ``[B]``: ``clip(((image * hu_scale + hu_shift) - lo) * (1 / (hi - lo)),
    0, 1)`` in float32, operation by operation, is the float32 batch.
    Bad options raise ``ValueError`` naming the option.
    """

    @names_keywords
    def __init__(
        self,
        store: Union[Store, PathLike],
        *,
        patch: Optional[Sequence[int]] = None,
        batch_size: Optional[int] = None,
        positive_share: Optional[float] = None,
        jitter: Optional[Sequence[int]] = None,
        negatives: Optional[str] = None,
        weighting: Optional[str] = None,
        hu_window: Optional[Sequence[float]] = None,
        window: Optional[Sequence[float]] = None,
        augment: Union[None, str, Dict[str, Any]] = None,
        workers: Optional[int] = None,
        prefetch: Optional[int] = None,
        fetchers: Optional[int] = None,
        cache_bytes: Optional[int] = None,
        cache_mb: Optional[int] = None,
        seed: Optional[int] = None,
        series: Optional[Sequence[str]] = None,
        split: Optional[str] = None,
        val_fraction: Optional[float] = None,
        rank: Optional[int] = None,
        world: Optional[int] = None,
        batches_per_epoch: Optional[int] = None,
        mask_label: Optional[str] = None,
        min_readers: Optional[int] = None,
        min_malignancy: Optional[float] = None,
        hard_negatives: Optional[PathLike] = None,
        compact: bool = False,
    ):
        if not isinstance(store, Store):
            store = Store(store)
        if window is not None and hu_window is not None:
            raise ValueError("window and hu_window are the same option: give one")
        if cache_mb is not None and cache_bytes is not None:
            raise ValueError("cache_mb and cache_bytes are the same option: give one")
        if cache_mb is not None:
            cache_mb = integer("cache_mb", cache_mb)
            if not 0 <= cache_mb <= 1 << 20:
                raise ValueError(f"cache_mb {cache_mb}: give 0 to {1 << 20} (1 TiB)")
            cache_bytes = cache_mb << 20
        hu_window = window if window is not None else hu_window
        self.store = store
        self._native = _native.Loader(
            store._native,
            patch=optional(integers, "patch", patch, 3),
            batch_size=optional(integer, "batch_size", batch_size),
            positive_share=optional(number, "positive_share", positive_share),
            jitter=optional(integers, "jitter", jitter, 3),
            negatives=negatives,
            weighting=weighting,
            hu_window=optional(numbers_, "hu_window", hu_window, 2),
            augment=augment,
            workers=optional(integer, "workers", workers),
            prefetch=optional(integer, "prefetch", prefetch),
            fetchers=optional(integer, "fetchers", fetchers),
            cache_bytes=optional(integer, "cache_bytes", cache_bytes),
            seed=optional(integer, "seed", seed),
            series=optional(strings, "series", series),
            split=split,
            val_fraction=optional(number, "val_fraction", val_fraction),
            rank=optional(integer, "rank", rank),
            world=optional(integer, "world", world),
            batches_per_epoch=optional(integer, "batches_per_epoch", batches_per_epoch),
            mask_label=mask_label,
            min_readers=optional(integer, "min_readers", min_readers),
            min_malignancy=optional(number, "min_malignancy", min_malignancy),
            hard_negatives=optional(_path, "hard_negatives", hard_negatives),
            compact=compact,
        )
        self.config: Dict[str, Any] = json.loads(self._native.config_json())

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def series_ids(self) -> List[str]:
        """Ids of the selected scans (after series, split and rank/world)."""
        return self._native.series_ids()

    @property
    def batches_per_epoch(self) -> int:
        return self._native.batches_per_epoch()

    def __len__(self) -> int:
        return self._native.batches_per_epoch()

    @property
    def positive_targets(self) -> int:
        """Nodules (or label components) positives are centred on."""
        return self._native.positive_targets()

    @property
    def notes(self) -> List[str]:
        """What the user should know about the selection (say, scans without a lung mask)."""
        return self._native.notes()

    def cache_stats(self) -> Dict[str, int]:
        """Chunk-cache counters: hits, misses, decoded_bytes, held_bytes."""
        h, m, d, b = self._native.cache_stats()
        return {"hits": h, "misses": m, "decoded_bytes": d, "held_bytes": b}

    @names_keywords
    def epoch(self, epoch: int) -> Epoch:
        """The batches of epoch ``epoch``, in order."""
        return Epoch(self._native.batches(integer("epoch", epoch)))

    @names_keywords
    def batches(self, epoch: int, first: int = 0, count: Optional[int] = None) -> Epoch:
        """The batches ``first .. first + count`` of epoch ``epoch`` (to the end by default),
        for resuming mid-epoch; a range past the end of the epoch raises ``ValueError``."""
        return Epoch(
            self._native.batches(
                integer("epoch", epoch),
                integer("first", first),
                optional(integer, "count", count),
            )
        )

    @names_keywords
    def epochs(self, epoch: int = 0, first: int = 0) -> Epoch:
        """Every batch from batch ``first`` of epoch ``epoch`` on, through the epochs after
        it, built by the same threads: where an epoch ends, the next one's first batches
        are already built (each batch says its ``epoch`` and ``index``). It never ends:
        close it, or leave its ``with`` block."""
        return Epoch(self._native.epochs(integer("epoch", epoch), integer("first", first)))

    def __repr__(self) -> str:
        return repr(self._native)


@names_keywords
def ingest(
    inputs: Union[PathLike, Sequence[PathLike]],
    out: PathLike,
    *,
    annotations: Optional[PathLike] = None,
    excluded: Optional[PathLike] = None,
    candidates: Optional[PathLike] = None,
    spacing: Optional[Sequence[float]] = None,
    chunk: Optional[Sequence[int]] = None,
    level: Optional[int] = None,
    clip: Optional[Sequence[int]] = None,
    jobs: Optional[int] = None,
    resume: bool = False,
    resample_uneven: bool = False,
    allow_missing_slices: bool = False,
    lung_mask: bool = True,
    labels: Union[None, Dict[str, PathLike], Sequence[str]] = None,
    nnunet: Union[None, PathLike, Sequence[PathLike]] = None,
    lidc_xml: Union[None, PathLike, Sequence[PathLike]] = None,
    shard: Optional[str] = None,
    stage: Optional[PathLike] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Builds (or, with ``resume``, extends) a store, as ``ctstream ingest`` does with the
    same options: ``spacing`` (x, y, z) mm [1, 1, 1], ``chunk`` (z, y, x) [16, 32, 32],
    zstd ``level`` [3], ``clip`` (lo, hi) HU [-1024, 3071], ``jobs`` [one per CPU],
    ``labels`` ({name: folder} or ``["NAME=DIR", ...]``), ``nnunet`` (raw dataset folders),
    ``lidc_xml`` (folders of LIDC-IDRI reader XML kept apart from the scans; XML beside a
    DICOM series' slices is read without it: each series' nodules become the label volumes
    ``nodules`` and ``readers`` and rows of the ``nodules`` and ``annotations`` tables).
    ``out`` is a folder or a URL on object storage (``s3://bucket/luna``; each scan is
    written to the local folder ``stage`` first, then uploaded); ``shard="K/N"`` ingests
    only that share of the series (then :func:`index` once every shard is done).

    Returns the summary (``stored``, ``skipped``, ``failed`` with each file and reason,
    ``warnings``, sizes, seconds). A scan that fails is listed there and the others are
    stored; bad options raise ``ValueError`` naming the option; an ingest that cannot run
    (the store locked by another, an unreadable CSV) raises :class:`IngestError`.
    """
    if isinstance(labels, dict):
        labels = [f"{name}={_path('labels', d)}" for name, d in labels.items()]
    summary = _native.ingest(
        paths("inputs", inputs),
        _path("out", out),
        annotations=optional(_path, "annotations", annotations),
        excluded=optional(_path, "excluded", excluded),
        candidates=optional(_path, "candidates", candidates),
        spacing=optional(numbers_, "spacing", spacing, 3),
        chunk=optional(integers, "chunk", chunk, 3),
        level=optional(integer, "level", level),
        clip=optional(integers, "clip", clip, 2),
        jobs=optional(integer, "jobs", jobs),
        resume=resume,
        resample_uneven=resample_uneven,
        allow_missing_slices=allow_missing_slices,
        lung_mask=lung_mask,
        labels=optional(strings, "labels", labels),
        nnunet=optional(paths, "nnunet", nnunet),
        lidc_xml=optional(paths, "lidc_xml", lidc_xml),
        shard=shard,
        stage=optional(_path, "stage", stage),
        progress=progress,
    )
    return json.loads(summary)


@names_keywords
def index(
    store: PathLike,
    *,
    annotations: Optional[PathLike] = None,
    excluded: Optional[PathLike] = None,
    candidates: Optional[PathLike] = None,
    drop_csv: bool = False,
) -> Dict[str, Any]:
    """Rebuilds the parquet index of the store at ``store`` (a folder or a URL) from its
    records and the annotation CSVs, as ``ctstream index`` does: run it once the shards of
    a sharded :func:`ingest` are done. Give the CSVs given to the ingest; leaving out one
    whose rows the index holds raises :class:`IngestError` unless ``drop_csv``.

    Returns the summary (``scans_in_store``, ``nodules_indexed``, ``candidates_indexed``,
    ``damaged``, ...).
    """
    return json.loads(
        _native.index(
            _path("store", store),
            annotations=optional(_path, "annotations", annotations),
            excluded=optional(_path, "excluded", excluded),
            candidates=optional(_path, "candidates", candidates),
            drop_csv=drop_csv,
        )
    )


@names_keywords
def synth(
    out: PathLike,
    *,
    scans: int = 4,
    seed: int = 0,
    small: bool = False,
    dicom: bool = False,
    labels: bool = False,
    nnunet: bool = False,
    progress: bool = True,
) -> Dict[str, Any]:
    """Writes a synthetic LUNA16-style dataset under ``out``, as ``ctstream synth``: ``scans``
    MetaImage scans (``small``: 128 x 128 in-plane, 32-48 slices) with lungs, airways and
    nodules, ``annotations.csv`` and ``candidates.csv``; with ``dicom`` each scan also as a
    DICOM series, with ``labels`` its label map, with ``nnunet`` nnU-Net's raw layout. The
    same seed writes the same bytes. Returns the paths, ready for :func:`ingest`::

        d = ctstream.synth("raw", scans=4, small=True)
        ctstream.ingest(d["out"], "store", annotations=d["annotations"], candidates=d["candidates"])
    """
    files, annotations, candidates, nodules = _native.synth(
        _path("out", out),
        scans=integer("scans", scans),
        seed=integer("seed", seed),
        small=small,
        dicom=dicom,
        labels=labels,
        nnunet=nnunet,
        progress=progress,
    )
    return {
        "out": os.fspath(out),
        "scans": [os.fspath(f) for f in files],
        "annotations": os.fspath(annotations),
        "candidates": os.fspath(candidates),
        "nodules": int(nodules),
    }


def _parquet(data: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


def _as_model(model: Any):
    """A torch module as the function the sliding window calls (numpy in, numpy out, on
    the module's device, without gradients); any other callable as it is."""
    try:
        import torch

        is_module = isinstance(model, torch.nn.Module)
    except ImportError:
        is_module = False
    if is_module:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")

        def call(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                y = model(torch.from_numpy(x).to(device))
            return y.float().cpu().numpy()

        return call
    if not callable(model):
        raise TypeError(f"model: {type(model).__name__} is neither a torch module nor callable")
    return model


class Predictions:
    """What :func:`predict` made: ``series`` (the scans predicted, in order), ``scans`` (a
    dict per scan: ``series_id``, ``tiles``, ``tiles_computed``, ``looked``, ``findings``,
    ``outside_region``, ``seconds``, and ``probabilities``, the float32 map (z, y, x) on
    the stored grid, or None when not kept), ``findings`` (a ``pyarrow.Table`` with the
    columns of ``findings.parquet``), ``files`` (the paths of ``candidates.csv``,
    ``findings.parquet`` and ``series.txt`` when written, else None) and ``score``
    (``"max"`` or ``"mean"``: the probability column the findings are ranked by)."""

    __slots__ = ("series", "scans", "findings", "files", "score")

    def __init__(
        self, series: List[str], scans: List[Dict[str, Any]], findings, files, score: str = "max"
    ):
        if score not in ("max", "mean"):
            raise ValueError(f"score: {score!r}: give 'max' or 'mean'")
        self.series = series
        self.scans = scans
        self.findings = findings
        self.files = files
        self.score = score

    def detections(self) -> List[Tuple[str, float, float, float, float]]:
        """The findings as LUNA16 detections: (series id, x, y, z, probability), the centre
        in world mm and the finding's score (its maximum or mean probability, as ``score``
        says), as ``candidates.csv`` has them."""
        t = self.findings.to_pydict()
        return list(
            zip(
                t["series_id"],
                t["world_x"],
                t["world_y"],
                t["world_z"],
                t[f"{self.score}_probability"],
            )
        )

    def __repr__(self) -> str:
        return f"Predictions({len(self.series)} scans, {self.findings.num_rows} findings)"


@names_keywords
def predict(
    store: Union[Store, PathLike],
    series: Union[str, Sequence[str]],
    model: Any,
    *,
    out: Optional[PathLike] = None,
    keep_maps: Optional[bool] = None,
    patch: Optional[Sequence[int]] = None,
    overlap: Optional[float] = None,
    batch_size: Optional[int] = None,
    hu_window: Optional[Sequence[float]] = None,
    threshold: Optional[float] = None,
    min_voxels: Optional[int] = None,
    merge_mm: Optional[float] = None,
    score: Optional[str] = None,
    lung_roi: Optional[bool] = None,
    map_format: Optional[str] = None,
    mirror: Optional[str] = None,
    progress: bool = True,
) -> Predictions:
    """Predicts whole stored scans with ``model``, as ``ctstream predict`` does with a
    trained run: tiles of ``patch`` voxels (z, y, x) overlapping by ``overlap``, read from
    the store as needed and windowed to 0..1 over ``hu_window`` (HU), ``batch_size`` tiles
    per call, blended with Gaussian weights; with ``lung_roi`` only the tiles that are the
    nearest tile (by centre) of some voxel of the scan's lung region are computed and
    findings outside it are dropped. Findings are the 6-connected components of the map
    at ``threshold`` of at least ``min_voxels``; a finding within ``merge_mm`` of one with
    a higher score is merged into it; ``score`` (``"max"`` or ``"mean"``) is the
    probability of a finding that ranks it, as ``ctstream predict --score``.
    Settings left None take the library's defaults: patch (32, 64, 64), overlap 0.5,
    batch 8, HU window (-1000, 400), threshold 0.5, min_voxels 1, merge_mm 0 (none),
    score max, lung_roi on, no mirroring.
    ``mirror`` (``"zyx"``, ``"yx"``, ... or ``"none"``) is test-time mirroring as nnU-Net
    does it: each batch is also predicted mirrored along every combination of those axes,
    mirrored back, and the predictions averaged.

    ``model`` is a ``torch.nn.Module`` (called without gradients on its own device; put it
    in eval mode first) or any callable from a float32 array [B, 1, D, H, W] to
    probabilities of the same size (apply the sigmoid yourself if it returns logits).

    With ``out``, writes what ``ctstream predict`` writes there: ``candidates.csv``,
    ``findings.parquet``, ``series.txt`` and each map (``map_format``: ``ctv``, ``mhd`` or
    ``none``), one scan at a time; the maps are then not kept in memory unless
    ``keep_maps``. Raises :class:`StoreError` for an unknown or unreadable scan,
    ``ValueError`` for a bad setting and :class:`Error` when the model fails.
    """
    s = store if isinstance(store, Store) else Store(store)
    ids = strings("series", series)
    scans, findings, files = _native.predict(
        s._native,
        ids,
        _as_model(model),
        out=optional(_path, "out", out),
        keep_maps=out is None if keep_maps is None else keep_maps,
        patch=optional(integers, "patch", patch, 3),
        overlap=optional(number, "overlap", overlap),
        batch_size=optional(integer, "batch_size", batch_size),
        hu_window=optional(numbers_, "hu_window", hu_window, 2),
        threshold=optional(number, "threshold", threshold),
        min_voxels=optional(integer, "min_voxels", min_voxels),
        merge_mm=optional(number, "merge_mm", merge_mm),
        score=score,
        lung_roi=lung_roi,
        map_format=map_format,
        mirror=mirror,
        progress=progress,
    )
    files_dict = None
    if files is not None:
        files_dict = dict(zip(("candidates", "findings", "series"), map(os.fspath, files)))
    return Predictions(ids, list(scans), _parquet(findings), files_dict, score or "max")


@names_keywords
def evaluate(
    predictions: Union[Predictions, PathLike, Any],
    store: Union[Store, PathLike],
    *,
    series: Optional[Sequence[str]] = None,
    bootstrap: int = 1000,
    seed: int = 0,
    out: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """The LUNA16 FROC evaluation of ``predictions`` against the store's annotated nodules
    (and excluded findings), as ``ctstream evaluate`` computes it: sensitivities at 1/8 to
    8 false positives per scan, the CPM, and with ``bootstrap`` resamplings of the scans
    95 % intervals. ``predictions`` is what :func:`predict` returned, a ``pyarrow.Table``
    with the columns of ``findings.parquet``, a list of (series id, x, y, z, probability),
    a ``candidates.csv`` file or a folder ``ctstream predict`` wrote. ``series`` (the scans evaluated, the divisor of false
    positives per scan) defaults to the scans predicted (``series.txt`` for a folder), else
    those named in the detections. With ``out``, writes ``froc.json``, ``froc.csv`` and
    ``froc.png`` there. Returns the result as a dict (``cpm``, ``sensitivities``,
    ``curve``, ``intervals``, counts)."""
    s = store if isinstance(store, Store) else Store(store)
    listed: Optional[List[str]] = None
    title = "FROC"
    if isinstance(predictions, Predictions):
        detections = predictions.detections()
        listed = predictions.series
    elif isinstance(predictions, (str, os.PathLike)):
        path = os.fspath(predictions)
        if os.path.isdir(path):
            listed = _native.read_series_list(os.path.join(path, "series.txt"))
            path = os.path.join(path, "candidates.csv")
        detections = _native.read_predictions(path)
        title = f"FROC of {os.path.basename(path)}"
    elif isinstance(predictions, (list, tuple)):
        detections = list(predictions)
    else:
        detections = Predictions([], [], predictions, None).detections()
    if series is None:
        series = listed if listed is not None else sorted({d[0] for d in detections})
    result = _native.evaluate(
        s._native,
        [(str(a), float(x), float(y), float(z), float(p)) for a, x, y, z, p in detections],
        strings("series", series),
        bootstrap=integer("bootstrap", bootstrap),
        seed=integer("seed", seed),
        out=optional(_path, "out", out),
        title=title,
    )
    return json.loads(result)
