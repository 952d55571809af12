"""``tailor lm ...``: customize causal language models (needs the ``lm`` extra).

Subcommands: ``pretrain`` (a small character GPT-2 on a line corpus), ``sample``, ``customize``
(token-level PPO: residual, kl, greedy; offline: dpo, ce-dpo, decoupled-dpo), ``evaluate`` and
``bridge`` (the exactness-bridge figures of the enumerable toy). Heavy imports (transformers)
happen inside the handlers, so ``tailor --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from tailor.cli import args as argtypes
from tailor.errors import TailorError
from tailor.methods import CUSTOMIZATION_METHODS, OFFLINE_METHODS

ALL_METHODS = (*CUSTOMIZATION_METHODS, *OFFLINE_METHODS)


def register(sub: argparse._SubParsersAction) -> None:
    lm = sub.add_parser(
        "lm",
        help="customize causal language models (pretrain, sample, customize, evaluate, bridge)",
        description="Customize a causal language model with an add-on reward (Residual Policy "
        "Gradient at the token level, and the DPO family). Models are local Hugging Face "
        "directories; nothing is downloaded.",
    )
    lm_sub = lm.add_subparsers(dest="lm_command", metavar="SUBCOMMAND")
    lm.set_defaults(func=lambda args: _help(lm))

    p = lm_sub.add_parser("pretrain", help="train a small character-level GPT-2 on a corpus")
    p.add_argument("--corpus", default="names", help="'names' (census first names) or FILE.txt")
    p.add_argument(
        "--steps", type=argtypes.count, default=2000, help="training steps (default 2000)"
    )
    p.add_argument("--seed", type=argtypes.seed, default=0)
    p.add_argument("--layers", type=argtypes.count, default=4)
    p.add_argument("--width", type=argtypes.count, default=128)
    p.add_argument("--heads", type=argtypes.count, default=4)
    p.add_argument("--batch-size", type=argtypes.count, default=64)
    p.add_argument("--lr", type=argtypes.positive, default=2e-3)
    p.add_argument(
        "--max-len", type=argtypes.count, default=32, help="longest sequence incl. bos/eos"
    )
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run or model already in --out (by default it is refused)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretrain)

    p = lm_sub.add_parser("sample", help="print samples of a model")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("-n", type=argtypes.count, default=10, help="number of samples")
    p.add_argument("--prompt", default="", help="prompt (default: empty, i.e. just bos)")
    p.add_argument("--seed", type=argtypes.seed, default=0)
    p.add_argument("--max-new-tokens", type=argtypes.count, default=16)
    p.add_argument("--temperature", type=argtypes.positive, default=1.0)
    _allow_pickle(p)
    p.set_defaults(func=cmd_sample)

    p = lm_sub.add_parser(
        "customize",
        help="customize a prior to an add-on reward",
        description="Token-level PPO (residual, kl, greedy) on the reward "
        "r_R + omega' log pi_prior - alpha_hat log pi, or offline training (dpo, ce-dpo, "
        "decoupled-dpo) on preference pairs. Defaults: residual omega'=0.15 alpha_hat=0.1; "
        "kl beta=0.1; greedy alpha_hat=0.1; dpo/ce-dpo beta=0.1; decoupled-dpo omega'=0.15 "
        "alpha_hat=0.1.",
    )
    p.add_argument("--prior", required=True, help="prior model directory")
    _reward_args(p, required=False)
    p.add_argument("--method", required=True, help=", ".join(ALL_METHODS))
    p.add_argument("--omega-prime", type=argtypes.nonnegative, default=None)
    p.add_argument("--alpha-hat", type=argtypes.nonnegative, default=None)
    p.add_argument("--beta", type=argtypes.nonnegative, default=None)
    steps_help = "PPO iterations (default 60) or offline steps (default 150)"
    p.add_argument("--steps", type=argtypes.count, default=None, help=steps_help)
    p.add_argument("--seed", type=argtypes.seed, default=0)
    p.add_argument("--lr", type=argtypes.positive, default=None)
    p.add_argument("--batch-size", type=argtypes.count, default=None)
    p.add_argument("--max-new-tokens", type=argtypes.count, default=16)
    _data_args(p)
    p.add_argument(
        "--out",
        help="output model directory (default: a new "
        "runs/lm-<reward>/<method>-<seed>-<YYYYmmdd-HHMMSS>)",
    )
    _run_dir_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--help-config",
        action="store_true",
        help="list every field of LMPPOConfig (PPO methods) or LMDPOConfig (offline methods): "
        "each is a flag too, e.g. --epochs 2 --clip 0.1",
    )
    _allow_pickle(p)
    _runtime_args(p)
    p.set_defaults(func=cmd_customize, config_flags=True)

    p = lm_sub.add_parser("evaluate", help="add-on success, naturalness, KL to the prior")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--prior", required=True, help="prior model directory")
    _reward_args(p, required=True)
    p.add_argument("--samples", type=argtypes.count, default=512)
    p.add_argument("--seed", type=argtypes.seed, default=0)
    p.add_argument("--max-new-tokens", type=argtypes.count, default=16)
    p.add_argument("--prompt", action="append", default=None, help="prompt (repeatable)")
    p.add_argument("--examples", type=argtypes.natural, default=8, help="examples listed")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    argtypes.add_overwrite(p, "the --json file")
    _allow_pickle(p)
    p.set_defaults(func=cmd_evaluate)

    p = lm_sub.add_parser("bridge", help="exactness bridge on the enumerable toy (table)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    argtypes.add_overwrite(p, "the --json file")
    p.set_defaults(func=cmd_bridge)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _data_args(p: argparse.ArgumentParser) -> None:
    """``lm customize``'s data: prompts (text, a file, a `datasets` dataset) and preference
    pairs (tailor.lm.prompts, tailor.lm.preferences, tailor.lm.tables)."""
    p.add_argument(
        "--prompt",
        action="append",
        default=None,
        help="prompt to customize on (repeatable; default: the empty prompt)",
    )
    p.add_argument(
        "--prompts-file",
        default=None,
        help="more prompts: FILE.txt (one per line), FILE.jsonl (a 'prompt' per line, text or "
        "a list of role/content messages rendered with the prior's chat template), or a "
        "`datasets` dataset with a 'prompt' column: FILE.parquet, FILE.arrow, a save_to_disk "
        "directory (every row is used)",
    )
    p.add_argument(
        "--prompt-column",
        default=None,
        help="the JSONL key / dataset column of --prompts-file holding the prompt "
        "(default: prompt)",
    )
    p.add_argument(
        "--prompts-split",
        default=None,
        help="the split of a DatasetDict directory given to --prompts-file (default: train)",
    )
    p.add_argument(
        "--preferences",
        default=None,
        help="prompt/chosen/rejected pairs (offline methods): FILE.jsonl, or a `datasets` "
        "dataset with these columns (FILE.parquet, FILE.arrow, a save_to_disk directory)",
    )
    p.add_argument(
        "--preferences-split",
        default=None,
        help="the split of a DatasetDict directory given to --preferences (default: train)",
    )


def _run_dir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run or model already in --out (by default it is refused)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="DIR",
        help="continue the stopped run in DIR (or --out) from its latest checkpoint, exactly "
        "as if it had not stopped; give the run's own flags again (--steps may grow)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=argtypes.count,
        default=50,
        help="PPO iterations or offline steps between checkpoints of the run directory "
        "(default 50; the last one and a stop by Ctrl-C / SIGTERM always write one)",
    )
    p.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="no TensorBoard scalars in <out>/tb (metrics.csv is always written)",
    )


def _resume_out(args: argparse.Namespace) -> None:
    """``--resume DIR`` names the run directory (``--out``, if given too, must be the same)."""
    if args.resume is None:
        return
    if isinstance(args.resume, str):
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise TailorError(
                "--resume continues the run in its own directory; drop --out or give the same "
                "directory"
            )
        args.out = args.resume
    if not args.out:
        raise TailorError("--resume needs the run directory: --resume DIR (or --out DIR)")
    if args.overwrite:
        raise TailorError("--resume continues a run and --overwrite replaces it: pass only one")


def _reward_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--reward",
        default=None,  # required (evaluate) is checked in _resolve_reward: or --reward-model
        help="add-on reward name, e.g. ends-with-vowel, max-length:5, contains:an",
    )
    p.add_argument(
        "--rewards-file", default=None, help="Python file that calls tailor.lm.register_reward(...)"
    )
    p.set_defaults(reward_required=required)
    p.add_argument(
        "--reward-model",
        default=None,
        metavar="DIR",
        help="add-on reward from a reward model: a local Hugging Face sequence-classification "
        "directory with one label, scoring prompt + completion (instead of --reward; "
        "the same as --reward reward-model:DIR)",
    )
    p.add_argument(
        "--reward-batch-size",
        type=argtypes.count,
        default=32,
        help="sequences per forward pass of --reward-model (default 32)",
    )


def _resolve_reward(args: argparse.Namespace) -> str | None:
    from tailor.lm.rewards import get_reward, load_rewards_file

    if args.rewards_file is not None:
        load_rewards_file(args.rewards_file)
    if args.reward_model is not None:
        from tailor.lm.reward_model import register_reward_model

        if args.reward is not None:
            raise TailorError("give --reward or --reward-model, not both")
        args.reward = register_reward_model(
            args.reward_model, args.reward_batch_size, args.allow_pickle_weights
        )
    if args.reward is not None:
        get_reward(args.reward)  # unknown names fail here, before any model is loaded
    elif args.reward_required:
        raise TailorError("give the add-on reward: --reward NAME or --reward-model DIR")
    return args.reward


def _runtime_args(p: argparse.ArgumentParser) -> None:
    """The machine and memory flags of ``lm customize`` (:class:`tailor.lm.runtime.LMRuntime`)."""
    g = p.add_argument_group("machine and memory (change no objective)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if any)")
    g.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="precision of the prior (auto: its saved dtype on a GPU, float32 on the CPU); "
        "trained weights stay float32 (autocast); the result is saved in the prior's dtype",
    )
    g.add_argument(
        "--threads",
        type=argtypes.count,
        default=None,
        help="torch CPU threads (default: torch's, i.e. every core or OMP_NUM_THREADS)",
    )
    g.add_argument(
        "--grad-accum",
        type=argtypes.count,
        default=1,
        help="split each minibatch into N micro-batches, one optimizer step (default 1)",
    )
    g.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass (less memory, more time)",
    )
    g.add_argument(
        "--lora-r",
        type=argtypes.natural,
        default=0,
        help="train a LoRA adapter of this rank on the frozen prior (0: every weight); the "
        "prior's log-probs are the adapter-off model's",
    )
    g.add_argument("--lora-alpha", type=argtypes.positive, default=None, help="default 2 r")
    g.add_argument("--lora-dropout", type=argtypes.fraction, default=0.0, help="default 0")
    g.add_argument(
        "--lora-targets",
        default="all-linear",
        help="modules with an adapter: all-linear (default) or names, e.g. q_proj,v_proj",
    )
    g.add_argument(
        "--save-merged",
        action="store_true",
        help="a LoRA run saves the merged model (default: the adapter and tokenizer only)",
    )
    g.add_argument(
        "--base",
        default=None,
        help="base model directory of a --prior that is a LoRA adapter directory (default: "
        "the adapter's base_model_name_or_path)",
    )


def _runtime(args: argparse.Namespace) -> Any:
    from tailor.lm.runtime import LMRuntime

    return LMRuntime(
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        grad_accum=args.grad_accum,
        gradient_checkpointing=args.gradient_checkpointing,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_targets=args.lora_targets,
        save_merged=args.save_merged,
        base=args.base,
    )


def _threads() -> None:
    import torch

    # Small models: one thread is as fast and leaves the other cores to other work.
    torch.set_num_threads(1)


def _allow_pickle(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-pickle-weights",
        action="store_true",
        help="also load model directories whose weights are pickle files (pytorch_model.bin); "
        "loading a pickle can run code: only for files you trust (default: safetensors only)",
    )


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise TailorError(f"{name} must be >= 1, got {value}")


# ---------------------------------------------------------------------------------------------


def cmd_pretrain(args: argparse.Namespace) -> int:
    from tailor.lm.corpus import load_corpus
    from tailor.lm.model import (
        PretrainConfig,
        count_parameters,
        pretrain,
        pretrain_meta,
        save_model,
    )
    from tailor.rundir import claim_run_dir

    _threads()
    lines = load_corpus(args.corpus)
    config = PretrainConfig(
        n_layer=args.layers,
        n_embd=args.width,
        n_head=args.heads,
        n_positions=args.max_len,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    argtypes.check_output_dir_arg(args, args.out)  # not the corpus's directory
    with claim_run_dir(args.out, "lm-model", overwrite=args.overwrite):
        t0 = time.perf_counter()
        model, tokenizer, losses = pretrain(lines, config, progress=not args.quiet)
        wall = time.perf_counter() - t0
        meta = pretrain_meta(config, str(args.corpus), losses, len(lines))
        meta["wall_seconds"] = round(wall, 1)
        meta["parameters"] = count_parameters(model)
        save_model(model, tokenizer, args.out, meta)
    print(
        f"pretrained {meta['parameters']} parameters on {len(lines)} lines in {wall:.0f}s; "
        f"loss (last 100 steps) {meta['final_loss_mean_last_100']:.3f} nats/token -> {args.out}"
    )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from tailor.lm.model import load_model, load_tokenizer
    from tailor.lm.sampling import sample

    _positive("-n", args.n)
    _positive("--max-new-tokens", args.max_new_tokens)
    _threads()
    model = load_model(args.model, allow_pickle=args.allow_pickle_weights)
    tok = load_tokenizer(args.model, model=model)
    g = torch.Generator().manual_seed(args.seed)
    s = sample(model, tok, [args.prompt] * args.n, args.max_new_tokens, g, args.temperature)
    for c in s.completions:
        print(args.prompt + c)
    return 0


def cmd_customize(args: argparse.Namespace) -> int:
    from tailor.experiments.run import lm_customize, lm_method

    if args.method not in ALL_METHODS:
        raise TailorError(
            f"unknown method {args.method!r}; known methods: {', '.join(ALL_METHODS)}"
        )
    _positive("--steps", args.steps)
    _positive("--batch-size", args.batch_size)
    _positive("--max-new-tokens", args.max_new_tokens)
    _resume_out(args)
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise TailorError(f"--lr must be finite and > 0, got {args.lr}")
    reward = _resolve_reward(args)
    given = {"omega_prime": args.omega_prime, "alpha_hat": args.alpha_hat, "beta": args.beta}
    method = lm_method(args.method, **given)  # bad coefficients fail before any model loads
    runtime = _runtime(args)  # so do bad machine settings
    overrides = _overrides(args, offline=method.offline)
    argv = [*getattr(args, "extra", []), *(["--help"] if args.help_config else [])]
    if argv:  # every config field is a flag too (tyro); --help-config lists them
        from tailor.experiments.run import config_flags

        kind = "lm-dpo" if method.offline else "lm-ppo"
        base = {"seed": args.seed, "max_new_tokens": args.max_new_tokens, **overrides}
        prog = f"tailor lm customize --method {args.method}"
        overrides = {**overrides, **config_flags(kind, argv, base, prog=prog)}
    prompts = list(args.prompt or [])
    if args.prompts_file is not None:
        from tailor.lm.prompts import load_prompts

        prompts += load_prompts(args.prompts_file, args.prompt_column, args.prompts_split)
    elif args.prompt_column is not None or args.prompts_split is not None:
        raise TailorError("--prompt-column and --prompts-split need --prompts-file")
    if args.preferences_split is not None and args.preferences is None:
        raise TailorError("--preferences-split needs --preferences")
    pairs = None
    if not method.offline:
        if args.preferences is not None:
            raise TailorError(
                f"--preferences is for the offline methods (dpo, ce-dpo, decoupled-dpo); "
                f"{args.method} samples its own data"
            )
        if reward is None:
            raise TailorError(f"{args.method} needs --reward (the add-on reward to optimise)")
    else:
        from tailor.lm.preferences import load_preferences

        if args.preferences is not None:
            pairs = load_preferences(args.preferences, args.preferences_split)
        elif reward is None:
            raise TailorError(
                f"{args.method} needs --reward (to rank prior samples) or --preferences FILE.jsonl"
            )
    if not args.out:
        from tailor.cli.defaults import new_run_dir

        about = args.reward if args.reward else Path(args.preferences).stem
        args.out = str(new_run_dir(f"lm-{about}", args.method, args.seed))
        print(f"run directory: {args.out}")
    argtypes.check_output_dir_arg(args, args.out)  # not the prior, nor holding an input
    meta = lm_customize(
        args.prior,
        args.method,
        args.out,
        reward=reward,
        pairs=pairs,
        prompts=prompts or [""],
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        overrides=overrides,
        progress=not args.quiet,
        coefficients=given,
        record={
            "rewards_file": args.rewards_file,
            "preferences": args.preferences,
            "prompts_file": args.prompts_file,
            "prompt_column": args.prompt_column,
            "prompts_split": args.prompts_split,
            "preferences_split": args.preferences_split,
        },
        overwrite=args.overwrite,
        allow_pickle_weights=args.allow_pickle_weights,
        resume=args.resume is not None,
        checkpoint_every=args.checkpoint_every,
        tensorboard=not args.no_tensorboard,
        runtime=runtime,  # threads: every core unless --threads (small models: try 1)
    )
    final = meta["final"]
    shown = ", ".join(f"{k} {v:.3f}" for k, v in final.items())
    print(
        f"{args.method}: {shown} (mean of the last 10 steps) in {meta['wall_seconds']:.0f}s "
        f"-> {args.out}"
    )
    return 0


def _overrides(args: argparse.Namespace, offline: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.steps is not None:
        out["steps"] = args.steps
    if args.lr is not None:
        out["lr"] = args.lr
    if args.batch_size is not None:
        out["batch_size"] = args.batch_size
        if not offline:
            out["minibatch_size"] = max(1, args.batch_size // 2)
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tailor.lm.evaluate import EvalSampling, evaluate_model
    from tailor.lm.model import load_model, load_tokenizer
    from tailor.output import write_json

    _positive("--samples", args.samples)
    _positive("--max-new-tokens", args.max_new_tokens)
    reward = _resolve_reward(args)
    if args.json:
        argtypes.check_output_arg(args, args.json)  # before the sampling; not a model's file
    _threads()
    model = load_model(args.model, allow_pickle=args.allow_pickle_weights)
    prior = load_model(args.prior, what="prior", allow_pickle=args.allow_pickle_weights)
    tok = load_tokenizer(args.model, model=model)
    sampling = EvalSampling(
        samples=args.samples,
        prompts=args.prompt or [""],
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
    )
    result = evaluate_model(model, prior, tok, reward, sampling, examples=args.examples)
    result = {"model": str(args.model), "prior": str(args.prior), "reward": reward, **result}
    rows = [
        ("add-on reward (mean)", result["addon"]),
        ("success rate", result["success"]),
        ("prior log-lik per token", result["prior_logp_per_token"]),
        ("KL to prior (nats/seq)", result["kl_to_prior"]),
        ("distinct fraction", result["distinct"]),
        ("mean length (tokens)", result["mean_length"]),
    ]
    print(f"{args.model} vs prior {args.prior}, reward {reward}, {args.samples} samples")
    for name, value in rows:
        print(f"  {name:<26} {value:8.3f}")
    print(
        "  examples: " + ", ".join(repr(s["prompt"] + s["completion"]) for s in result["samples"])
    )
    if args.json:
        write_json(args.json, result)
    return 0


def cmd_bridge(args: argparse.Namespace) -> int:
    from tailor.lm.toy import BridgeConfig, bridge_report
    from tailor.output import write_json

    if args.json:
        argtypes.check_output_arg(args, args.json)
    _threads()
    c = BridgeConfig()
    t0 = time.perf_counter()
    report = bridge_report(c)
    wall = time.perf_counter() - t0
    print(
        f"exactness bridge: toy V={c.vocab} L={c.length}, omega'={c.omega_prime} "
        f"alpha_hat={c.alpha_hat} beta={c.beta} ({wall:.0f}s)"
    )
    print(f"  {'figure':<34} {'value':>12}")
    for key, value in report.items():
        print(f"  {key:<34} {value:12.3e}")
    if args.json:
        write_json(args.json, report)
    return 0
