"""Throughput of tailor's language-model loops against the reference libraries (issue 7).

One run, one model (GPT-2, 4 layers, width 128, character vocabulary: about 0.8M parameters,
freshly initialised with a fixed seed, so no pretrained model is needed), CPU, one thread,
float32 everywhere:

* DPO training pairs/s: ``tailor.algos.dpo.customize_offline(method="dpo")`` against TRL's
  ``DPOTrainer`` (only if ``trl`` is importable: ``pip install 'tailor-rl[bench]'``), same
  preference pairs (chosen and rejected of 4 to 30 characters, so sequences of up to 32 tokens
  with bos and eos), batch 32, same number of steps. Both timings include the reference model's
  log-probs (tailor computes them once before training, TRL per batch). TRL runs in float32
  without activation checkpointing (like tailor); ``--trl-defaults`` also times it once with its
  own defaults (bf16 autocast, activation checkpointing).
* Sampling tokens/s: ``tailor.lm.sampling.sample`` (KV cache, also records log-probs) against
  ``model.generate(do_sample=True)``, batch 64, 32 new tokens each (eos disabled on both sides so
  the numbers of tokens are equal).

"tailor (model forward)" is tailor's same loop with its lean GPT-2 path switched off
(:func:`tailor.lm.gpt2fast.disabled`), so every number goes through ``transformers``' own
``forward`` (for DPO, what tailor did before the lean path existed). ``--prior DIR`` adds
sampling with eos stops from a pretrained model, and every run prints the rate of the dense
matrix products alone (a bound for any sampler of this model) and the rows a DPO step computes.

The machine this was written on is a shared 2-core VM, so the sides are measured interleaved,
round by round, and the medians compared; the load average is printed at the start and the end.
Each line also gives the rate per CPU-second of the process (less sensitive to other load).

The last line reads ``dpo_speedup_vs_trl=<x> sampling_speedup_vs_generate=<y>`` (wall-clock
medians); ``nan`` marks a side that was not measured (TRL not installed).

    python bench/lm_throughput.py [--dpo-steps 20] [--rounds 3] [--repeats 5] [--trl-defaults]
        [--prior priors/lm-names]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import string
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from tailor.algos.dpo import LMDPOConfig, customize_offline
from tailor.lm import gpt2fast
from tailor.lm.model import PretrainConfig, build_char_tokenizer, new_char_model
from tailor.lm.preferences import PreferencePair
from tailor.lm.sampling import sample

BATCH_DPO = 32
BATCH_SAMPLE = 64
NEW_TOKENS = 32


def make_model():
    tok = build_char_tokenizer(string.ascii_lowercase)
    cfg = PretrainConfig(n_layer=4, n_embd=128, n_head=4, n_positions=64, dropout=0.0)
    model = new_char_model(len(tok), cfg, tok).eval()
    return model, tok


def make_pairs(n: int, seed: int = 0) -> list[PreferencePair]:
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 30)))

    return [PreferencePair("", word(), word()) for _ in range(n)]


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


class Timer:
    """Wall and process CPU seconds of a block."""

    def __enter__(self) -> Timer:
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def bench_ours_dpo(model, tok, pairs, steps: int, fast: bool = True) -> tuple[float, float]:
    """(pairs/s wall, pairs/s CPU) of ``customize_offline``: data encoding, the prior's
    log-probs and ``steps`` Adam steps of batch 32."""
    cfg = LMDPOConfig(steps=steps, batch_size=BATCH_DPO, lr=1e-4, max_new_tokens=NEW_TOKENS)
    with Timer() as t:
        if fast:
            customize_offline(model, tok, "dpo", cfg, pairs=pairs, beta=0.1)
        else:
            with gpt2fast.disabled():
                customize_offline(model, tok, "dpo", cfg, pairs=pairs, beta=0.1)
    return steps * BATCH_DPO / t.wall, steps * BATCH_DPO / t.cpu


def bench_trl_dpo(model, tok, pairs, steps: int, defaults: bool = False) -> tuple[float, float]:
    """(pairs/s wall, pairs/s CPU) of ``DPOTrainer.train()`` for ``steps`` steps of batch 32
    (the dataset is tokenized when the trainer is built, before the clock starts)."""
    import copy

    import datasets
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()

    data = Dataset.from_list(
        [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    )
    like_for_like = {} if defaults else {"bf16": False, "gradient_checkpointing": False}
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=BATCH_DPO,
            max_steps=steps,
            max_length=NEW_TOKENS,
            learning_rate=1e-4,
            beta=0.1,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
            disable_tqdm=True,
            # TRL 1.x defaults to bf16 autocast and activation checkpointing. Without bf16
            # matmul units bf16 is several times slower on CPU than float32, and checkpointing
            # trades compute for memory this model does not need; tailor runs float32 without
            # checkpointing, so both are off for the like-for-like comparison.
            **like_for_like,
        )
        policy = copy.deepcopy(model).train()
        for p in policy.parameters():  # customize_offline froze the shared prior's weights
            p.requires_grad_(True)
        trainer = DPOTrainer(
            model=policy,
            ref_model=copy.deepcopy(model),
            args=args,
            train_dataset=data,
            processing_class=tok,
        )
        with Timer() as t, contextlib.redirect_stdout(io.StringIO()):  # its summary dict
            trainer.train()
    return steps * BATCH_DPO / t.wall, steps * BATCH_DPO / t.cpu


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


def dpo_rows(tok, pairs, steps: int) -> tuple[float, float]:
    """Mean rows per DPO step (chosen and rejected of 32 pairs, seed 0 batches): the packed
    rows tailor's lean path computes, and the padded rows of a batch padded to its longest
    sequence (as TRL's collator pads)."""
    from tailor.algos.dpo import Responses

    n = len(pairs)
    data = Responses.encode(
        tok,
        [p.prompt for p in pairs] * 2,
        [p.chosen for p in pairs] + [p.rejected for p in pairs],
        32,
    )
    g = torch.Generator().manual_seed(0)
    packed, padded = [], []
    for _ in range(steps):
        idx = torch.randint(0, n, (BATCH_DPO,), generator=g)
        d = data.take(torch.cat([idx, idx + n]))
        pk = gpt2fast._pack(d.prompt_ids, d.prompt_mask, d.tokens, d.mask, heads=4)
        packed.append(len(pk.ids))
        padded.append(d.tokens.shape[0] * (d.prompt_mask.sum(1) + d.mask.sum(1)).max().item())
    return statistics.mean(packed), statistics.mean(padded)


def med(runs: list[tuple[float, float]], i: int) -> float:
    return statistics.median(r[i] for r in runs) if runs else float("nan")


def line(name: str, runs: list[tuple[float, float]], unit: str) -> str:
    walls = ", ".join(f"{r[0]:.0f}" for r in runs)
    return (
        f"{name}: {med(runs, 0):.1f} {unit} (median of {len(runs)}: {walls}); "
        f"{med(runs, 1):.1f} {unit} per CPU-second"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpo-steps", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved DPO rounds")
    parser.add_argument("--repeats", type=int, default=5, help="timed sampling calls per side")
    parser.add_argument(
        "--trl-defaults", action="store_true", help="also time TRL once with its own defaults"
    )
    parser.add_argument(
        "--prior", help="also time sampling with eos stops on this pretrained model directory"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    wall0 = time.perf_counter()
    print(f"load average at start: {loadavg()}")
    model, tok = make_model()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT-2 4x128, vocab {len(tok)}, {n_params} parameters, CPU, 1 thread, float32")

    pairs = make_pairs(args.pairs)
    try:
        import trl

        have_trl = True
    except ImportError:
        have_trl = False
        print("dpo trl: not measured (trl is not installed: pip install 'tailor-rl[bench]')")
    # Warm-up (first-call costs: imports, allocator, MKL), not timed.
    bench_ours_dpo(model, tok, pairs[:64], 2)
    bench_ours_dpo(model, tok, pairs[:64], 2, fast=False)
    if have_trl:
        bench_trl_dpo(model, tok, pairs[:64], 2)
    dpo: dict[str, list[tuple[float, float]]] = {"tailor": [], "tailor_hf": [], "trl": []}
    for _ in range(args.rounds):
        dpo["tailor"].append(bench_ours_dpo(model, tok, pairs, args.dpo_steps))
        dpo["tailor_hf"].append(bench_ours_dpo(model, tok, pairs, args.dpo_steps, fast=False))
        if have_trl:
            dpo["trl"].append(bench_trl_dpo(model, tok, pairs, args.dpo_steps))
    print(f"dpo: {args.pairs} pairs, batch {BATCH_DPO}, {args.dpo_steps} steps per run")
    print(line("dpo tailor", dpo["tailor"], "pairs/s"))
    print(line("dpo tailor (model forward)", dpo["tailor_hf"], "pairs/s"))
    if have_trl:
        print(line(f"dpo trl {trl.__version__} DPOTrainer (fp32)", dpo["trl"], "pairs/s"))
    packed, padded = dpo_rows(tok, pairs, args.dpo_steps)
    print(
        f"dpo rows per step (mean): tailor packed {packed:.0f} (+ the prior's, once per pair); "
        f"padded to the batch's longest {padded:.0f} (+ the same again for the reference)"
    )
    if have_trl and args.trl_defaults:
        d = [bench_trl_dpo(model, tok, pairs, args.dpo_steps, defaults=True)]
        print(line("dpo trl DPOTrainer, its defaults (bf16, checkpointing)", d, "pairs/s"))

    smp = bench_sampling(model, tok, args.repeats)
    print(f"sampling: batch {BATCH_SAMPLE}, {NEW_TOKENS} new tokens per call")
    print(line("sampling tailor", smp["tailor"], "tokens/s"))
    print(line("sampling tailor (model forward)", smp["tailor_hf"], "tokens/s"))
    print(line("sampling transformers generate", smp["generate"], "tokens/s"))
    print(line("sampling bound: the dense matmuls alone", smp["floor"], "tokens/s"))
    if args.prior:
        pr, lengths = bench_prior_sampling(args.prior, args.repeats)
        print(f"sampling with eos stops, {args.prior}: 512 completions of '', at most 16 tokens")
        for name, label in (
            ("tailor", "tailor"),
            ("tailor_hf", "tailor (model forward)"),
            ("generate", "transformers generate"),
        ):
            print(line(f"eos sampling {label}", pr[name], "samples/s"))
        print("mean tokens per sample: " + ", ".join(f"{k} {v:.2f}" for k, v in lengths.items()))
    print(f"load average at end: {loadavg()}; bench wall {time.perf_counter() - wall0:.0f} s")
    print(
        f"dpo_speedup_vs_trl={med(dpo['tailor'], 0) / med(dpo['trl'], 0):.2f} "
        f"sampling_speedup_vs_generate={med(smp['tailor'], 0) / med(smp['generate'], 0):.2f}"
    )


if __name__ == "__main__":
    main()
