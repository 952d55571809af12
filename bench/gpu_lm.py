"""tailor against TRL on one GPU: a ~0.4B-parameter Llama-shaped model with LoRA in bfloat16
(issue 28), Residual GRPO and DPO, one prepared command (< 10 minutes on an H100)::

    python bench/gpu_lm.py --out $OUT/gpu_lm.md

(run from the repository root with tailor importable, e.g. ``PYTHONPATH=src``, in an environment
with ``trl``, ``datasets<5`` and ``peft``). ``--tiny`` runs the same code path at toy size on the
CPU in seconds (a smoke check: ``OMP_NUM_THREADS=1 PYTHONPATH=src python bench/gpu_lm.py --tiny
--out results/lm/gpu_lm_tiny.md``).

The model is built in code (``LlamaConfig(hidden_size=1024, intermediate_size=2816,
num_hidden_layers=24, num_attention_heads=16, vocab_size=32000)``, random init, seed 0; no
download) over a word-level tokenizer of 32,000 ids, saved once in bfloat16; every side loads
it from there. Both libraries train a LoRA adapter (r 16, alpha 32, every linear layer but the
head) on the frozen bfloat16 model under bfloat16 autocast, with the adapter-off model as the
reference, no activation checkpointing, dropout off, the same reward function, data and
settings (``bench/_lm_peers.py``):

* GRPO: tailor ``residual`` (omega' = 2 beta, alpha_hat = beta) and ``kl`` (beta; TRL's
  objective) with group advantages and the k3 term in the loss, against TRL's ``GRPOTrainer``
  (``beta``); completion tokens/s of sampling + update (a random model rarely draws eos, so
  completions run to the longest length on both sides).
* DPO: tailor ``customize_offline("dpo")`` against ``DPOTrainer``; pairs/s with the clock from
  before tokenizing, and the time to the first step.

Each side: one short untimed warm-up run, then ``--rounds`` timed runs (sides alternating);
medians. Peak GPU memory is ``torch.cuda.max_memory_allocated`` of the run (reset before it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_lm_peers.py
from _lm_peers import (
    DPOSetup,
    GRPOSetup,
    LlamaShape,
    Machine,
    llama,
    loadavg,
    run_side,
    save,
    versions,
    word_tokenizer,
)
from tailor.output import write_text

FULL = LlamaShape()  # 32000 x 1024, 24 layers x 16 heads, MLP 2816
TINY = LlamaShape(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256)  # fmt: skip


def setups(tiny: bool, machine: Machine) -> tuple[GRPOSetup, DPOSetup]:
    """The GRPO and DPO runs: GPU size, or a few seconds on a CPU with ``tiny``."""
    grpo = GRPOSetup(prompts=64, prompt_len=(8, 16), group=8, batch=64, minibatch=32, epochs=2,
                     max_new=128, iterations=3, beta=0.04, method="residual", lr=1e-5,
                     machine=machine)  # fmt: skip
    dpo = DPOSetup(pairs=1024, prompt_len=(8, 16), response_len=(32, 96), batch=16, steps=16,
                   beta=0.1, lr=1e-5, max_len=128, machine=machine)  # fmt: skip
    if tiny:
        grpo = replace(grpo, batch=16, minibatch=8, max_new=16, iterations=2)
        dpo = replace(dpo, pairs=64, response_len=(4, 16), batch=8, steps=3, max_len=24)
    return grpo, dpo


def measure(sides: dict, model_dir: str, rounds: int, warm) -> dict[str, list[dict]]:
    """``sides``: name -> (side, setup). A warm-up run (``warm(setup)``) each, then ``rounds``
    rounds of every side in turn; the runs of each name."""
    for side, s in sides.values():
        run_side(side, warm(s), model_dir)
    out: dict[str, list[dict]] = {k: [] for k in sides}
    for _ in range(rounds):
        for name, (side, s) in sides.items():
            out[name].append(run_side(side, s, model_dir))
    return out


def row(name: str, runs: list[dict], key: str) -> str:
    """A markdown table row: rate, first step, wall, peak GPU and RSS, trained weights."""
    md = statistics.median
    gpu = md([r["peak_gpu_mb"] for r in runs]) if "peak_gpu_mb" in runs[0] else float("nan")
    return (
        f"| {name} | {md([r[key] / r['wall'] for r in runs]):.1f} | "
        f"{md([r['first_step'] for r in runs]):.2f} | {md([r['wall'] for r in runs]):.1f} | "
        f"{gpu:.0f} | {md([r['peak_rss_mb'] for r in runs]):.0f} | {runs[0]['trainable']:.0f} |"
    )


def ratio(runs: dict, ours: str, key: str) -> float:
    md = statistics.median
    return md([r[key] / r["wall"] for r in runs[ours]]) / md(
        [r[key] / r["wall"] for r in runs["trl"]]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the markdown report to write")
    parser.add_argument("--tiny", action="store_true", help="toy size on the CPU (smoke check)")
    parser.add_argument("--rounds", type=int, default=1, help="timed runs per side")
    parser.add_argument("--lora-r", type=int, default=16)
    args = parser.parse_args()
    t0 = time.perf_counter()
    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    if not cuda:
        torch.set_num_threads(1)
    machine = Machine(device=device, dtype="bfloat16", lora_r=args.lora_r)
    shape = TINY if args.tiny else FULL
    grpo_s, dpo_s = setups(args.tiny, machine)
    lines = [f"load average at start: {loadavg()}", f"versions: {versions()}"]
    where = torch.cuda.get_device_name() if cuda else "CPU, 1 thread"
    tok = word_tokenizer(shape.vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        model = llama(shape, tok, torch.bfloat16, device)
        n = sum(p.numel() for p in model.parameters())
        model_dir = save(model, tok, Path(tmp) / "llama")
        del model
        lines.append(f"device: {where}; model: Llama {asdict(shape)}, {n / 1e6:.1f}M parameters,")
        lines.append(f"  bfloat16 weights, LoRA r {args.lora_r} (alpha {2 * args.lora_r})")
        grpo = measure(
            {
                "tailor residual": ("tailor_grpo", grpo_s),
                "tailor kl": ("tailor_grpo", replace(grpo_s, method="kl")),
                "trl": ("trl_grpo", grpo_s),
            },
            model_dir, args.rounds, lambda s: replace(s, iterations=1),
        )  # fmt: skip
        dpo = measure(
            {"tailor": ("tailor_dpo", dpo_s), "trl": ("trl_dpo", dpo_s)},
            model_dir, args.rounds, lambda s: replace(s, steps=2),
        )  # fmt: skip
    g, d = grpo_s, dpo_s
    head = "| side | {} | first step (s) | wall (s) | peak GPU MB | peak RSS MB | trained weights |"
    lines += [
        "",
        f"GRPO: {g.prompts} prompts of {g.prompt_len} words, group {g.group}, batch {g.batch}, "
        f"minibatch {g.minibatch}, epochs {g.epochs}, {g.max_new} new tokens, {g.iterations} "
        f"iterations, beta {g.beta}, lr {g.lr}; median of {args.rounds}",
        "",
        head.format("tokens/s"),
        "|---|---|---|---|---|---|---|",
        row("tailor residual GRPO (k3-loss)", grpo["tailor residual"], "tokens"),
        row("tailor kl GRPO (k3-loss)", grpo["tailor kl"], "tokens"),
        row("TRL GRPOTrainer", grpo["trl"], "tokens"),
        "",
        f"DPO: {d.pairs} pairs, prompts of {d.prompt_len} words, responses of "
        f"{d.response_len}, batch {d.batch}, {d.steps} steps, beta {d.beta}; the clock starts "
        "before tokenizing",
        "",
        head.format("pairs/s"),
        "|---|---|---|---|---|---|---|",
        row("tailor DPO (streamed reference)", dpo["tailor"], "pairs"),
        row("TRL DPOTrainer", dpo["trl"], "pairs"),
        "",
        f"load average at end: {loadavg()}; wall {time.perf_counter() - t0:.0f} s",
        f"grpo_speedup_vs_trl={ratio(grpo, 'tailor kl', 'tokens'):.2f} "
        f"residual_grpo_speedup_vs_trl={ratio(grpo, 'tailor residual', 'tokens'):.2f} "
        f"dpo_speedup_vs_trl={ratio(dpo, 'tailor', 'pairs'):.2f}",
    ]
    text = "\n".join(lines)
    print(text)
    command = " ".join(["python", *sys.argv])
    write_text(args.out, f"# bench/gpu_lm.py\n\n    {command}\n\n```\n{text}\n```\n")


if __name__ == "__main__":
    main()
