"""The search: Optuna samples architectures from a space, each is fitted with early stopping, and the study keeps
the Pareto front of validation accuracy against cost (MFLOPs, parameters, measured latency).

`config` (SearchConfig), `study` (storage, sampler, identity), `trial` (one architecture), `loop` (the workers),
`summary` (what a search reports). Everything a trial learns is stored on the Optuna trial (names in `records`), so
reports, resumption and several workers all read one source: the storage.
"""

from .config import EPOCHS, MODES, PAUSED, PRUNERS, SAMPLERS, SearchConfig
from .loop import run_search
from .summary import SearchResult

__all__ = ["EPOCHS", "MODES", "PAUSED", "PRUNERS", "SAMPLERS", "SearchConfig", "SearchResult", "run_search"]
