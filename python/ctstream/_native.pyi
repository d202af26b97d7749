"""Types of ``ctstream._native``, the Rust extension (python/src/lib.rs). Use the
wrappers in ``ctstream`` (Store, Loader, ingest); this module is what they call.
Checked against the built module by ``python -m mypy.stubtest ctstream._native``
(python/tests/test_stubs.py)."""

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "Store",
    "Loader",
    "Epoch",
    "BatchBuffer",
    "Viewer",
    "ingest",
    "index",
    "synth",
    "predict",
    "evaluate",
    "read_predictions",
    "read_series_list",
    "version",
    "index_to_world",
    "world_to_index",
    "DISK_CACHE_GB",
    "Error",
    "StoreError",
    "LoaderError",
    "IngestError",
]

class Error(Exception):
    """Base class of the errors ctstream raises."""

class StoreError(Error):
    """A store could not be opened or read: the message names the file (and the chunk or field)."""

class LoaderError(Error):
    """The loader failed while building a batch (a store error while streaming is a StoreError)."""

class IngestError(Error):
    """An ingest could not start or finish (a scan that fails alone is listed in the summary instead)."""

_Vec3 = Tuple[float, float, float]

DISK_CACHE_GB: float

@final
class Store:
    def __new__(
        cls,
        path: Union[str, "os.PathLike[str]"],
        disk_cache: Optional[Union[str, "os.PathLike[str]"]] = None,
        disk_cache_gb: Optional[float] = None,
    ) -> "Store": ...
    @property
    def path(self) -> str: ...
    def manifest_json(self) -> str: ...
    def series_ids(self) -> List[str]: ...
    def record_json(self, series_id: str) -> str: ...
    def damaged(self) -> List[Tuple[str, str, str]]: ...
    def table_bytes(self, name: str) -> Optional[bytes]: ...
    def table_names(self) -> List[str]: ...
    def geometry(
        self, series_id: str
    ) -> Tuple[
        _Vec3, _Vec3, Tuple[float, float, float, float, float, float, float, float, float]
    ]: ...
    def read_region(
        self, series_id: str, start_zyx: Sequence[int], shape_zyx: Sequence[int]
    ) -> npt.NDArray[np.int16]: ...
    def volume(self, series_id: str) -> npt.NDArray[np.int16]: ...
    def read_label_region(
        self, series_id: str, name: str, start_zyx: Sequence[int], shape_zyx: Sequence[int]
    ) -> npt.NDArray[np.uint8]: ...
    def label_volume(self, series_id: str, name: str) -> npt.NDArray[np.uint8]: ...

@final
class Viewer:
    def __new__(
        cls,
        store: Store,
        run: Optional[Union[str, "os.PathLike[str]"]] = None,
        pred: Optional[Union[str, "os.PathLike[str]"]] = None,
        evaluation: Optional[Union[str, "os.PathLike[str]"]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cache_mb: int = 512,
    ) -> "Viewer": ...
    @property
    def url(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def stop(self) -> None: ...

@final
class Loader:
    def __new__(
        cls,
        store: Store,
        *,
        patch: Optional[Sequence[int]] = None,
        batch_size: Optional[int] = None,
        positive_share: Optional[float] = None,
        jitter: Optional[Sequence[int]] = None,
        negatives: Optional[str] = None,
        weighting: Optional[str] = None,
        hu_window: Optional[Sequence[float]] = None,
        augment: Union[None, str, Dict[str, Any]] = None,
        workers: Optional[int] = None,
        prefetch: Optional[int] = None,
        fetchers: Optional[int] = None,
        cache_bytes: Optional[int] = None,
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
        hard_negatives: Optional[str] = None,
        compact: Optional[bool] = None,
    ) -> "Loader": ...
    def config_json(self) -> str: ...
    def series_ids(self) -> List[str]: ...
    def batches_per_epoch(self) -> int: ...
    def positive_targets(self) -> int: ...
    def notes(self) -> List[str]: ...
    def cache_stats(self) -> Tuple[int, int, int, int]: ...
    def batches(self, epoch: int, first: int = 0, count: Optional[int] = None) -> "Epoch": ...
    def epochs(self, epoch: int, first: int = 0) -> "Epoch": ...

@final
class Epoch:
    def __iter__(self) -> "Epoch": ...
    def __next__(self) -> Optional[Dict[str, Any]]: ...
    @property
    def next_index(self) -> Optional[int]: ...
    @property
    def running(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Epoch": ...
    def __exit__(self, *_args: Any) -> bool: ...
    def _buffer_addresses(self) -> Optional[Tuple[int, int]]: ...

@final
class BatchBuffer:
    """The owner of a batch array's memory (its ``base``): handed back to the loader for
    later batches when the array, and every tensor sharing it, is freed."""

def ingest(
    inputs: Sequence[Union[str, "os.PathLike[str]"]],
    out: Union[str, "os.PathLike[str]"],
    *,
    annotations: Optional[Union[str, "os.PathLike[str]"]] = None,
    excluded: Optional[Union[str, "os.PathLike[str]"]] = None,
    candidates: Optional[Union[str, "os.PathLike[str]"]] = None,
    spacing: Optional[Sequence[float]] = None,
    chunk: Optional[Sequence[int]] = None,
    level: Optional[int] = None,
    clip: Optional[Sequence[int]] = None,
    jobs: Optional[int] = None,
    resume: bool = False,
    resample_uneven: bool = False,
    allow_missing_slices: bool = False,
    lung_mask: bool = True,
    labels: Optional[Sequence[str]] = None,
    nnunet: Optional[Sequence[Union[str, "os.PathLike[str]"]]] = None,
    lidc_xml: Optional[Sequence[Union[str, "os.PathLike[str]"]]] = None,
    shard: Optional[str] = None,
    stage: Optional[Union[str, "os.PathLike[str]"]] = None,
    progress: bool = True,
) -> str: ...
def index(
    store: Union[str, "os.PathLike[str]"],
    *,
    annotations: Optional[Union[str, "os.PathLike[str]"]] = None,
    excluded: Optional[Union[str, "os.PathLike[str]"]] = None,
    candidates: Optional[Union[str, "os.PathLike[str]"]] = None,
    drop_csv: bool = False,
) -> str: ...
def synth(
    out: Union[str, "os.PathLike[str]"],
    *,
    scans: int = 4,
    seed: int = 0,
    small: bool = False,
    dicom: bool = False,
    labels: bool = False,
    nnunet: bool = False,
    progress: bool = True,
) -> Tuple[List[Path], Path, Path, int]: ...
def predict(
    store: Store,
    series: Sequence[str],
    model: Any,
    *,
    out: Optional[Union[str, "os.PathLike[str]"]] = None,
    keep_maps: bool = True,
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
    progress: bool = False,
) -> Tuple[List[Dict[str, Any]], bytes, Optional[Tuple[Path, Path, Path]]]: ...
def evaluate(
    store: Store,
    detections: Sequence[Tuple[str, float, float, float, float]],
    series: Sequence[str],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    out: Optional[Union[str, "os.PathLike[str]"]] = None,
    title: Optional[str] = None,
) -> str: ...
def read_predictions(
    path: Union[str, "os.PathLike[str]"],
) -> List[Tuple[str, float, float, float, float]]: ...
def read_series_list(path: Union[str, "os.PathLike[str]"]) -> List[str]: ...
def version() -> str: ...
def index_to_world(
    origin: Sequence[float],
    spacing: Sequence[float],
    direction: Sequence[float],
    index_zyx: Sequence[float],
) -> List[float]: ...
def world_to_index(
    origin: Sequence[float],
    spacing: Sequence[float],
    direction: Sequence[float],
    world_xyz: Sequence[float],
) -> List[float]: ...
