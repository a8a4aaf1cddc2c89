"""Figures of docs/physics.md (run: python docs/make_figures.py [path to shared/realdata]).

* figures/noise_spectrum.png: mean power spectral density of 10,000 simulated galactic + thermal
  traces (default receiver) against the model k_B T(f) R |H(f)|^2, in 1 MHz bins.
* figures/grand_vs_gp13.png: the GRAND-like preset's simulated noise (no CW lines or transients)
  against the measured GP13 night-time noise (../shared/realdata/grand), ADC counts, per arm.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from crnn.noise import ReceiverSettings, StationaryNoise  # noqa: E402
from crnn.settings import from_mapping  # noqa: E402
from crnn.simulate import SimulationSettings, Simulator  # noqa: E402

HERE = Path(__file__).parent
REPO = HERE.parent


def one_sided_psd(x: np.ndarray, fs: float) -> np.ndarray:
    """Mean one-sided PSD (unit^2/Hz) over traces and the given channel axis already reduced."""
    return 2 * np.mean(np.abs(np.fft.rfft(x, axis=-1)) ** 2, axis=0) / (fs * x.shape[-1])


def noise_spectrum() -> None:
    rx = ReceiverSettings()
    noise = StationaryNoise(rx, noise_temperature_k=40.0)
    x = noise.generate(10_000, np.random.default_rng(0)).astype(np.float64)
    f = rx.frequencies_hz
    psd = one_sided_psd(x.reshape(-1, rx.n_samples), rx.sampling_rate_hz)
    model = noise.psd_v2_per_hz * np.abs(rx.response) ** 2
    edges = np.arange(20e6, 90e6 + 1, 1e6)
    centre = (edges[:-1] + edges[1:]) / 2
    binned = [psd[(f >= a) & (f < b)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    binned_model = [model[(f >= a) & (f < b)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.semilogy(f / 1e6, model * 1e12 * 1e6, color="k", lw=1, label="model k_B T(f) R |H(f)|^2")
    ax.semilogy(centre / 1e6, np.array(binned) * 1e18, "o", ms=3, color="C3", label="10,000 simulated traces, 1 MHz bins")
    ax.set_ylabel("PSD (uV^2 / MHz)")
    ax.set_ylim(1e-3, None)
    ax.legend(fontsize=8)
    ax.set_title("Galactic (Cane) + 40 K thermal noise, 30-80 MHz Butterworth, 50 ohm")
    ratio = np.array(binned) / np.array(binned_model)
    ax2.plot(centre / 1e6, ratio, "o", ms=3, color="C3")
    ax2.axhspan(0.95, 1.05, color="0.9")
    ax2.set_ylim(0.9, 1.1)
    ax2.set_ylabel("sim / model")
    ax2.set_xlabel("frequency (MHz)")
    fig.savefig(HERE / "figures" / "noise_spectrum.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def grand_vs_gp13(realdata: Path) -> None:
    from crnn.ingest import ingest
    from crnn.tracefile import read_traces

    src = realdata / "grand" / "noise_traces_gp13_2024_01_night_datafiles_185-190_merged.root"
    if not src.exists():
        print(f"skipping grand_vs_gp13: {src} not found")
        return
    out = Path("/tmp/crnn_gp13.h5")
    measured = read_traces(ingest(src, out)).traces.astype(np.float64)
    preset = yaml.safe_load((REPO / "config" / "presets" / "grand.yaml").read_text())["simulate"]
    settings = from_mapping(SimulationSettings, {**preset, "cw_lines": [], "transients": [], "signal_fraction": 0.0})
    sim = Simulator(settings, seed=1).block(0).traces.astype(np.float64)
    rx = settings.receiver
    f = rx.frequencies_hz
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ch, ax in enumerate(axes):
        ax.semilogy(f / 1e6, one_sided_psd(measured[:, ch], 500e6) * 1e6, color="C0", lw=0.8,
                    label=f"GP13 measured, night ({len(measured)} traces)")
        ax.semilogy(f / 1e6, one_sided_psd(sim[:, ch], 500e6) * 1e6, color="C3", lw=0.8,
                    label="GRAND-like preset, simulated (1,000 traces)")
        ax.set_title(f"channel {ch}")
        ax.set_xlabel("frequency (MHz)")
        ax.set_xlim(0, 250)
    axes[0].set_ylabel("PSD (ADC counts^2 / MHz)")
    axes[0].legend(fontsize=7)
    fig.savefig(HERE / "figures" / "grand_vs_gp13.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    rms_m = np.sqrt(np.mean(measured**2, axis=(0, 2)))
    rms_s = np.sqrt(np.mean(sim**2, axis=(0, 2)))
    print("RMS per channel (ADC): measured", np.round(rms_m, 1), "simulated", np.round(rms_s, 1))


if __name__ == "__main__":
    (HERE / "figures").mkdir(exist_ok=True)
    noise_spectrum()
    grand_vs_gp13(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "realdata")
