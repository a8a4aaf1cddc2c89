import json
import math
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

REPO = Path(workflow.basedir)
# Every output and log of this run lies under the results folder (relative to the working directory):
# another config with another results_dir writes beside it and leaves it untouched.
RESULTS = str(Path(config["results_dir"]))
# the file that the Snakemake report (`snakemake --report`, tasks.py demo) is written to; removed
# whenever the run's report is rebuilt, so that no report of older results stays beside it
SNAKEMAKE_REPORT = f"{RESULTS}/snakemake_report.html"


def res(path):
    """A path of this run's outputs: inside the results folder (config key results_dir)."""
    return f"{RESULTS}/{path}"


# crnn.simulate.BLOCK_SIZE: traces per block; a simulation chunk holds whole blocks
SIM_BLOCK = 1000
SIM_CHUNKS = config["scale_out"]["simulate_chunks"]
EVAL_CHUNKS = config["scale_out"]["evaluate_chunks"]
SIM_BLOCKS = math.ceil(config["simulate"]["n_traces"] / SIM_BLOCK)
if config["simulate"]["n_traces"] > 0 and SIM_CHUNKS > SIM_BLOCKS:
    raise WorkflowError(
        f"scale_out.simulate_chunks = {SIM_CHUNKS}, but simulate.n_traces = "
        f"{config['simulate']['n_traces']} makes only {SIM_BLOCKS} block(s) of {SIM_BLOCK} traces; "
        f"use at most {SIM_BLOCKS} chunks"
    )


wildcard_constraints:
    model="|".join(config["models"]) or "NO_MODEL",
    baseline="|".join(config["evaluate"]["baselines"]) or "NO_BASELINE",
    source="|".join(config["ingest"]) or "NO_SOURCE",
    chunk=r"\d+",


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


def existing_repo_path(path, key):
    """repo_path() of an input file that must exist, or one line naming the config key and the folder
    that a relative path resolves against (not the config file's folder, not the working directory)."""
    resolved = Path(repo_path(path))
    if not resolved.exists():
        raise WorkflowError(
            f"{key} = {path}: no such file {resolved.resolve()} (relative paths in the config resolve against "
            f"the repository folder {REPO}, not the config file's folder nor the working directory); "
            "give an absolute path or one relative to the repository"
        )
    return str(resolved)


for _name, _src in config["ingest"].items():
    existing_repo_path(_src["path"], f"ingest.{_name}.path")


def measured_background():
    """The measured-background file of the simulation, if any: a workflow output or a repo file."""
    path = config["simulate"].get("background", {}).get("measured_file")
    if not path:
        return []
    return [path if path.startswith(f"{RESULTS}/") else existing_repo_path(path, "simulate.background.measured_file")]


def simulate_json():
    """The simulate section as JSON, with the measured-background path resolved."""
    section = json.loads(json.dumps(config["simulate"]))
    files = measured_background()
    if files:
        section.setdefault("background", {})["measured_file"] = files[0]
    return as_json(section)


def init_model():
    """The model that training starts from (training.init_from), if any: a workflow output or a repo file."""
    path = config["training"].get("init_from")
    if not path:
        return []
    own = {res(f"models/{m}/model.keras") for m in config["models"]}
    if str(Path(path)) in own:
        raise WorkflowError(
            f"training.init_from = {path} is the output of this workflow's own training of that model; "
            "copy the initial model elsewhere (e.g. models/initial/, with its .card.json) or give this run another "
            "results_dir"
        )
    return [path if path.startswith(f"{RESULTS}/") else repo_path(path)]


def training_json():
    """The training section as JSON, with the initial model's path resolved."""
    section = json.loads(json.dumps(config["training"]))
    files = init_model()
    if files:
        section["init_from"] = files[0]
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
    files = [res("simulate/traces.h5")] if config["simulate"]["n_traces"] > 0 else []
    return files + [res(f"ingest/{name}.h5") for name, src in config["ingest"].items() if src.get("dataset", True)]


def signal_model_json():
    """Receiver and pulse model of the simulation: the matched filter's templates."""
    sim = config["simulate"]
    return as_json({"receiver": sim["receiver"], "pulse": sim["pulse"]})


def methods():
    return list(config["models"]) + list(config["evaluate"]["baselines"])


def get_final_output():
    out = [res("report.html")]
    out += expand(res("models/{model}/model.keras"), model=config["models"])
    out += expand(res("ingest/{source}.h5"), source=config["ingest"])
    return out


# -- job sizes ----------------------------------------------------------------------------------
# Each crnn rule asks for threads, memory (mem_mb) and a wall-time limit (runtime, in minutes).
# Locally they only limit what runs side by side; on a cluster they become the job's request
# (sbatch --cpus-per-task, --mem, --time). Memory and time grow with the job's input and with
# each retry (`--retries`), so a job killed for lack of memory or time gets more on its next
# attempt. Profiles (workflow/profiles/) override any of them per rule with `set-resources`.


def mem_mb(base_mb, per_input_mb=0):
    """Memory request: base_mb + per_input_mb x input size in MB, times the attempt number."""

    def request(wildcards, input, attempt):
        return math.ceil((base_mb + per_input_mb * input.size_mb) * attempt)

    return request


def runtime_min(base_min, input_mb_per_min=0):
    """Wall-time request in minutes: base_min + input size / input_mb_per_min, times the attempt."""

    def request(wildcards, input, attempt):
        extra = input.size_mb / input_mb_per_min if input_mb_per_min else 0
        return math.ceil((base_min + extra) * attempt)

    return request


def simulate_runtime(wildcards, attempt):
    """About 10,000 traces/s on one core; 10 minutes plus one per 100,000 traces is generous."""
    n = config["simulate"]["n_traces"] / SIM_CHUNKS
    return math.ceil((10 + n / 100_000) * attempt)


def train_mem_mb(wildcards, input, attempt):
    """2000 MB + 3 x the splits when they are held in memory; streamed splits (streaming: always, or
    auto with splits above training.memory_budget_mb) are read chunk by chunk, so they add nothing."""
    training = config["training"]
    size_mb = input.size_mb
    streamed = training["streaming"] == "always" or (
        training["streaming"] == "auto" and size_mb > training["memory_budget_mb"]
    )
    return math.ceil((2000 + (0 if streamed else 3 * size_mb)) * attempt)


def train_runtime(wildcards, attempt):
    """training.max_time_s plus 15 minutes for loading and the final evaluation; 24 h without a limit."""
    limit_s = config["training"]["max_time_s"]
    minutes = math.ceil(limit_s / 60) + 15 if limit_s > 0 else 24 * 60
    return minutes * attempt


# -- simulation chunks ----------------------------------------------------------------------------


def simulate_output():
    """One file, or one file per chunk (then `merge_traces` joins them into the same file)."""
    if SIM_CHUNKS == 1:
        return res("simulate/traces.h5")
    return temp(res("simulate/chunks/{chunk}.h5"))


def simulate_log():
    if SIM_CHUNKS == 1:
        return res("logs/simulate_traces.log")
    return res("logs/simulate_traces/{chunk}.log")


def simulate_benchmark():
    if SIM_CHUNKS == 1:
        return res("benchmarks/simulate_traces.tsv")
    return res("benchmarks/simulate_traces/{chunk}.tsv")


def evaluate_chunk_scores(wildcard):
    """The chunks' score files that the evaluation of a method joins (none with one scoring job)."""

    def inputs(wildcards):
        if EVAL_CHUNKS == 1:
            return []
        name = getattr(wildcards, wildcard)
        return [res(f"evaluate/chunks/{name}/{i}/scores.h5") for i in range(EVAL_CHUNKS)]

    return inputs


def join_scores_args(wildcards, input):
    """`crnn evaluate` flags that join the chunks' scores (none with one scoring job)."""
    return f"--scores {' '.join(input.chunks)}" if EVAL_CHUNKS > 1 else ""


def simulate_chunk_args(wildcards):
    """CLI flags of `crnn simulate` for one chunk (none for an unchunked run)."""
    if SIM_CHUNKS == 1:
        return ""
    return f"--chunk {wildcards.chunk} --n-chunks {SIM_CHUNKS}"


# -- robustness suite -----------------------------------------------------------------------------
# Shifts: other detectors' data, each a simulation of its own (config section `robustness`).
ROBUSTNESS = config["robustness"]
# the receiver as the schema fills it in (validate() above set every default)
SIMULATE_RECEIVER_DEFAULTS = config["simulate"]["receiver"]
# simulate keys the suite sets itself (or leaves out) in every shift; see crnn.robustness.SUITE_KEYS
SHIFT_SUITE_KEYS = ("n_traces", "signal_fraction", "snr_range", "background")
for _name in ROBUSTNESS["only"] or []:
    if _name not in ROBUSTNESS["shifts"]:
        raise WorkflowError(
            f"robustness.only names the shift {_name!r}, which robustness.shifts does not define; "
            f"defined: {', '.join(ROBUSTNESS['shifts'])}"
        )


def _deep_merge(base, over):
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _deep_merge(base[key], value)
        else:
            out[key] = value
    return out


def shift_missing(name):
    """The first required file of a shift that does not exist (None: all there)."""
    for path in ROBUSTNESS["shifts"][name].get("requires", []):
        if not Path(repo_path(path)).exists():
            return path
    return None


def shifts_selected():
    if not ROBUSTNESS["enabled"]:
        return []
    only = ROBUSTNESS["only"]
    return [n for n in ROBUSTNESS["shifts"] if only is None or n in only]


def shifts_run():
    """Shifts that are simulated and scored: selected, with every required file present."""
    return [n for n in shifts_selected() if shift_missing(n) is None]


def shifts_skipped():
    """Selected shifts left out because a required file is missing: {name: path}."""
    return {n: shift_missing(n) for n in shifts_selected() if shift_missing(n) is not None}


def _repo_files(value):
    """Response specs with their `file` and `phase_file` paths resolved against the repository."""
    if isinstance(value, dict):
        return {
            k: repo_path(v) if k in ("file", "phase_file") and isinstance(v, str) else _repo_files(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_repo_files(v) for v in value]
    return value


def shift_library(wildcards):
    """The converted pulse library of a shift ([] when it uses the analytic pulses)."""
    if "pulse_library" not in ROBUSTNESS["shifts"][wildcards.shift]:
        return []
    return [res(f"robustness/libraries/{wildcards.shift}.h5")]


def shift_settings(wildcards):
    """The shift's simulate settings: its partial settings laid over the run's simulate section with
    the randomisation off (one fixed detector per shift), without the keys that the suite sets
    itself; pulses at robustness.snr_range, from the shift's pulse library if it has one."""
    fixed = _deep_merge(config["simulate"], {"randomise": {"enabled": False}})
    shift = ROBUSTNESS["shifts"][wildcards.shift]
    section = _repo_files(_deep_merge(fixed, shift.get("simulate", {})))
    for key in SHIFT_SUITE_KEYS:
        section.pop(key, None)
    section["snr_range"] = ROBUSTNESS["snr_range"]
    for path in shift_library(wildcards):
        section["pulse"] = {**section.get("pulse", {}), "library_file": path, "library_fraction": 1.0}
    return as_json(section)


def library_input(wildcards):
    return repo_path(ROBUSTNESS["shifts"][wildcards.shift]["pulse_library"]["path"])


def library_args(wildcards):
    """`crnn ingest` flags that convert a shift's pulse library to the receiver's acquisition."""
    lib = ROBUSTNESS["shifts"][wildcards.shift]["pulse_library"]
    rx = _deep_merge(SIMULATE_RECEIVER_DEFAULTS, config["simulate"].get("receiver", {}))
    args = [
        f"--format {lib.get('format', 'auto')}",
        f"--resample-hz {rx['sampling_rate_hz']}",
        f"--n-samples {rx['n_samples']}",
    ]
    if lib.get("format", "auto") == "coreas":
        args.append("--polarisations " + " ".join(lib.get("polarisations", ["north_south", "east_west"])))
    return " ".join(args)


def shift_seed(wildcards):
    """Shift k (in the order of robustness.shifts) simulates with seed + seed_offset + k."""
    return config["seed"] + ROBUSTNESS["seed_offset"] + list(ROBUSTNESS["shifts"]).index(wildcards.shift)


def shift_requires(wildcards):
    return [repo_path(p) for p in ROBUSTNESS["shifts"][wildcards.shift].get("requires", [])]


def robustness_inputs(wildcards):
    files = {"shifts": expand(res("robustness/shifts/{shift}.h5"), shift=shifts_run())}
    if wildcards.method in config["models"]:
        files["model"] = res(f"models/{wildcards.method}/model.keras")
    return files


def robustness_args(wildcards, input):
    """CLI flags of `crnn robustness` for one method: what it scores, the shift files, skipped shifts."""
    m = wildcards.method
    if m in config["models"]:
        args = [f"--model {input.model}"]
    else:
        args = [
            f"--baseline {m}",
            f"--baseline-settings '{as_json(config['evaluate']['baseline'])}'",
            f"--signal-model '{signal_model_json()}'",
        ]
    args += [f"--shift {n}={f}" for n, f in zip(shifts_run(), input.shifts)]
    args += [f"--skipped {n}={p}" for n, p in shifts_skipped().items()]
    return " ".join(args)


def robustness_outputs():
    """The robustness files of every method (none when the suite is disabled)."""
    if not ROBUSTNESS["enabled"]:
        return []
    return expand(res("robustness/{method}.json"), method=methods())


wildcard_constraints:
    method="|".join(methods()) or "NO_METHOD",
    shift="|".join(ROBUSTNESS["shifts"]) or "NO_SHIFT",
