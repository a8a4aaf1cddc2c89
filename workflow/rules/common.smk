import json
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

REPO = Path(workflow.basedir)


wildcard_constraints:
    model="|".join(config["models"]) or "NO_MODEL",
    baseline="|".join(config["evaluate"]["baselines"]) or "NO_BASELINE",
    source="|".join(config["ingest"]) or "NO_SOURCE",


def as_json(value):
    """A config section as one shell-safe JSON argument."""
    text = json.dumps(value, separators=(",", ":"))
    if "'" in text:
        raise ValueError(f"config value must not contain single quotes: {text}")
    return text


def repo_path(path):
    """Paths in the config are relative to the repository (where the Snakefile lives)."""
    p = Path(path)
    return str(p if p.is_absolute() else REPO / p)


def measured_background():
    """The measured-background file of the simulation, if any: a workflow output or a repo file."""
    path = config["simulate"].get("background", {}).get("measured_file")
    if not path:
        return []
    return [path if path.startswith("results/") else repo_path(path)]


def simulate_json():
    """The simulate section as JSON, with the measured-background path resolved."""
    section = json.loads(json.dumps(config["simulate"]))
    files = measured_background()
    if files:
        section.setdefault("background", {})["measured_file"] = files[0]
    return as_json(section)


def model_json(wildcards):
    return as_json(config["models"][wildcards.model])


def ingest_input(wildcards):
    return repo_path(config["ingest"][wildcards.source]["path"])


def ingest_args(wildcards):
    """CLI flags of `crnn ingest` for one configured source."""
    src = config["ingest"][wildcards.source]
    flags = {
        "format": src.get("format", "auto"),
        "tree": src.get("tree"),
        "branch": src.get("branch"),
        "unit": src.get("unit"),
        "sampling-rate-hz": src.get("sampling_rate_hz"),
        "sampling-rate-branch": src.get("sampling_rate_branch"),
        "label-branch": src.get("label_branch"),
        "snr-branch": src.get("snr_branch"),
        "label": src.get("label"),
        "run-file": repo_path(src["run_file"]) if src.get("run_file") else None,
        "resample-hz": src.get("resample_hz"),
        "filter-order": src.get("filter_order"),
        "n-samples": src.get("n_samples"),
    }
    args = [f"--{k} {v}" for k, v in flags.items() if v is not None]
    args += [f"--id-branch {b}" for b in src.get("id_branches", [])]
    for key, flag in (("channels", "--channels"), ("band_hz", "--band-hz"), ("polarisations", "--polarisations")):
        if src.get(key):
            values = " ".join(str(c) for c in src[key])
            args.append(f"{flag} {values}")
    return " ".join(args)


def dataset_inputs(wildcards):
    files = ["results/simulate/traces.h5"] if config["simulate"]["n_traces"] > 0 else []
    return files + [f"results/ingest/{name}.h5" for name, src in config["ingest"].items() if src.get("dataset", True)]


def signal_model_json():
    """Receiver and pulse model of the simulation: the matched filter's templates."""
    sim = config["simulate"]
    return as_json({"receiver": sim["receiver"], "pulse": sim["pulse"]})


def methods():
    return list(config["models"]) + list(config["evaluate"]["baselines"])


def get_final_output():
    out = ["results/report/summary.html"]
    out += expand("results/models/{model}/model.keras", model=config["models"])
    out += expand("results/ingest/{source}.h5", source=config["ingest"])
    return out
