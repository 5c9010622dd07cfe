"""SearchConfig: what a search is asked to do, validated on construction. Its defaults are the CLI's defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..artifacts import NONE, check_url, default_url
from ..errors import UserError
from ..importance import criterion
from ..records import DEFAULT_OBJECTIVES, OBJECTIVES, VAL_ACC
from ..spaces import Space
from ..storage import MEMORY

SAMPLERS = ("auto", "ehvi", "nsga2", "tpe", "random", "grid")  # auto: ehvi where it applies (see uses_ehvi)
PRUNERS = ("sha", "hyperband", "median", "none")
MODES = ("pareto", "scalar")
PAUSED = ("promote", "revisit", "drop")  # what becomes of a trial MO-ASHA stopped (see search.promotion)
ANALYTIC_COSTS = ("mflops", "params")  # cost objectives known from the spec before training (the EHVI sampler's)
EPOCHS = 9  # a search trial's maximum epochs unless told otherwise (TrainConfig's own default is for one model)


@dataclass(frozen=True)
class SearchConfig:
    space: str = "wrn"
    budget: int = 50  # architectures evaluated (duplicates and constraint rejections do not count)
    study: str | None = None  # default: derived from the space and dataset
    out_dir: str = "studies"
    storage: str | None = None  # an Optuna RDB URL; default sqlite under out_dir/study
    artifacts: str | None = None  # checkpoint artifact store: a folder, s3://BUCKET or "none"; default out_dir/study
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    mode: str = "pareto"  # "pareto": multi-objective; "scalar": MnasNet reward acc * (mflops / target) ** w
    sampler: str = "auto"  # auto: "ehvi" (search.ehvi) for val_acc against mflops or params, else "nsga2"; "grid":
    # every architecture of the space (times `seeds`), in random order
    seed: int = 0
    seeds: tuple[int, ...] = ()  # training seeds: each architecture is trained once per seed (repeats)
    early_stopping: bool = True
    eta: int = 3
    min_epochs: int = 1
    paused: str = "promote"  # a stopped trial: promoted when it climbs into its rung's top 1/eta ("promote"), resumed
    # only when the sampler proposes it again ("revisit"), or stopped for good ("drop", resnas 0.1)
    pruner: str = "sha"  # scalar mode only: Optuna's own pruners
    target_mflops: float = 10.0  # scalar mode
    reward_exponent: float = -0.07  # scalar mode (MnasNet's w)
    max_mflops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    timeout: float | None = None  # seconds of wall time for this invocation
    workers: int | None = None  # trial processes on this machine; None: search.loop.default_workers
    latency_batch_size: int = 1
    heartbeat: int = 10  # seconds between a running trial's heartbeats; stale after 3 missed
    prune_ratios: tuple[float, ...] = ()  # prune each fully trained model at these FLOPs cuts (and record it)
    prune_criterion: str = "norm"
    other_sizes: tuple[int, ...] = ()  # also test each fully trained gap-head model on images resized to these sides
    replay: str | None = None  # a recorded table (replay.Table .json.gz): replay its curves instead of training, in
    # every worker process (benchmarks of the search itself)

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise UserError(f"budget must be an integer >= 1 (trials to evaluate), got {self.budget}")
        if self.heartbeat < 1:
            raise UserError(f"heartbeat must be an integer >= 1 (seconds), got {self.heartbeat}")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"workers must be >= 1, got {self.workers}")
        if self.mode not in MODES:
            raise UserError(f"objective mode must be pareto or scalar, got {self.mode!r}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.storage and self.storage.startswith(MEMORY) and self.workers not in (None, 1):
            raise UserError(f"storage {self.storage} lives in this process: it takes one worker, not {self.workers}")
        if self.sampler == "ehvi" and not self.ehvi_applies():
            raise UserError("sampler ehvi needs pareto mode and two objectives, val_acc and mflops or params (costs "
                            f"known before training); got {self.mode} mode, {','.join(self.objectives)}; use "
                            "--sampler nsga2")
        if self.paused not in PAUSED:
            raise UserError(f"paused must be one of {', '.join(PAUSED)}, got {self.paused!r}")
        if self.pruner not in PRUNERS:
            raise UserError(f"pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds must be distinct, got {list(self.seeds)}")
        if not all(s >= 1 for s in self.other_sizes):
            raise UserError(f"other sizes are image sides >= 1 in pixels, got {list(self.other_sizes)}")
        if not all(0 < r < 1 for r in self.prune_ratios):
            raise UserError(f"prune ratios are FLOPs cuts in (0, 1), got {list(self.prune_ratios)}")
        criterion(self.prune_criterion)
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise UserError(f"objectives must be distinct names from {', '.join(OBJECTIVES)}, got "
                            f"{','.join(self.objectives)!s}")
        if "val_acc" not in self.objectives:
            raise UserError("objectives must include val_acc (a search for the cheapest untrained net is pointless)")
        if self.study is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.study):
            raise UserError(f"study name {self.study!r} is not allowed; use letters, digits, '.', '_' and '-' "
                            "(no path separators)")
        if self.artifacts and self.artifacts != NONE:
            check_url(self.artifacts)
        for name in ("max_mflops", "max_params", "max_latency_ms", "timeout", "target_mflops"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UserError(f"{name.replace('_', '-')} must be > 0, got {v}")

    def study_name(self, dataset: str) -> str:
        if self.study:
            return self.study
        space = Path(self.space).stem if self.space.endswith(".toml") else self.space
        data = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset.replace("imagefolder:", "folder-")).strip("-")
        return space if dataset == "digits" else f"{space}-{data}"

    def study_dir(self, dataset: str) -> Path:
        return Path(self.out_dir) / self.study_name(dataset)

    def artifact_store(self, dataset: str) -> str | None:
        """The artifact store's URL, or None where checkpoints stay in the study folder only."""
        if self.artifacts == NONE:
            return None
        return self.artifacts or default_url(self.study_dir(dataset))

    @property
    def costs(self) -> tuple[str, ...]:
        """The objectives besides accuracy: what a rung point holds after it."""
        return tuple(o for o in self.objectives if o != VAL_ACC)

    def ehvi_applies(self) -> bool:
        """Whether the EHVI sampler can run this search: it scores candidates by a cost it knows before training."""
        return self.mode == "pareto" and len(self.objectives) == 2 and self.cost_objective() in ANALYTIC_COSTS

    def cost_objective(self) -> str:
        return next(iter(self.costs), "")

    def uses_ehvi(self) -> bool:
        return self.sampler == "ehvi" or (self.sampler == "auto" and self.ehvi_applies())

    def constrained(self) -> bool:
        return any((self.max_mflops, self.max_params, self.max_latency_ms))

    def fitted_to(self, space: Space) -> SearchConfig:
        """A grid study ends with its grid: its budget is at most the grid's size (times the seeds)."""
        if self.sampler != "grid":
            return self
        return replace(self, budget=min(self.budget, space.size() * max(1, len(self.seeds))))
