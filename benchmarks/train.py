"""Suite ``train``: training traces/s of crnn's default GRU and LSTM against a plain PyTorch peer.

crnn's models come from ``crnn.models.build_classifier`` with the settings of the ``models:``
section of config/config.yaml, compiled as ``crnn.train.train`` compiles them (Adam, binary
cross-entropy, AUC and accuracy metrics, balanced class weights) and trained with ``model.fit`` on
in-memory (N, 2, 500) float32 traces, batch 256, one epoch per repeat after a warm-up epoch. A
second crnn variant (``loss only``: no metrics, no class weights) separates the cost of what
crnn asks of the fit loop from the cost of Keras itself.

The peer is a plain PyTorch network of the same shape: the same per-trace RMS normalisation,
Conv1d x 2 with the same filters, kernel, strides and ``same`` padding, ``nn.GRU`` / ``nn.LSTM``
(batch_first), max over time, dropout, Linear, BCE (with logits), Adam with the same learning
rate and batch size, on the same data, with the same number of threads (``torch.set_num_threads``;
TensorFlow through ``crnn.train.configure_threads``), on CUDA when there is a GPU. The runs are
interleaved (crnn, crnn loss only, torch, crnn, ...) and the ratio crnn / torch is taken pair by
pair within a repeat, so a slow moment of a shared machine hits both sides of a pair alike.

Backend-agnostic: under ``KERAS_BACKEND=jax`` (no TensorFlow) it runs the same way. Without
PyTorch the peer is skipped with a note (install the ``bench`` extra: docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, cores, fmt, measurement, median, spread, table

NAME = "train"
DEFAULT_REPEAT = 5
CELLS = ("gru", "lstm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-traces", type=int, default=8192, help="train: traces per epoch")
    p.add_argument(
        "--train-threads", type=int, default=0, help="train: CPU threads for both frameworks (0 = all cores)"
    )
    p.add_argument("--train-cells", default="gru,lstm", help="train: models of config/config.yaml to time")
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"), help="train, quality: config file")
    p.add_argument("--no-peer", action="store_true", help="train: skip the PyTorch peer")
    p.add_argument(
        "--peer-omp-wait",
        choices=("auto", "passive", "default"),
        default="auto",
        help="train: OMP_WAIT_POLICY of PyTorch's OpenMP threads; auto = PASSIVE when the load average "
        "exceeds the cores (spinning OpenMP threads collapse on an oversubscribed CPU), else unset",
    )


def model_settings(config: str | Path, name: str):
    """The ``models.<name>`` settings of a config file (ModelSettings defaults + cell if absent)."""
    from crnn.models import ModelSettings
    from crnn.settings import from_mapping, load_mapping

    models = (load_mapping(str(config)) or {}).get("models") or {}
    if name in models:
        return from_mapping(ModelSettings, models[name], f"{config}: models.{name}")
    return ModelSettings(cell=name)


def training_settings(config: str | Path):
    from crnn.settings import from_mapping, load_mapping
    from crnn.train import TrainingSettings

    section = (load_mapping(str(config)) or {}).get("training") or {}
    return from_mapping(TrainingSettings, section, f"{config}: training")


# -- the PyTorch peer ---------------------------------------------------------------------------
def _same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """Left and right zero padding of Keras/TensorFlow ``padding="same"``."""
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


def torch_peer(settings: Any, n_channels: int, n_samples: int):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Peer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            s = settings
            f = s.conv_filters
            self.conv = f > 0
            if s.whiten_band:
                raise ValueError("torch peer: whiten_band is not mirrored; benchmark with whiten_band: false")
            self.whiten = s.whiten
            self.smooth_bins = 9
            self.floor = 10.0 ** (-s.whiten_floor_db / 10.0)
            self.robust = s.normalise == "robust"
            self.median_spectrum = s.whiten_estimate == "median"
            self.segment = s.whiten_segment_samples
            width = 2 * n_channels if s.whiten else n_channels
            if self.conv:
                self.pad1 = _same_padding(n_samples, s.conv_kernel_size, 1)
                self.pad2 = _same_padding(n_samples, s.conv_kernel_size, s.conv_strides)
                self.conv_1 = nn.Conv1d(width, f, s.conv_kernel_size)
                self.conv_2 = nn.Conv1d(f, f, s.conv_kernel_size, stride=s.conv_strides)
                width = f
            rnn = nn.GRU if s.cell == "gru" else nn.LSTM
            self.rnn = rnn(
                width, s.units, num_layers=s.recurrent_layers, batch_first=True, bidirectional=s.bidirectional
            )
            self.readout = s.readout
            self.dropout = nn.Dropout(s.dropout)
            self.score = nn.Linear(s.units * (2 if s.bidirectional else 1), 1)

        def normalise(self, x):
            if self.robust:  # crnn.models.TraceNormalization(method="robust")
                n_seg = min(8, x.shape[-1])
                seg = x[..., : n_seg * (x.shape[-1] // n_seg)].reshape(x.shape[0], -1, x.shape[-1] // n_seg)
                # torch.median takes the lower middle value; keras.ops.median the mean of the two
                ms = seg.square().mean(dim=-1)
                scale = torch.sqrt(torch.quantile(ms, 0.5, dim=-1))[:, None, None]
            else:
                scale = torch.sqrt(torch.mean(torch.square(x), dim=(1, 2), keepdim=True))
            return x / torch.clamp(scale, min=1e-30)

        def median_power(self, x):
            # crnn.models.SpectralWhitening(estimate="median"): median over half-overlapping Hann segments
            length = min(self.segment, x.shape[-1])
            frames = x.unfold(-1, length, max(length // 2, 1))
            window = torch.hann_window(length + 2, periodic=False, dtype=x.dtype, device=x.device)[1:-1]
            spec = torch.fft.rfft(frames * window)
            power = torch.quantile(spec.real.square() + spec.imag.square(), 0.5, dim=-2)
            seg_freq = torch.fft.rfftfreq(length, device=x.device)
            trace_freq = torch.fft.rfftfreq(x.shape[-1], device=x.device)
            pos = torch.clamp(torch.searchsorted(seg_freq, trace_freq, right=True) - 1, 0, length // 2 - 1)
            frac = (trace_freq - seg_freq[pos]) / (seg_freq[pos + 1] - seg_freq[pos])
            return power[..., pos] * (1 - frac) + power[..., pos + 1] * frac

        def white(self, x):
            # the same steps as crnn.models.SpectralWhitening: divide by the smoothed amplitude
            spec = torch.fft.rfft(x)
            if self.median_spectrum:
                smooth = self.median_power(x)
            else:
                power = spec.real.square() + spec.imag.square()
                half = self.smooth_bins // 2
                padded = F.pad(power, (half, half), mode="reflect")
                smooth = F.avg_pool1d(padded, self.smooth_bins, stride=1)
            floor = smooth.mean(dim=-1, keepdim=True) * self.floor
            weight = torch.rsqrt(torch.clamp(torch.maximum(smooth, floor), min=1e-30))
            return torch.fft.irfft(spec * weight, n=x.shape[-1])

        def forward(self, x):
            x = self.normalise(x)
            if self.whiten:
                x = torch.cat([x, self.normalise(self.white(x))], dim=1)
            if self.conv:
                x = F.relu(self.conv_1(F.pad(x, self.pad1)))
                x = F.relu(self.conv_2(F.pad(x, self.pad2)))
            x = x.transpose(1, 2)  # (N, T, F): time-major for the RNN
            out, _ = self.rnn(x)
            if self.readout == "max":
                h = out.amax(dim=1)
            elif self.readout == "mean":
                h = out.mean(dim=1)
            else:
                h = out[:, -1]
            return self.score(self.dropout(h)).squeeze(-1)

    return Peer()


class TorchRunner:
    def __init__(self, settings: Any, x, y, lr: float, batch_size: int, threads: int, seed: int) -> None:
        import torch

        torch.manual_seed(seed)
        if threads > 0:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = torch_peer(settings, x.shape[1], x.shape[2]).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.loss = torch.nn.BCEWithLogitsLoss()
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def epoch(self) -> float:
        torch = self.torch
        self.model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(self.x), generator=self.gen)
        for i in range(0, len(perm), self.batch_size):
            idx = perm[i : i + self.batch_size]
            xb = self.x[idx].to(self.device, non_blocking=True)
            yb = self.y[idx].to(self.device, non_blocking=True)
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.model(xb), yb)
            loss.backward()
            self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


class KerasRunner:
    def __init__(self, settings: Any, x, y, lr: float, batch_size: int, *, crnn_fit: bool, seed: int) -> None:
        import keras

        from crnn.models import build_classifier

        keras.utils.set_random_seed(seed)
        self.model = build_classifier(x.shape[1:], settings)
        metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")] if crnn_fit else None
        self.model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy", metrics=metrics)
        pos = float(y.mean())
        self.class_weight = {0: 0.5 / (1 - pos), 1: 0.5 / pos} if crnn_fit else None
        self.x, self.y, self.batch_size = x, y, batch_size

    def n_params(self) -> int:
        return int(self.model.count_params())

    def epoch(self) -> float:
        t0 = time.perf_counter()
        self.model.fit(
            self.x,
            self.y,
            batch_size=self.batch_size,
            epochs=1,
            shuffle=True,
            verbose=0,
            class_weight=self.class_weight,
        )
        return time.perf_counter() - t0


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # before any OpenMP runtime is loaded (torch; TensorFlow itself uses its own thread pool)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if args.peer_omp_wait == "passive" or (args.peer_omp_wait == "auto" and load > cores()):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np

    from crnn.train import configure_threads

    threads = args.train_threads or cores()
    configure_threads(threads)  # before TensorFlow starts its thread pools
    n = 1024 if quick else args.train_traces
    repeat = args.repeat or DEFAULT_REPEAT
    training = training_settings(args.config)
    batch, lr = training.batch_size, training.learning_rate
    n = max(batch, n - n % batch)  # whole batches only: every framework runs the same steps
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 2, 500), dtype=np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    peer = not args.no_peer and have_torch()
    note = None
    if not peer:
        note = "PyTorch peer skipped: " + (
            "--no-peer"
            if args.no_peer
            else "torch is not installed (pip install -e '.[bench]', see docs/benchmarks.md)"
        )
    models: dict[str, Any] = {}
    measurements: list[dict[str, Any]] = []
    import keras

    for name in [c.strip() for c in args.train_cells.split(",") if c.strip()]:
        settings = model_settings(args.config, name)
        runners: dict[str, Any] = {"crnn": KerasRunner(settings, x, y, lr, batch, crnn_fit=True, seed=1)}
        if not quick:  # the diagnostic variant; the smoke test skips it
            runners["crnn_loss_only"] = KerasRunner(settings, x, y, lr, batch, crnn_fit=False, seed=1)
        if peer:
            runners["torch"] = TorchRunner(settings, x, y, lr, batch, threads, seed=1)
        for r in runners.values():  # warm-up epoch: tracing, compilation, allocator
            r.epoch()
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(repeat):
            for k, r in runners.items():  # interleaved: crnn, crnn loss only, torch, crnn, ...
                times[k].append(r.epoch())
        info: dict[str, Any] = {
            "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
            "params": {k: r.n_params() for k, r in runners.items() if k != "crnn_loss_only"},
        }
        if peer:
            info["torch_device"] = str(runners["torch"].device)
            if info["params"]["torch"] != info["params"]["crnn"]:
                info["params_note"] = (
                    "nn.LSTM keeps two bias vectors (input and recurrent) where Keras' LSTM keeps one: "
                    f"{info['params']['torch'] - info['params']['crnn']} more parameters, same computation"
                    if settings.cell == "lstm"
                    else "parameter counts differ: check the peer's shape"
                )
        models[name] = info
        label = {
            "crnn": f"crnn {name} (as crnn train fits it)",
            "crnn_loss_only": f"crnn {name}, loss only",
            "torch": f"PyTorch peer {name}",
        }
        for k, ts in times.items():
            measurements.append(measurement(label[k], "traces/s", [n / t for t in ts], model=name, runner=k))
        if peer:
            for k in [k for k in runners if k != "torch"]:
                ratios = [tp / tc for tc, tp in zip(times[k], times["torch"], strict=True)]
                measurements.append(
                    measurement(f"{label[k]} / PyTorch peer", "ratio", ratios, model=name, runner=f"{k}/torch")
                )
    return {
        "n_traces": n,
        "batch_size": batch,
        "learning_rate": lr,
        "threads": threads,
        "repeat": repeat,
        "keras_backend": keras.backend.backend(),
        "peer": peer,
        "note": note,
        "models": models,
        "load_average_at_start": round(load, 2),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "measurements": measurements,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = []
    by = {(m.get("model"), m.get("runner")): m for m in result["measurements"]}
    for name, info in result["models"].items():
        for k, label in (
            ("crnn", "crnn (crnn train's fit: AUC + accuracy metrics, class weights)"),
            ("crnn_loss_only", "crnn, loss only"),
            ("torch", "PyTorch peer"),
        ):
            m = by.get((name, k))
            if m is None:
                continue
            ratio = by.get((name, f"{k}/torch"))
            params = info["params"].get(k, info["params"].get("crnn"))
            rows.append(
                [
                    name,
                    label,
                    f"{params:,}",
                    fmt(median(m)),
                    spread(m),
                    (f"{median(ratio):.2f} ({spread(ratio)})" if ratio else ("1" if k == "torch" else "-")),
                ]
            )
    s = next(iter(result["models"].values()))["settings"] if result["models"] else {}
    text = (
        f"Training throughput, model.fit on {result['n_traces']:,} in-memory (N, 2, 500) float32 traces, batch "
        f"{result['batch_size']}, one epoch per repeat after a warm-up epoch, {result['threads']} threads for each "
        f"framework, Keras backend {result['keras_backend']}"
        + (f", PyTorch on {next(iter(result['models'].values())).get('torch_device', '?')}" if result["peer"] else "")
        + f". Architecture from config/config.yaml: conv {s.get('conv_filters')} filters, kernel "
        f"{s.get('conv_kernel_size')}, stride {s.get('conv_strides')}, {s.get('units')} units, readout "
        f"{s.get('readout')}. Ratio = crnn traces/s / PyTorch traces/s, pair by pair (median, spread).\n\n"
        + table(["model", "runner", "parameters", "traces/s (median)", "spread", "ratio to the peer"], rows)
    )
    for name, info in result["models"].items():
        if info.get("params_note"):
            text += f"\n\nParameters of {name}: {info['params_note']}."
    if result.get("peer"):
        text += (
            f"\n\nLoad average at the start: {result.get('load_average_at_start')} on {result['threads']} threads; "
            f"OMP_WAIT_POLICY of the peer: {result.get('omp_wait_policy', 'unset')}."
        )
    if result.get("note"):
        text += f"\n\n{result['note']}."
    return text
