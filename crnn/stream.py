"""Stream a canonical trace file into Keras in batches, without holding the whole split in memory.

:class:`TraceStream` is a ``keras.utils.PyDataset`` (so it works with every Keras backend) that
reads the ``traces`` and ``labels`` datasets of a canonical file chunk by chunk with h5py.

Shuffling, when asked for, is a two-level shuffle that crosses chunk boundaries:

1. the file is cut into blocks of ``chunk_size`` consecutive traces, and the order of the blocks
   is shuffled;
2. consecutive groups of (at most) ``buffer_chunks`` shuffled blocks form a *window*; the traces
   of a window are shuffled together and cut into batches.

The order is a pure function of ``(seed, epoch)``, so a resumed run sees the same batches as an
uninterrupted one. Every trace is visited exactly once per epoch. At most two windows are held
in memory at a time (the one being served and the next one, which a background thread reads
ahead), so the peak memory is set by ``chunk_size * buffer_chunks``, not by the file size.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from crnn.tracefile import DEFAULT_CHUNK, TraceFile

#: traces per block read from the file (a multiple of the 1024-trace HDF5 chunks that crnn writes)
DEFAULT_CHUNK_TRACES = DEFAULT_CHUNK
#: blocks shuffled together in one window
DEFAULT_BUFFER_CHUNKS = 4


class TraceStream(keras.utils.PyDataset):
    """Batches ``(traces, labels[, sample_weight])`` read from a canonical file, optionally shuffled.

    ``class_weight`` ({0: w0, 1: w1}) and ``sample_weight`` (one per trace of the file, in file
    order) add per-trace sample weights. ``with_labels=False`` yields
    traces only (for ``model.predict``). Indices are served by window; access in order (as
    Keras does) reads each window once. A new epoch starts when batch 0 is asked for after all
    batches of the current epoch were served (Keras' TensorFlow adapter may prefetch the next
    epoch before its ``on_epoch_*`` hooks run, so the epoch is counted from the accesses).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        start_epoch: int = 0,
        chunk_size: int = DEFAULT_CHUNK_TRACES,
        buffer_chunks: int = DEFAULT_BUFFER_CHUNKS,
        class_weight: dict[int, float] | None = None,
        sample_weight: np.ndarray | None = None,
        with_labels: bool = True,
        prefetch: bool = True,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.path = Path(path)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = int(start_epoch)
        self.chunk_size = max(1, int(chunk_size))
        self.buffer_chunks = max(1, int(buffer_chunks)) if shuffle else 1
        self.class_weight = class_weight
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        self.with_labels = with_labels
        self._file = TraceFile(self.path)
        self.n_traces = self._file.n_traces
        self.input_shape = (self._file.n_channels, self._file.n_samples)
        self._lock = threading.Lock()
        self._h5_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crnn-stream") if prefetch else None
        self._windows: dict[tuple[int, int], Future | tuple[np.ndarray, np.ndarray | None]] = {}
        self._served = 0
        self._plan: list[np.ndarray] = []
        self._batch_index: np.ndarray = np.zeros((0, 2), dtype=np.int64)
        self._make_plan()

    # -- order ----------------------------------------------------------------------------
    def _make_plan(self) -> None:
        """Windows (arrays of trace indices, in serving order) and the batches cut from them."""
        n_blocks = -(-self.n_traces // self.chunk_size)
        blocks = np.arange(n_blocks)
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        if rng is not None:
            rng.shuffle(blocks)
        windows = []
        # windows of (nearly) equal numbers of blocks, so that the last one is not a lone block
        for group in np.array_split(blocks, -(-n_blocks // self.buffer_chunks)):
            idx = np.concatenate(
                [np.arange(b * self.chunk_size, min((b + 1) * self.chunk_size, self.n_traces)) for b in group]
            )
            if rng is not None:
                rng.shuffle(idx)
            windows.append(idx)
        batches = [(w, s) for w, idx in enumerate(windows) for s in range(0, len(idx), self.batch_size)]
        self._plan = windows
        self._batch_index = np.asarray(batches, dtype=np.int64).reshape(-1, 2)

    def order(self) -> np.ndarray:
        """The trace indices of the current epoch, in the order they are served."""
        return np.concatenate(self._plan)

    def set_epoch(self, epoch: int) -> None:
        with self._lock:
            self.epoch = int(epoch)
            self._served = 0
            self._windows.clear()
            self._make_plan()

    # -- reading --------------------------------------------------------------------------
    def _read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Read traces ``idx`` block by block (contiguous reads) and put them in ``idx`` order."""
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        x = np.empty((len(idx), *self.input_shape), dtype=np.float32)
        y = np.empty(len(idx), dtype=np.int8) if self.with_labels else None
        # split the sorted indices into runs of consecutive traces
        breaks = np.nonzero(np.diff(sorted_idx) != 1)[0] + 1
        pos = 0
        with self._h5_lock:
            for run in np.split(sorted_idx, breaks):
                a, b = int(run[0]), int(run[-1]) + 1
                x[pos : pos + b - a] = self._file.read_traces(a, b)
                if y is not None:
                    y[pos : pos + b - a] = self._file.read_meta("labels", a, b)
                pos += b - a
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        # x_sorted[inverse] puts the rows back into the window's shuffled order
        return x[inverse], (y[inverse] if y is not None else None)

    def _window(self, w: int) -> tuple[np.ndarray, np.ndarray | None]:
        key = (self.epoch, w)
        with self._lock:
            entry = self._windows.get(key)
            if entry is None:
                entry = self._read(self._plan[w])
                self._windows[key] = entry
            # keep only this window and the next one
            for k in [k for k in self._windows if k != key and k != (self.epoch, w + 1)]:
                del self._windows[k]
            nxt = (self.epoch, w + 1)
            if self._pool is not None and w + 1 < len(self._plan) and nxt not in self._windows:
                self._windows[nxt] = self._pool.submit(self._read, self._plan[w + 1])
        if isinstance(entry, Future):
            entry = entry.result()
            with self._lock:
                if key in self._windows:
                    self._windows[key] = entry
        return entry

    # -- PyDataset ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._batch_index.shape[0])

    def __getitem__(self, i: int):
        n = len(self)
        if not 0 <= i < n:
            raise IndexError(f"batch {i} out of range 0..{n - 1}")
        with self._lock:
            if i == 0:
                if self._served >= n:  # a full pass is done: the next epoch begins
                    self.epoch += 1
                    self._windows.clear()
                    if self.shuffle:
                        self._make_plan()
                self._served = 0
            self._served += 1
        w, s = (int(v) for v in self._batch_index[i])
        x, y = self._window(w)
        xb = x[s : s + self.batch_size]
        if not self.with_labels:
            return (xb,)
        yb = y[s : s + self.batch_size].astype(np.float32)
        if self.class_weight is None and self.sample_weight is None:
            return xb, yb
        wb = np.ones(len(yb), dtype=np.float32)
        if self.sample_weight is not None:
            wb *= self.sample_weight[self._plan[w][s : s + self.batch_size]]
        if self.class_weight is not None:
            wb *= np.where(yb > 0.5, self.class_weight[1], self.class_weight[0]).astype(np.float32)
        return xb, yb, wb

    def labels(self) -> np.ndarray:
        """All labels of the file in file order (small: one byte per trace)."""
        with self._h5_lock:
            return self._file.read_meta("labels")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._windows.clear()
        self._file.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass
