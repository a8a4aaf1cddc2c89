"""The README's demo time is the one measured in docs/benchmarks.md, with the machine it was measured on
(issue 16, item 10): the README names the section, and the figures and the machine agree with it."""

from __future__ import annotations

import re

from conftest import REPO

DURATION = r"(\d+ min \d+ s)"


def _section(text: str, heading: str) -> str:
    """The body of the markdown section whose heading starts with ``heading`` (up to the next heading)."""
    match = re.search(rf"^#+ {re.escape(heading)}[^\n]*\n(.*?)(?=^#)", text, flags=re.M | re.S)
    assert match, f"docs/benchmarks.md has no section {heading!r}"
    return match.group(1)


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_readme_demo_time_is_the_figure_recorded_in_docs_benchmarks():
    readme = _flat((REPO / "README.md").read_text())
    cited = re.search(
        r'How long it takes, as measured \(docs/benchmarks\.md, section "([^"]+)"\)(.*?)Arguments after', readme
    )
    assert cited, "the README's demo time must cite docs/benchmarks.md and its section"
    heading, statement = cited.groups()
    section = _flat(_section((REPO / "docs" / "benchmarks.md").read_text(), heading))
    recorded = re.search(rf"{DURATION} in all \(the pipeline {DURATION}", section)
    assert recorded, f"section {heading!r} records no 'X min Y s in all (the pipeline X min Y s'"
    stated = re.search(rf"took {DURATION} in all, installation .*? pipeline alone took {DURATION}", statement)
    assert stated, statement
    assert stated.groups() == recorded.groups()
    # the machine: the README says what the section says
    assert "23.5 GiB" in section and "23.5 GiB" in statement
    assert re.search(r"2-core Intel Xeon", section) and "2 Intel Xeon cores" in statement
    assert "no GPU" in section and "no GPU" in statement
    assert re.search(r"TensorFlow (\d+\.\d+)", section).group(1) == re.search(
        r"TensorFlow (\d+\.\d+)", statement
    ).group(1)
