"""Throughput of tailor's language-model loops against TRL and ``transformers`` (issues 7, 28).

One model for the CPU runs: GPT-2, 4 layers, width 128, character vocabulary (about 0.8M
parameters, fixed-seed init, saved once to a temporary directory that every side loads); CPU,
one thread per process, float32 everywhere. ``--llama`` adds the GRPO comparison on a Llama of
4 layers x 256 built in code (tailor's lean Llama path, :mod:`tailor.lm.llamafast`).

* **GRPO**, completion tokens/s (sampling + rewards + prior log-probs + update):
  ``tailor.algos.lm_ppo.customize_ppo(..., "kl", LMPPOConfig(advantage="grpo",
  kl_estimator="k3-loss"))`` against TRL's ``GRPOTrainer`` (``beta`` with its k3 term in the loss:
  the same objective), same prompts, group size, batch, minibatch, epochs (``num_iterations``),
  longest completion, learning rate, clip and reward function (``bench/_lm_peers.py``); tailor's
  ``residual`` (omega' = 2 beta, alpha_hat = beta) is timed beside them.
* **DPO**, pairs/s and time to the first step on 2,000 pairs: ``customize_offline("dpo")``
  (reference log-probs streamed: computed for the chunks a step draws) against ``DPOTrainer``
  (reference per batch). Both clocks start before the pairs are tokenized. Then the time to the
  first step alone on 20,000 pairs (one run each).
* **Sampling** tokens/s: ``tailor.lm.sampling.sample`` against ``model.generate(do_sample=True)``
  (batch 64, 32 new tokens, eos off), in this process; ``--prior DIR`` adds sampling with eos
  stops from a pretrained model.

GRPO and DPO run each side in its own worker process (``bench/_lm_peers.py``), so the peak
resident memory of each is its own (``VmHWM`` reset per job); the sides alternate round by round
(this was written on a shared 2-core VM) and medians are compared; the load average is printed at
the start and the end, and each rate is also given per CPU-second of its process. Every worker's
first job is a short untimed warm-up. Like-for-like settings are listed in ``_lm_peers.py``.

The last line reads ``grpo_speedup_vs_trl=<x> dpo_speedup_vs_trl=<y>
sampling_speedup_vs_generate=<z>`` (wall-clock medians; ``nan``: not measured, e.g. TRL is not
installed). Install the peers in their own environment (TRL needs ``datasets``, whose
``huggingface-hub<2`` may clash with a newer ``transformers``) and run tailor from it::

    python -m venv /work/venvs/trl && /work/venvs/trl/bin/pip install torch trl 'datasets<5' peft
    OMP_NUM_THREADS=1 PYTHONPATH=src /work/venvs/trl/bin/python bench/lm_throughput.py \\
        [--rounds 3] [--grpo-iterations 6] [--dpo-pairs 2000] [--dpo-steps 20]
        [--dpo-first-step-pairs 20000] [--repeats 5] \\
        [--llama] [--prior priors/lm-names] [--profile-tailor-grpo]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_lm_peers.py

from _lm_peers import (
    DPOSetup,
    GRPOSetup,
    LlamaShape,
    Worker,
    char_gpt2,
    llama,
    loadavg,
    pairs_of,
    run_side,
    save,
    versions,
)
from tailor.lm import gpt2fast
from tailor.lm.sampling import sample

BATCH_SAMPLE = 64
NEW_TOKENS = 32


class Timer:
    """Wall and process CPU seconds of a block."""

    def __enter__(self) -> Timer:
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def bench_sampling(model, tok, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """Interleaved calls: tailor's sampler (lean path and model-forward path) and ``generate``;
    (tokens/s wall, tokens/s CPU) of each timed call."""
    prompts = [""] * BATCH_SAMPLE
    bos = torch.full((BATCH_SAMPLE, 1), tok.bos_token_id)
    kwargs = dict(
        input_ids=bos,
        attention_mask=torch.ones_like(bos),
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        max_new_tokens=NEW_TOKENS,
        eos_token_id=None,
        pad_token_id=tok.pad_token_id,
    )
    n = BATCH_SAMPLE * NEW_TOKENS
    # The dense arithmetic any sampler of this model must do: per new token and layer the four
    # matrix products (qkv, attention output, MLP in, MLP out) at batch 64; the rest
    # (attention over the cache, layer norms, GELU, the draw) is left out.
    mats = [
        (b.attn.c_attn.weight, b.attn.c_proj.weight, b.mlp.c_fc.weight, b.mlp.c_proj.weight)
        for b in model.transformer.h
    ]
    xh = torch.randn(BATCH_SAMPLE, model.config.n_embd)
    xi = torch.randn(BATCH_SAMPLE, mats[0][2].shape[1])

    def matmul_floor() -> None:
        for _ in range(NEW_TOKENS):
            for qkv, proj, fc, out in mats:
                _ = (xh @ qkv, xh @ proj, xh @ fc, xi @ out)

    out: dict[str, list[tuple[float, float]]] = {
        "tailor": [],
        "tailor_hf": [],
        "generate": [],
        "floor": [],
    }
    with torch.no_grad():
        for r in range(repeats + 1):  # the first round warms up and is dropped
            g = torch.Generator().manual_seed(r)
            with Timer() as t:
                s = sample(model, tok, prompts, NEW_TOKENS, g, stop_at_eos=False)
            assert int(s.mask.sum()) == n
            if r:
                out["tailor"].append((n / t.wall, n / t.cpu))
            g = torch.Generator().manual_seed(r)
            with Timer() as t:
                s = sample(model, tok, prompts, NEW_TOKENS, g, stop_at_eos=False, fast=False)
            assert int(s.mask.sum()) == n
            if r:
                out["tailor_hf"].append((n / t.wall, n / t.cpu))
            torch.manual_seed(r)
            with Timer() as t:
                gen = model.generate(**kwargs)
            assert gen.shape == (BATCH_SAMPLE, 1 + NEW_TOKENS)
            if r:
                out["generate"].append((n / t.wall, n / t.cpu))
            with Timer() as t:
                matmul_floor()
            if r:
                out["floor"].append((n / t.wall, n / t.cpu))
    return out


def bench_prior_sampling(path: str, repeats: int, n: int = 512, new: int = 16):
    """Sampling with eos stops on a pretrained prior (what ``tailor lm evaluate`` and PPO do):
    ``n`` completions of the empty prompt, at most ``new`` tokens, interleaved with
    ``generate`` (eos on); (samples/s wall, samples/s CPU) of each timed call."""
    from tailor.lm.model import load_model, load_tokenizer

    model, tok = load_model(path, "prior"), load_tokenizer(path, "prior")
    bos = torch.full((n, 1), tok.bos_token_id)
    kwargs = dict(
        input_ids=bos,
        attention_mask=torch.ones_like(bos),
        do_sample=True,
        top_k=0,
        top_p=1.0,
        max_new_tokens=new,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    out: dict[str, list[tuple[float, float]]] = {"tailor": [], "tailor_hf": [], "generate": []}
    tokens: dict[str, list[float]] = {k: [] for k in out}
    with torch.no_grad():
        for r in range(repeats + 1):
            for name, fast in (("tailor", True), ("tailor_hf", False)):
                with Timer() as t:
                    s = sample(
                        model, tok, [""] * n, new, torch.Generator().manual_seed(r), fast=fast
                    )
                if r:
                    out[name].append((n / t.wall, n / t.cpu))
                    tokens[name].append(float(s.mask.sum()) / n)
            torch.manual_seed(r)
            with Timer() as t:
                gen = model.generate(**kwargs)
            if r:
                out["generate"].append((n / t.wall, n / t.cpu))
                is_eos = (gen[:, 1:] == tok.eos_token_id).long()
                upto_eos = (is_eos.cumsum(1) - is_eos) == 0  # tokens up to the first eos
                tokens["generate"].append(float(upto_eos.sum()) / n)
    return out, {k: statistics.mean(v) for k, v in tokens.items()}


def med_rate(runs: list[tuple[float, float]], i: int) -> float:
    return statistics.median(r[i] for r in runs) if runs else float("nan")


def line(name: str, runs: list[tuple[float, float]], unit: str) -> str:
    walls = ", ".join(f"{r[0]:.0f}" for r in runs)
    return (
        f"{name}: {med_rate(runs, 0):.1f} {unit} (median of {len(runs)}: {walls}); "
        f"{med_rate(runs, 1):.1f} {unit} per CPU-second"
    )


def dpo_rows(tok, setup: DPOSetup) -> tuple[float, float]:
    """Mean rows per DPO step (chosen and rejected of ``setup.batch`` pairs, seed 0 batches):
    the packed rows tailor's lean path computes, and the padded rows of a batch padded to its
    longest sequence (as TRL's collator pads)."""
    from tailor.algos.dpo import Responses

    pairs = pairs_of(setup, tok)
    n = len(pairs)
    data = Responses.encode(
        tok,
        [p for p, _, _ in pairs] * 2,
        [c for _, c, _ in pairs] + [r for _, _, r in pairs],
        setup.max_len,
    )
    g = torch.Generator().manual_seed(0)
    packed, padded = [], []
    for _ in range(setup.steps):
        idx = torch.randint(0, n, (setup.batch,), generator=g)
        d = data.take(torch.cat([idx, idx + n]))
        pk = gpt2fast._pack(d.prompt_ids, d.prompt_mask, d.tokens, d.mask, heads=4)
        packed.append(len(pk.ids))
        padded.append(d.tokens.shape[0] * (d.prompt_mask.sum(1) + d.mask.sum(1)).max().item())
    return statistics.mean(packed), statistics.mean(padded)


def first_step_reference_rows(setup: DPOSetup, chunk: int = 64) -> int:
    """Responses whose prior log-probs tailor computes before its first DPO step: every chunk
    of ``chunk`` rows (:class:`tailor.algos.dpo.ReferenceLogp`) that holds a chosen (row ``i``)
    or rejected (row ``i + n``) response of the first batch, drawn as ``customize_offline`` draws
    it (seed 0, pairs given)."""
    n = setup.pairs
    idx = torch.randint(0, n, (setup.batch,), generator=torch.Generator().manual_seed(0))
    chunks = torch.unique(torch.cat([idx, idx + n]) // chunk).tolist()
    return sum(min(chunk, 2 * n - chunk * j) for j in chunks)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rate_line(name: str, runs: list[dict], unit: str, key: str) -> str:
    """``name: median rate (each run's); per CPU-second; first step; peak RSS``."""
    if not runs:
        return f"{name}: not measured"
    walls = ", ".join(f"{r[key] / r['wall']:.0f}" for r in runs)
    return (
        f"{name}: {med([r[key] / r['wall'] for r in runs]):.1f} {unit} (median of {len(runs)}: "
        f"{walls}); {med([r[key] / r['cpu'] for r in runs]):.1f} {unit} per CPU-second; "
        f"first step at {med([r['first_step'] for r in runs]):.2f} s; peak RSS "
        f"{med([r['peak_rss_mb'] for r in runs]):.0f} MB (worker idle "
        f"{runs[0]['rss_idle_mb']:.0f} MB)"
    )


def interleave(jobs: dict, model_dir: str, rounds: int, warm) -> dict[str, list[dict]]:
    """``jobs``: name -> (worker, setup). One untimed warm-up job (``warm(setup)``) per name,
    then ``rounds`` rounds that run every name once, in order."""
    for w, s in jobs.values():
        w.run(warm(s), model_dir)
    out: dict[str, list[dict]] = {k: [] for k in jobs}
    for _ in range(rounds):
        for name, (w, s) in jobs.items():
            out[name].append(w.run(s, model_dir))
    return out


def bench_grpo(model_dir: str, setup: GRPOSetup, rounds: int, have_trl: bool, label: str):
    """Interleaved GRPO rounds of tailor kl, tailor residual and TRL; prints, returns runs."""
    tailor, trl = Worker("tailor_grpo"), Worker("trl_grpo") if have_trl else None
    jobs = {
        "tailor kl": (tailor, setup),
        "tailor residual": (tailor, replace(setup, method="residual")),
    }
    if trl is not None:
        jobs["trl"] = (trl, setup)
    try:
        runs = interleave(jobs, model_dir, rounds, lambda s: replace(s, iterations=1))
    finally:
        for w in (tailor, trl):
            if w is not None:
                w.close()
    s = setup
    print(
        f"grpo {label}: {s.prompts} prompts of {s.prompt_len[0]}-{s.prompt_len[1]} symbols, "
        f"group {s.group}, batch {s.batch}, minibatch {s.minibatch}, epochs {s.epochs}, "
        f"max {s.max_new} new tokens, {s.iterations} iterations ({s.steps} optimizer steps), "
        f"beta {s.beta}, lr {s.lr}"
    )
    print(
        "  (first step: tailor's is the end of its first iteration, all its "
        f"{s.steps // s.iterations} optimizer steps; TRL's the end of its first optimizer step)"
    )
    names = {"tailor kl": "tailor kl (k3-loss)", "tailor residual": "tailor residual (k3-loss)",
             "trl": "trl GRPOTrainer"}  # fmt: skip
    for k, r in runs.items():
        print(rate_line(f"grpo {label} {names[k]}", r, "tokens/s", "tokens"))
        length = med([x["tokens"] / (s.batch * s.iterations) for x in r])
        per_it = med([x["wall"] / s.iterations for x in r])
        extra = f", trainer setup {med([x['setup'] for x in r]):.2f} s" if k == "trl" else ""
        print(f"  mean completion length {length:.2f} tokens, {per_it:.2f} s per iteration{extra}")
    return runs


def bench_dpo(model_dir: str, setup: DPOSetup, rounds: int, have_trl: bool):
    """Interleaved DPO rounds of tailor and TRL; prints, returns runs."""
    tailor, trl = Worker("tailor_dpo"), Worker("trl_dpo") if have_trl else None
    jobs = {"tailor": (tailor, setup)}
    if trl is not None:
        jobs["trl"] = (trl, setup)
    try:
        runs = interleave(jobs, model_dir, rounds, lambda s: replace(s, pairs=128, steps=2))
    finally:
        for w in (tailor, trl):
            if w is not None:
                w.close()
    s = setup
    print(
        f"dpo: {s.pairs} pairs (chosen and rejected of {s.response_len[0]}-{s.response_len[1]} "
        f"symbols), batch {s.batch}, {s.steps} steps, beta {s.beta}, lr {s.lr}; the clock "
        "starts before the pairs are tokenized"
    )
    names = {"tailor": "tailor (streamed reference)", "trl": "trl DPOTrainer (fp32)"}
    for k, r in runs.items():
        print(rate_line(f"dpo {names[k]}", r, "pairs/s", "pairs"))
        steady = med(
            [x["pairs"] * (s.steps - 1) / s.steps / (x["wall"] - x["first_step"]) for x in r]
        )
        print(f"  after the first step: {steady:.1f} pairs/s")
    print(
        f"dpo tailor's first step computed the prior's log-probs of "
        f"{first_step_reference_rows(s)} of {2 * s.pairs} responses (chunks of 64 rows)"
    )
    return runs


def dpo_first_step(model_dir: str, setup: DPOSetup, have_trl: bool) -> None:
    """Time to the first step alone (one step, one run per side) on ``setup.pairs`` pairs."""
    s = replace(setup, steps=1)
    for side in ("tailor_dpo", "trl_dpo") if have_trl else ("tailor_dpo",):
        w = Worker(side)
        try:
            r = w.run(s, model_dir)
        finally:
            w.close()
        print(
            f"dpo first step on {s.pairs} pairs, {side.split('_')[0]}: {r['first_step']:.2f} s "
            f"(from before tokenizing; peak RSS {r['peak_rss_mb']:.0f} MB)"
        )
    print(
        f"  tailor computed the prior's log-probs of {first_step_reference_rows(s)} of "
        f"{2 * s.pairs} responses for it"
    )


def profile_grpo(model_dir: str, setup: GRPOSetup, have_trl: bool) -> None:
    """cProfile of one GRPO run of each side in this process (after a warm-up), top entries."""
    import cProfile
    import io
    import pstats

    for side in ("tailor_grpo", "trl_grpo") if have_trl else ("tailor_grpo",):
        run_side(side, replace(setup, iterations=1), model_dir)
        prof = cProfile.Profile()
        prof.enable()
        run_side(side, setup, model_dir)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        print(f"profile of {side}:\n{buf.getvalue()}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved GRPO and DPO rounds")
    parser.add_argument("--grpo-iterations", type=int, default=6)
    parser.add_argument("--dpo-pairs", type=int, default=2000)
    parser.add_argument("--dpo-steps", type=int, default=20)
    parser.add_argument(
        "--dpo-first-step-pairs", type=int, default=20000, help="0: skip this one-step run"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed sampling calls per side")
    parser.add_argument("--llama", action="store_true", help="also GRPO on a 4x256 Llama")
    parser.add_argument("--prior", help="also time eos-stopped sampling on this model directory")
    parser.add_argument("--profile", action="store_true", help="cProfile one GRPO run per side")
    parser.add_argument("--skip", default="", help="comma-separated: grpo, dpo, sampling")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(1)
    wall0 = time.perf_counter()
    print(f"load average at start: {loadavg()}")
    print(f"versions: {versions()}")
    try:
        import trl  # noqa: F401

        have_trl = True
    except ImportError:
        have_trl = False
        print("trl: not measured (not installed: pip install trl 'datasets<5')")
    model, tok = char_gpt2()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT-2 4x128, vocab {len(tok)}, {n_params} parameters, CPU, 1 thread, float32")
    grpo_setup = GRPOSetup(iterations=args.grpo_iterations)
    dpo_setup = DPOSetup(pairs=args.dpo_pairs, steps=args.dpo_steps)
    nan: dict[str, list[dict]] = {"tailor kl": [], "trl": [], "tailor": []}
    grpo, dpo, llama_runs = nan, nan, nan
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save(model, tok, Path(tmp) / "gpt2")
        if "grpo" not in skip:
            grpo = bench_grpo(model_dir, grpo_setup, args.rounds, have_trl, "gpt2")
        if args.llama:
            shape = LlamaShape(vocab_size=len(tok), hidden_size=256, intermediate_size=688,
                               num_hidden_layers=4, num_attention_heads=4,
                               max_position_embeddings=64)  # fmt: skip
            lm = llama(shape, tok)
            print(f"model: Llama 4x256, {sum(p.numel() for p in lm.parameters())} parameters")
            llama_dir = save(lm, tok, Path(tmp) / "llama")
            llama_runs = bench_grpo(llama_dir, grpo_setup, args.rounds, have_trl, "llama")
        if "dpo" not in skip:
            dpo = bench_dpo(model_dir, dpo_setup, args.rounds, have_trl)
            packed, padded = dpo_rows(tok, dpo_setup)
            print(
                f"dpo rows per step (mean): tailor packed {packed:.0f}; padded to the batch's "
                f"longest {padded:.0f} (TRL: + the same again for the reference)"
            )
            if args.dpo_first_step_pairs:
                big = replace(dpo_setup, pairs=args.dpo_first_step_pairs)
                dpo_first_step(model_dir, big, have_trl)
        if args.profile:
            profile_grpo(model_dir, grpo_setup, have_trl)
    smp = {"tailor": [], "generate": []}
    if "sampling" not in skip:
        smp = bench_sampling(model, tok, args.repeats)
        print(f"sampling: batch {BATCH_SAMPLE}, {NEW_TOKENS} new tokens per call")
        print(line("sampling tailor", smp["tailor"], "tokens/s"))
        print(line("sampling tailor (model forward)", smp["tailor_hf"], "tokens/s"))
        print(line("sampling transformers generate", smp["generate"], "tokens/s"))
        print(line("sampling bound: the dense matmuls alone", smp["floor"], "tokens/s"))
    if args.prior:
        pr, lengths = bench_prior_sampling(args.prior, args.repeats)
        print(f"sampling with eos stops, {args.prior}: 512 completions of '', at most 16 tokens")
        for name, label in (("tailor", "tailor"), ("tailor_hf", "tailor (model forward)"),
                            ("generate", "transformers generate")):  # fmt: skip
            print(line(f"eos sampling {label}", pr[name], "samples/s"))
        print("mean tokens per sample: " + ", ".join(f"{k} {v:.2f}" for k, v in lengths.items()))

    def ratio(runs: dict, ours: str, key: str) -> float:
        a = med([r[key] / r["wall"] for r in runs[ours]])
        return a / med([r[key] / r["wall"] for r in runs.get("trl", [])])  # nan without TRL

    if args.llama:
        print(f"llama grpo_speedup_vs_trl={ratio(llama_runs, 'tailor kl', 'tokens'):.2f}")
    sampling = med_rate(smp["tailor"], 0) / med_rate(smp["generate"], 0)
    print(f"load average at end: {loadavg()}; bench wall {time.perf_counter() - wall0:.0f} s")
    print(
        f"grpo_speedup_vs_trl={ratio(grpo, 'tailor kl', 'tokens'):.2f} "
        f"dpo_speedup_vs_trl={ratio(dpo, 'tailor', 'pairs'):.2f} "
        f"sampling_speedup_vs_generate={sampling:.2f}"
    )


if __name__ == "__main__":
    main()
