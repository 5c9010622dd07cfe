"""How often a NePS peer asks for an architecture it has already trained to the top fidelity (NePS trains it again,
and search_replay.py charges it again), over sampler seeds 0..N-1, at search_replay's limits.

    OMP_NUM_THREADS=1 python benchmarks/neps_repeats.py neps-primo --max-epochs 400 --max-seconds 0.025
"""

from __future__ import annotations

import argparse

import search_peers_neps as neps_peers
import search_replay as replay

from resnas.replay import Table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=sorted(neps_peers.PEERS))
    p.add_argument("--table", default=str(replay.HERE / "tables" / "wrn-seed1.json.gz"))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--max-epochs", type=int, default=max(replay.BUDGETS))
    p.add_argument("--max-seconds", type=float, default=max(replay.SECONDS_BUDGETS))
    args = p.parse_args()
    table, asked = Table.load(args.table), []
    ask = neps_peers.neps.AskAndTell.ask

    def logged(self, **kwargs):
        trial = ask(self, **kwargs)
        asked.append(trial)
        return trial
    neps_peers.neps.AskAndTell.ask = logged
    top = again = 0
    for seed in range(args.seeds):
        asked.clear()
        meter = replay.Meter(table, args.max_epochs, args.max_seconds * replay.enumeration_seconds(table))
        neps_peers.PEERS[args.method](table, seed, meter)
        full = [neps_peers._key(t.config) for t in asked if t.config[neps_peers.FIDELITY] == table.epochs]
        top, again = top + len(full), again + len(full) - len(set(full))
        print(f"seed {seed}: {len(asked)} asks, {len(full)} at the top fidelity, {len(full) - len(set(full))} of "
              "them an architecture already trained there", flush=True)
    print(f"all seeds: {again} of {top} top-fidelity trials repeated an architecture already trained there")


if __name__ == "__main__":
    main()
