"""Reader for CoREAS air-shower simulations stored as HDF5 (the ``coreas_to_hdf5`` layout).

Layout: ``/CoREAS/observers/<name>`` datasets of shape (n, 4), float64, columns [time in s, Ex,
Ey, Ez] in CGS statV/cm, with CORSIKA axes x = magnetic north, y = west, z = up; attributes
``position`` (cm) and ``name``. The ``/CoREAS`` group's attributes hold the steering file, among
them ``TimeResolution`` (s), ``ShowerZenithAngle`` and ``ShowerAzimuthAngle`` (deg, CORSIKA
convention) and ``PrimaryParticleEnergy`` (eV). ``/highlevel`` and ``/inputs`` are optional.

Each observer becomes one canonical trace of the electric field in V/m (E[V/m] = E[statV/cm] x
2.99792458e4), projected on the requested polarisation channels: ``north_south`` (Ex, north
positive), ``east_west`` (-Ey, east positive) and ``vertical`` (Ez).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from crnn.errors import CrnnError, MissingFieldError
from crnn.tracefile import TraceSet

STATV_PER_CM_TO_V_PER_M = 2.99792458e4
POLARISATIONS = {"north_south": (1, 1.0), "east_west": (2, -1.0), "vertical": (3, 1.0)}


def is_coreas(f: h5py.File) -> bool:
    return "CoREAS" in f and isinstance(f["CoREAS"], h5py.Group) and "observers" in f["CoREAS"]


def _names(group: h5py.Group) -> list[str]:
    return list(group.keys())


def read_coreas(
    path: str | Path, polarisations: tuple[str, ...] = ("north_south", "east_west")
) -> tuple[float, Iterator[TraceSet], int]:
    """Sampling rate, an iterator over one-observer chunks (electric field, V/m) and the number of observers."""
    path = Path(path)
    bad = [p for p in polarisations if p not in POLARISATIONS]
    if bad or not polarisations:
        msg = f"coreas: unknown polarisation channel(s) {bad}; choose from {list(POLARISATIONS)}"
        raise CrnnError(msg)
    f = h5py.File(path, "r")
    try:
        if "CoREAS" not in f:
            raise MissingFieldError(
                str(path),
                "CoREAS",
                _names(f),
                kind="group",
                expected="CoREAS steering attributes and /CoREAS/observers",
            )
        if "observers" not in f["CoREAS"]:
            raise MissingFieldError(
                f"{path}:/CoREAS",
                "observers",
                _names(f["CoREAS"]),
                kind="group",
                expected="one (n, 4) dataset per observer",
            )
        steering = f["CoREAS"].attrs
        if "TimeResolution" not in steering:
            raise MissingFieldError(
                f"{path}:/CoREAS", "TimeResolution", list(steering), kind="attribute", expected="sampling interval in s"
            )
        dt_s = float(steering["TimeResolution"])
        if not dt_s > 0:
            msg = f"{path}:/CoREAS: attribute TimeResolution must be positive, found {dt_s}"
            raise CrnnError(msg)
        observers = f["CoREAS/observers"]
        names = list(observers.keys())
        if not names:
            msg = f"{path}:/CoREAS/observers holds no observers; expected at least one (n, 4) dataset"
            raise CrnnError(msg)
        for name in names:
            ds = observers[name]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.shape[1] != 4 or ds.shape[0] < 2:
                shape = getattr(ds, "shape", "a group")
                msg = (
                    f"{path}:/CoREAS/observers/{name}: expected an (n, 4) array of "
                    f"[time s, Ex, Ey, Ez] statV/cm; found {shape}"
                )
                raise CrnnError(msg)
        shower = {
            "shower_zenith_deg": float(steering.get("ShowerZenithAngle", np.nan)),
            "shower_azimuth_deg": float(steering.get("ShowerAzimuthAngle", np.nan)),
            "primary_energy_ev": float(steering.get("PrimaryParticleEnergy", np.nan)),
        }
    except BaseException:
        f.close()
        raise

    def chunks() -> Iterator[TraceSet]:
        try:
            for name in names:
                ds = observers[name]
                data = np.asarray(ds[:], dtype=np.float64)
                where = f"{path}:/CoREAS/observers/{name}"
                if not np.isfinite(data).all():
                    i = int(np.argwhere(~np.isfinite(data))[0][0])
                    msg = f"{where} holds NaN or Inf at sample {i}; expected finite numbers"
                    raise CrnnError(msg)
                steps = np.diff(data[:, 0])
                if not np.allclose(steps, dt_s, rtol=1e-3, atol=0):
                    msg = (
                        f"{where}: time column steps range from {steps.min():g} to {steps.max():g} s, but "
                        f"/CoREAS TimeResolution is {dt_s:g} s; expected one sampling rate per file"
                    )
                    raise CrnnError(msg)
                field = np.stack([sign * data[:, col] for col, sign in (POLARISATIONS[p] for p in polarisations)])
                field *= STATV_PER_CM_TO_V_PER_M
                pos = np.asarray(ds.attrs.get("position", [np.nan] * 3), dtype=float) / 100.0
                meta = {
                    "observer": np.array([name], dtype=object),
                    "position_north_m": np.array([pos[0]]),
                    "position_west_m": np.array([pos[1]]),
                    "position_up_m": np.array([pos[2]]),
                    "start_time_s": np.array([data[0, 0]]),
                    **{k: np.array([v]) for k, v in shower.items()},
                }
                yield TraceSet(field[None].astype(np.float64), 1.0 / dt_s, "V/m", meta)
        finally:
            f.close()

    return 1.0 / dt_s, chunks(), len(names)
