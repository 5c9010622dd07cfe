"""The markdown tables of search_replay.py's rows, one per currency, and the JSON lines it prints read back."""

from __future__ import annotations

import json
import math
from pathlib import Path

from search_replay import CURRENCIES, TARGETS, WORST_AT


def _cost(currency: str, x: float) -> str:
    return f"{x:.0f}" if currency == "epochs" else f"{100 * x:.3g}%"


def row_markdown(r: dict, currency: str = "epochs") -> str:
    suffix = "" if currency == "epochs" else "_seconds"
    h = r["hv" + suffix]
    cells = [f"{h[b][1]:.3f} [{h[b][0]:.3f}, {h[b][2]:.3f}]" if b in h else "—" for b in CURRENCIES[currency]]
    worst = f"{h[WORST_AT[currency]][3]:.3f}" if WORST_AT[currency] in h else "—"
    reach_ = [("never" if math.isinf(c) else _cost(currency, c)) for c in (r["reach" + suffix][f] for f in TARGETS)]
    name = r["method"] + "".join(f" --{k.replace('_', '-')} {v}" for k, v in r.get("overrides", {}).items())
    return f"| {name} | " + " | ".join(cells) + f" | {worst} | " + " / ".join(reach_) + " |"


def header(currency: str) -> str:
    if currency == "epochs":
        return ("| method | @100 epochs | @182 | @400 | @1000 | worst seed @182 | epochs to 0.95 / 0.98 / 0.99 |\n"
                "|---|---|---|---|---|---|---|")
    return ("| method | @1% of enumeration seconds | @2.5% | @5% | @12% | worst seed @5% | seconds to 0.95 / 0.98 / "
            "0.99 (% of enumeration) |\n|---|---|---|---|---|---|---|")


def markdown(rows: list[dict], title: str) -> str:
    parts = [f"{title}: median [quartiles]"]
    for currency in CURRENCIES:
        parts.append(f"cost in {currency}\n\n" + "\n".join([header(currency)] + [row_markdown(r, currency)
                                                                                 for r in rows]))
    return "\n\n".join(parts)


def load_rows(path: str | Path) -> list[dict]:
    """JSON lines printed by this script, budgets and targets back to numbers."""
    def numeric(d: dict) -> dict:
        return {float(k) if "." in k else int(k): v for k, v in d.items()}
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for r in rows:
        for k in ("hv", "reach", "hv_seconds", "reach_seconds"):
            r[k] = numeric(r[k])
    return rows


