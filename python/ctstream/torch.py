"""ctstream's loader as a PyTorch dataset: batches as torch tensors, built by the loader's
Rust threads, resumable from a checkpoint.

    import torch, ctstream.torch
    ds = ctstream.torch.PatchDataset("store", patch=(32, 64, 64), batch_size=16, seed=0)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    for epoch in range(10):
        for batch in dl:                      # one epoch per pass
            loss = step(batch["image"], batch["mask"])   # float32 [16, 1, 32, 64, 64]
    torch.save({"model": model.state_dict(), "data": ds.state_dict()}, "ckpt.pt")

The dataset yields whole batches, so give the DataLoader ``batch_size=None``; the
parallelism is in Rust, so ``num_workers=0`` (a DataLoader worker process cannot run it
and says so, instead of hanging). Tensors share the Rust buffers (``torch.from_numpy``:
no copy).

With ``compact=True`` the batches hold int16 HU and uint8 masks (a third of the bytes to
build and to copy to the GPU) and :func:`normalise` makes the float32 tensors on the
device, the same values bit for bit as the loader's own float32 batches::

    ds = ctstream.torch.PatchDataset("store", compact=True)
    for batch in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0):
        image, mask = ctstream.torch.normalise(batch, "cuda")   # float32 on the GPU
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple, Union

import numpy as np
import torch
import torch.utils.data

from . import Epoch, Loader, PathLike, Store
from ._keywords import integer

__all__ = ["PatchDataset", "normalise", "to_torch"]


def to_torch(batch: Dict[str, Any]) -> Dict[str, Any]:
    """A batch of :class:`ctstream.Loader` with its arrays as torch tensors that share their
    memory (``image``, ``mask``: float32 [B, 1, D, H, W], or int16 and uint8 in a compact
    batch, with ``hu_scale`` and ``hu_shift``; ``start_zyx``, ``positive``, ``nodule_id``);
    ``series_id``, ``source``, ``window``, ``epoch`` and ``index`` as they are."""
    out = dict(batch)
    for key in ("image", "mask", "start_zyx", "positive", "nodule_id", "hu_scale", "hu_shift"):
        if key in batch:
            out[key] = torch.from_numpy(batch[key])
    return out


def normalise(
    batch: Dict[str, Any], device: Union[str, torch.device, None] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(image, mask) of a batch as float32 tensors on ``device`` (default: where the batch
    is). A compact batch (``Loader(compact=True)``) is copied to the device as int16 and
    uint8 (through pinned memory for a CUDA device) and normalised there, operation by
    operation as the loader's float32 path does, so the values are the same bit for bit:
    ``clamp(((image * hu_scale + hu_shift) - lo) * inv, 0, 1)`` with ``inv = 1 / (hi - lo)``
    in float32. A float32 batch is only moved."""
    batch = to_torch(batch) if not isinstance(batch["image"], torch.Tensor) else batch
    device = torch.device(device) if device is not None else batch["image"].device

    def move(t: torch.Tensor) -> torch.Tensor:
        if device.type == "cuda" and t.device.type == "cpu":
            return t.pin_memory().to(device, non_blocking=True)
        return t.to(device)

    image, mask = move(batch["image"]), move(batch["mask"])
    if image.dtype == torch.float32:
        return image, mask
    if image.dtype != torch.int16 or "window" not in batch:
        raise ValueError(
            f"normalise: image of {image.dtype} without a window: not a ctstream batch"
        )
    lo, hi = (np.float32(v) for v in batch["window"])
    inv = np.float32(1.0) / (hi - lo)
    n = image.shape[0]
    scale = move(batch["hu_scale"]).to(torch.float32).view(n, 1, 1, 1, 1)
    shift = move(batch["hu_shift"]).to(torch.float32).view(n, 1, 1, 1, 1)
    scalar = lambda v: torch.tensor(float(v), dtype=torch.float32, device=device)  # noqa: E731
    x = image.to(torch.float32)
    x = x * scale
    x = x + shift
    x = x - scalar(lo)
    x = x * scalar(inv)
    x = x.clamp_(0.0, 1.0)
    return x, mask.to(torch.float32)


def _distributed() -> Optional[tuple]:
    """(rank, world size) of an initialised ``torch.distributed`` process group, else None."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


class PatchDataset(torch.utils.data.IterableDataset):
    """The batches of a :class:`ctstream.Loader` as torch tensors (see :func:`to_torch`).

    ``store`` is a :class:`ctstream.Store` or its folder; every other keyword is a
    :class:`ctstream.Loader` option. ``rank`` and ``world`` default to those of
    ``torch.distributed`` when a process group is initialised (each rank then reads a
    disjoint share of the scans), else to the whole store.

    Each pass (``iter``) yields the rest of the current epoch and then moves to the next
    epoch; :meth:`set_epoch` chooses one. :meth:`state_dict` is (seed, epoch, next batch):
    saved with a checkpoint and given to :meth:`load_state_dict`, the next pass starts on
    exactly the batch after the last one yielded. The loader's threads persist from pass
    to pass (one :meth:`ctstream.Loader.epochs` stream), building the next epoch's first
    batches while a pass ends; :meth:`close` stops them.
    """

    def __init__(
        self,
        store: Union[Store, PathLike],
        *,
        rank: Optional[int] = None,
        world: Optional[int] = None,
        **loader_options: Any,
    ):
        super().__init__()
        if rank is None and world is None:
            rank, world = _distributed() or (None, None)
        self.loader = Loader(store, rank=rank, world=world, **loader_options)
        self.rank, self.world = rank, world
        self._epoch = 0
        self._next = 0
        # One stream of batches through the epochs (Loader.epochs), kept between passes so
        # that its threads persist and build the next epoch while this one is used; with
        # the (epoch, batch) it delivers next.
        self._stream: Optional[Epoch] = None
        self._stream_at = (0, 0)

    def __len__(self) -> int:
        """Batches in one epoch."""
        return len(self.loader)

    @property
    def epoch(self) -> int:
        """The epoch the next pass reads."""
        return self._epoch

    @property
    def next_batch(self) -> int:
        """The batch of :attr:`epoch` the next pass starts on."""
        return self._next

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass read epoch ``epoch`` from its first batch."""
        epoch = integer("epoch", epoch)
        if not 0 <= epoch < 1 << 64:
            raise ValueError(f"epoch {epoch}: give 0 to {(1 << 64) - 1}")
        self._epoch, self._next = epoch, 0

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            raise RuntimeError(
                f"ctstream.torch.PatchDataset cannot run in DataLoader worker process {info.id} (num_workers={info.num_workers}): "
                "its loader is already parallel, with threads in Rust (`workers=`). Use DataLoader(dataset, batch_size=None, num_workers=0)."
            )
        return self._batches()

    def _batches(self) -> Iterator[Dict[str, Any]]:
        epoch, first = self._epoch, self._next
        n = len(self.loader)
        if first >= n:  # the last pass stopped after the last batch of its epoch
            epoch, first = epoch + 1, 0
        if self._stream is None or self._stream_at != (epoch, first):
            self.close()
            self._stream = self.loader.epochs(epoch, first)
        for batch in self._stream:
            k = batch["index"] + 1
            self._next = k
            self._stream_at = (epoch, k) if k < n else (epoch + 1, 0)
            yield to_torch(batch)
            if k == n:
                break
        self._epoch, self._next = epoch + 1, 0

    def close(self) -> None:
        """Stops the loader's threads (a later pass starts them again)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def state_dict(self) -> Dict[str, int]:
        """Where the loader stands: ``seed``, ``epoch`` and ``next_batch`` (plus
        ``batches_per_epoch``, ``rank`` and ``world``, checked on load)."""
        return {
            "seed": self.loader.seed,
            "epoch": self._epoch,
            "next_batch": self._next,
            "batches_per_epoch": len(self.loader),
            "rank": -1 if self.rank is None else int(self.rank),
            "world": -1 if self.world is None else int(self.world),
        }

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Continues from ``state`` (:meth:`state_dict` of a dataset built with the same
        store and options). Raises ``ValueError`` when the seed, the epoch length or the
        shard differ: the batches would not be the ones the saved run was to see."""
        want = self.state_dict()
        for key in ("seed", "batches_per_epoch", "rank", "world"):
            if key in state and int(state[key]) != want[key]:
                raise ValueError(
                    f"load_state_dict: the state has {key} {state[key]}, this dataset {want[key]}: build it with the options of the run that saved the state"
                )
        epoch, nxt = int(state["epoch"]), int(state["next_batch"])
        if epoch < 0 or not 0 <= nxt <= want["batches_per_epoch"]:
            raise ValueError(
                f"load_state_dict: epoch {epoch}, next_batch {nxt}: outside epochs of {want['batches_per_epoch']} batches"
            )
        if nxt == want["batches_per_epoch"]:
            epoch, nxt = epoch + 1, 0
        self._epoch, self._next = epoch, nxt

    def __reduce__(self):
        raise TypeError(
            "ctstream.torch.PatchDataset cannot be pickled into another process (a spawned DataLoader worker): "
            "its loader is already parallel, with threads in Rust. Use DataLoader(dataset, batch_size=None, num_workers=0)."
        )
