"""Throughput of tailor's language-model loops against the reference libraries (issue 7).

One run, one model (GPT-2, 4 layers, width 128, character vocabulary: about 0.8M parameters,
freshly initialised with a fixed seed, so no pretrained model is needed), CPU, one thread:

* DPO training pairs/s: ``tailor.lm.dpo.customize_offline(method="dpo")`` against TRL's
  ``DPOTrainer`` (only if ``trl`` is importable: ``pip install 'tailor-rl[bench]'``), same
  preference pairs (chosen and rejected of 4 to 30 characters, so sequences of up to 32 tokens
  with bos and eos), batch 32, same number of steps. Both timings include the reference model's
  log-probs (tailor computes them once before training, TRL per batch).
* Sampling tokens/s: ``tailor.lm.sampling.sample`` (KV cache, also records log-probs) against
  ``model.generate(do_sample=True)``, batch 64, 32 new tokens each (eos disabled on both sides so
  the numbers of tokens are equal).

The last line reads ``dpo_speedup_vs_trl=<x> sampling_speedup_vs_generate=<y>``; ``nan`` marks a
side that was not measured (TRL not installed).

    python bench/lm_throughput.py [--dpo-steps 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from tailor.lm.dpo import LMDPOConfig, customize_offline
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


def bench_ours_dpo(model, tok, pairs, steps: int) -> float:
    cfg = LMDPOConfig(steps=steps, batch_size=BATCH_DPO, lr=1e-4, max_new_tokens=NEW_TOKENS)
    t0 = time.perf_counter()
    customize_offline(model, tok, "dpo", cfg, pairs=pairs, beta=0.1)
    return steps * BATCH_DPO / (time.perf_counter() - t0)


def bench_trl_dpo(model, tok, pairs, steps: int) -> float:
    import copy

    import datasets
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()

    data = Dataset.from_list(
        [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    )
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
            # checkpointing, so both are off for a like-for-like comparison.
            bf16=False,
            gradient_checkpointing=False,
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
        t0 = time.perf_counter()
        trainer.train()
        return steps * BATCH_DPO / (time.perf_counter() - t0)


def bench_sampling(model, tok, repeats: int) -> tuple[float, float]:
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
    ours, theirs = [], []
    with torch.no_grad():
        for r in range(repeats + 1):  # the first round warms up and is dropped
            g = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            s = sample(model, tok, prompts, NEW_TOKENS, g, stop_at_eos=False)
            t_ours = time.perf_counter() - t0
            assert int(s.mask.sum()) == BATCH_SAMPLE * NEW_TOKENS
            torch.manual_seed(r)
            t0 = time.perf_counter()
            out = model.generate(**kwargs)
            t_gen = time.perf_counter() - t0
            assert out.shape == (BATCH_SAMPLE, 1 + NEW_TOKENS)
            if r:
                ours.append(BATCH_SAMPLE * NEW_TOKENS / t_ours)
                theirs.append(BATCH_SAMPLE * NEW_TOKENS / t_gen)
    return statistics.median(ours), statistics.median(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpo-steps", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tok = make_model()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT-2 4x128, vocab {len(tok)}, {n_params} parameters, CPU, 1 thread")

    pairs = make_pairs(args.pairs)
    bench_ours_dpo(model, tok, pairs[:64], 2)  # warm-up
    ours_dpo = bench_ours_dpo(model, tok, pairs, args.dpo_steps)
    print(f"dpo tailor: {ours_dpo:.1f} pairs/s (batch {BATCH_DPO}, {args.dpo_steps} steps)")
    try:
        import trl

        trl_dpo = bench_trl_dpo(model, tok, pairs, args.dpo_steps)
        print(f"dpo trl {trl.__version__} DPOTrainer: {trl_dpo:.1f} pairs/s")
    except ImportError:
        trl_dpo = float("nan")
        print("dpo trl: not measured (trl is not installed: pip install 'tailor-rl[bench]')")

    ours_s, gen_s = bench_sampling(model, tok, args.repeats)
    print(f"sampling tailor: {ours_s:.0f} tokens/s (batch {BATCH_SAMPLE}, {NEW_TOKENS} new tokens)")
    print(f"sampling transformers generate: {gen_s:.0f} tokens/s")
    print(
        f"dpo_speedup_vs_trl={ours_dpo / trl_dpo:.2f} sampling_speedup_vs_generate="
        f"{ours_s / gen_s:.2f}"
    )


if __name__ == "__main__":
    main()
