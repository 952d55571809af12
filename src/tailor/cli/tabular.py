"""``tailor verify`` and ``tailor mdvi``: the tabular lab on the command line."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

from tailor.cli import args as argtypes
from tailor.errors import TailorError
from tailor.output import write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check the theory's identities on fresh random Garnets (exact, float64)",
        description="Run every identity of the tabular lab on fresh random Garnet MDPs and print "
        "a table (identity, cases, worst error, tolerance, result). Exit code 1 on any failure.",
    )
    p.add_argument(
        "--seed",
        type=argtypes.seed,
        default=None,
        help="seed for the random Garnets (default: a fresh one, printed)",
    )
    p.add_argument(
        "--cases-scale",
        type=argtypes.positive,
        default=1.0,
        help="multiply every check's number of cases (default 1)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    argtypes.add_overwrite(p, "the --json file")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "mdvi",
        help="draw the 'KL regularization averages q-values' figure",
        description="||q* - q_pi_k|| over iterations for approximate VI and MD-VI at a few lam, "
        "under the same Gaussian noise, with the MD-VI bound. Writes FILE.png and FILE.json.",
    )
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    argtypes.add_overwrite(p, "FILE.png and FILE.json")
    p.add_argument("--lams", type=str, default="0.1,1,10", help="comma-separated lam values")
    p.add_argument("--states", type=argtypes.count, default=30)
    p.add_argument("--actions", type=argtypes.count, default=4)
    p.add_argument("--gamma", type=argtypes.fraction, default=0.9)
    p.add_argument(
        "--noise", type=argtypes.nonnegative, default=1.0, help="noise standard deviation"
    )
    p.add_argument("--iterations", type=argtypes.count, default=300)
    p.add_argument("--seeds", type=argtypes.count, default=5, help="noise seeds to average over")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="Garnet seed and first noise seed")
    p.set_defaults(func=cmd_mdvi)


def _print_row(r) -> None:
    status = "pass" if r.passed else "FAIL"
    print(
        f"  {status}  {r.name}  ({r.cases} cases, worst {r.error:.2e}, {r.seconds:.1f}s)",
        file=sys.stderr,
        flush=True,
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from tailor.tabular.verify import format_table, run_checks

    if not args.cases_scale > 0:
        raise TailorError(f"--cases-scale must be > 0, got {args.cases_scale}")
    if args.json is not None:
        argtypes.check_output_arg(args, args.json)  # before the checks run, not after
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    print(f"tailor verify: seed {seed} (rerun with --seed {seed})", file=sys.stderr)
    start = time.perf_counter()
    results = run_checks(seed, args.cases_scale, progress=_print_row)
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    print(
        f"\n{len(results) - len(failed)}/{len(results)} identities hold "
        f"({time.perf_counter() - start:.1f} s, seed {seed})"
    )
    if args.json is not None:
        write_json(args.json, {"seed": seed, "results": [r.__dict__ for r in results]})
    return 1 if failed else 0


def cmd_mdvi(args: argparse.Namespace) -> int:
    from tailor.tabular.figures import MdviSettings, mdvi_experiment, plot_mdvi, save_json

    try:
        lams = tuple(float(x) for x in args.lams.split(","))
    except ValueError:
        raise TailorError(f"--lams must be comma-separated numbers, got {args.lams!r}") from None
    if args.out.suffix.lower() != ".png":
        raise TailorError(f"--out must be a .png file, got {args.out}")
    argtypes.check_output_arg(args, args.out, what="--out")
    argtypes.check_output_arg(args, args.out.with_suffix(".json"), what="--out's JSON")
    settings = MdviSettings(
        lams=lams,
        n_states=args.states,
        n_actions=args.actions,
        branching=min(3, args.states),
        gamma=args.gamma,
        noise_std=args.noise,
        iterations=args.iterations,
        seeds=args.seeds,
        seed=args.seed,
    )
    data = mdvi_experiment(settings)
    data_path = save_json(data, args.out.with_suffix(".json"))
    plot_mdvi(json.loads(data_path.read_text()), args.out)
    for lam, run in data["mdvi"].items():
        final = sum(e[-1] for e in run["errors"]) / len(run["errors"])
        print(f"MD-VI lam={lam}: final error {final:.3g}")
    final_vi = sum(e[-1] for e in data["vi"]) / len(data["vi"])
    print(f"approximate VI: final error {final_vi:.3g}")
    print(f"wrote {args.out} and {data_path}")
    return 0
