"""The lock (requirements/base.txt, requirements/test.txt, made by `python3 tasks.py lock`) agrees with
pyproject.toml's ranges, the environments made by tasks.py hold exactly its versions, and the conda
environment of the workflow installs the same pins (issue 20)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

LOCKS = {"base": REPO / "requirements" / "base.txt", "test": REPO / "requirements" / "test.txt"}
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pins(path: Path) -> dict[str, str]:
    """name -> pinned version of a pip-compile output (every line ``name==version``)."""
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", path.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in found}


def requirements(group: str | None) -> list[Requirement]:
    """pyproject's requirements of the base install (None) or of one optional group, those whose
    markers hold on this platform (the lock is compiled for it)."""
    lines = PROJECT["dependencies"] if group is None else PROJECT["optional-dependencies"][group]
    return [r for r in map(Requirement, lines) if r.marker is None or r.marker.evaluate({"extra": group or ""})]


def _check(reqs: list[Requirement], locked: dict[str, str], lock: str) -> None:
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} (pyproject.toml) is not pinned in {lock}: run `python3 tasks.py lock`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {name}=={locked[name]} outside pyproject.toml's {req}: run `python3 tasks.py lock`"
        )


def test_every_dependency_of_pyproject_is_pinned_in_the_lock_within_its_range():
    base, test = pins(LOCKS["base"]), pins(LOCKS["test"])
    assert len(base) > 50 and len(test) > len(base)  # the whole environment, not only the direct dependencies
    _check(requirements(None), base, "requirements/base.txt")
    _check(requirements(None), test, "requirements/test.txt")
    for group in PROJECT.get("optional-dependencies", {}):  # every group, also one added since the last lock
        _check(requirements(group), test, "requirements/test.txt")
    # the test environment is the base one plus the test tools: the shared packages have the same pins
    assert {k: v for k, v in test.items() if k in base} == base


def test_the_lock_holds_public_versions_and_is_compatible_with_pips_own_constraints():
    """pip reads constraint files from its configuration too (this machine's /etc/xdg/pip caps torch):
    the lock must satisfy them, and holds public versions only (pip still takes a +cpu build)."""
    test = pins(LOCKS["test"])
    assert not [f"{k}=={v}" for k, v in test.items() if "+" in v]
    for path in filter(None, re.split(r"\s+", os.environ.get("PIP_CONSTRAINT", ""))) or _pip_config_constraints():
        for line in Path(path).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                req = Requirement(line)
                name = canonicalize_name(req.name)
                if name in test:
                    assert req.specifier.contains(test[name], prereleases=True), (path, line, test[name])


def _pip_config_constraints() -> list[str]:
    import configparser

    out = []
    for cfg in ("/etc/xdg/pip/pip.conf", "/etc/pip.conf", Path.home() / ".config" / "pip" / "pip.conf"):
        parser = configparser.ConfigParser()
        if parser.read(cfg) and parser.has_option("global", "constraint"):
            out += parser.get("global", "constraint").split()
    return [p for p in out if Path(p).exists()]


def test_the_installed_versions_equal_the_lock():
    """In an environment made by `python3 tasks.py test` (or `demo`): every locked package is installed
    at its pinned version (a local build such as torch 2.13.0+cpu matches its pin 2.13.0)."""
    stamps = {p.name.removeprefix(".crnn-installed-") for p in Path(sys.prefix).glob(".crnn-installed-*")}
    if not stamps:
        pytest.skip(f"{sys.prefix} was not made by `python3 tasks.py test`: it need not hold the lock's versions")
    lock = LOCKS["test" if "test" in stamps else "base"]
    wrong = {}
    for name, version in pins(lock).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or not SpecifierSet(f"=={version}").contains(installed, prereleases=True):
            wrong[name] = (version, installed)
    assert not wrong, f"locked (version, installed) differ in {sys.prefix}: {wrong}"


def test_the_workflow_conda_environment_installs_the_locked_versions():
    """workflow/envs/crnn.yaml (`snakemake --sdm conda`) installs crnn with the lock as pip constraints,
    on the Python the lock was compiled for. conda itself is not run here: conda-forge is out of this
    machine's reach (docs: README, section Developing)."""
    env = yaml.safe_load((REPO / "workflow" / "envs" / "crnn.yaml").read_text())
    deps = env["dependencies"]
    python = re.search(r"autogenerated by pip-compile with Python (\d+\.\d+)", LOCKS["base"].read_text()).group(1)
    assert f"python={python}" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip[:2] == ["-c ../../requirements/base.txt", "../.."], pip


def test_pre_commit_runs_the_tool_versions_of_ci():
    """.pre-commit-config.yaml pins the ruff and snakefmt that `python3 tasks.py lint` (CI) installs."""
    spec = importlib.util.spec_from_file_location("tasks", REPO / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "snakefmt", "snakemake-lint"} <= set(hooks)
    pinned = {d for h in hooks.values() for d in h.get("additional_dependencies", [])}
    assert pinned and pinned <= set(tasks.TOOLS), (pinned, tasks.TOOLS)


def _tasks():
    spec = importlib.util.spec_from_file_location("tasks", REPO / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks


@pytest.mark.parametrize("kind", ["base", "test"])
def test_every_other_python_and_machine_has_a_lock_within_pyprojects_ranges(kind):
    """requirements/platforms/ (uv pip compile for Python 3.11-3.13 on Linux x86-64 and aarch64): each
    pins every requirement of pyproject.toml that applies there within its range, and the versions
    it shares with the native lock are the native lock's (it was constrained to them)."""
    tasks = _tasks()
    native = pins(LOCKS[kind])
    for python, machine in tasks.LOCK_TARGETS:
        path = tasks.lock_path(kind, python, machine)
        if (python, machine) == tasks.NATIVE_TARGET:
            assert path == LOCKS[kind]
            continue
        assert path.exists(), f"{path.relative_to(REPO)} missing: run `python3 tasks.py lock`"
        locked = pins(path)
        env = {
            "python_version": python,
            "python_full_version": f"{python}.0",
            "platform_machine": machine,
            "sys_platform": "linux",
            "platform_system": "Linux",
        }
        groups = [None] + (list(PROJECT.get("optional-dependencies", {})) if kind == "test" else [])
        for group in groups:
            lines = PROJECT["dependencies"] if group is None else PROJECT["optional-dependencies"][group]
            for req in map(Requirement, lines):
                if req.marker is None or req.marker.evaluate({**env, "extra": group or ""}):
                    name = canonicalize_name(req.name)
                    assert name in locked, f"{req} not pinned in {path.relative_to(REPO)}"
                    assert req.specifier.contains(locked[name], prereleases=True), (path.name, req, locked[name])
        differ = {k: (native[k], v) for k, v in locked.items() if k in native and native[k] != v}
        assert not differ, f"{path.relative_to(REPO)} moves pins of {LOCKS[kind].name}: {differ}"
        if machine == "aarch64":  # the full TensorFlow build where tensorflow-cpu has no wheels
            assert "tensorflow" in locked and "tensorflow-cpu" not in locked
