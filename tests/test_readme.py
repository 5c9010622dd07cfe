"""The README's promises that code can check: its sample output of the main job has the shape the CLI prints today
(rendered through the same formatting functions), its test command is the one .ci/run runs, and the architectures
it pastes are what the spec describes."""

import re
from pathlib import Path

from resnas.cli import text
from resnas.measure import analytic_cost
from resnas.presets import preset

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _sample_output() -> list[str]:
    block = re.search(r"It printed:\n\n```\n(.*?)\n```", README, re.S)
    assert block, "README: the main job's sample output block (after 'It printed:') is missing"
    return block[1].splitlines()


def test_sample_summary_is_what_search_prints():
    lines = _sample_output()
    numbers = re.fullmatch(r"study (\S+): (\d+) complete(?: \((\d+) resumed from a pause\))?, (\d+) stopped early, "
                           r"(\d+) failed, (\d+) rejected, (\d+) duplicates; (\d+) epochs in (\d+)s"
                           r"(?: \((\d+\.\d)% of trial time outside training\))?", lines[0])
    assert numbers, lines[0]
    name, complete, resumed, pruned, failed, rejected, dups, epochs, seconds, overhead = numbers.groups()
    printed = text.search_summary({"study": name, "n_complete": int(complete), "n_pruned": int(pruned),
                                   "n_resumed": int(resumed or 0),
                                   "n_failed": int(failed), "n_rejected": int(rejected), "n_duplicates": int(dups),
                                   "epochs_trained": int(epochs), "seconds": float(seconds),
                                   "overhead_share": float(overhead) / 100 if overhead else None,
                                   "storage": lines[1].removeprefix("storage ")})
    assert printed.splitlines() == lines[:2]
    assert int(complete) + int(pruned) + int(failed) == 50  # the main job's budget


def test_sample_front_is_what_search_prints():
    lines = _sample_output()[2:]
    row = re.compile(r"\s*(\d+)\s+(\d\.\d{4})\s+(\d\.\d{4})\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+(.+?)  (\S+\.pt)")
    rows = []
    for line in lines[2:]:
        m = row.fullmatch(line)
        assert m, line
        rows.append({"trial": int(m[1]), "val_acc": float(m[2]), "test_acc": float(m[3]), "mflops": float(m[4]),
                     "params": int(m[5].replace(",", "")), "latency_ms": float(m[6]), "arch": m[7],
                     "checkpoint": m[8]})
    assert rows and text.pareto_table(rows).splitlines() == lines
    assert [r["mflops"] for r in rows] == sorted(r["mflops"] for r in rows)  # the front is listed cheapest first
    accs = [r["val_acc"] for r in rows]
    assert accs == sorted(accs)  # a front of (accuracy, MFLOPs): more MFLOPs only where accuracy is higher


def test_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest -q"
    assert f"\n{command}\n" in README and f"\n{command}\n" in ci


def test_presets_listed_in_readme_exist():
    table = re.findall(r"^\| (resnet\d+|wide_resnet50_2) \| ([\d,]+) \|", README, re.M)
    assert len(table) == 6
    for name, params in table:
        assert analytic_cost(preset(name), 224).params == int(params.replace(",", ""))
