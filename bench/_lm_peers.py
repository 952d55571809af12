"""The two sides of ``bench/lm_throughput.py`` and ``bench/gpu_lm.py``: tailor and TRL, on the
same saved model, data, reward and settings.

Each side is one function ``(setup, model_dir) -> dict`` that loads the model from ``model_dir``
(before its clock starts), trains, and returns what it measured: wall and process CPU seconds,
completion tokens (GRPO) or pairs (DPO), the time of the first optimizer step, and the peak
memory of the job (CPU: the process's peak resident set since the job started, from Linux's
``VmHWM`` after ``/proc/self/clear_refs``; GPU: ``torch.cuda.max_memory_allocated``).

On the CPU each side runs in its own worker process (:class:`Worker`: ``python
bench/_lm_peers.py --worker`` reading one JSON job a line), so the peaks of the two libraries are
separable and the parent can interleave rounds; ``bench/gpu_lm.py`` calls the functions in one
process (CUDA peaks reset between jobs).

Like for like (the defaults of either library are changed where they would differ): float32 or
the same autocast dtype, no activation checkpointing, dropout off, no logging or saving, the same
learning rate, clip, gradient-norm clip, group size, batch, minibatch, epochs (TRL's
``num_iterations``), longest completion, sampling at temperature 1 without top-k/top-p, and the
KL term: TRL's ``beta`` with its per-token k3 estimate in the loss is tailor's ``kl`` method with
``beta`` under ``kl_estimator="k3-loss"`` (``tailor.algos.lm_ppo``'s docstring). The reward is
one Python function (:func:`reward`) that both call.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import random
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

TARGET = set("aeiou02468")  # the reward's characters: vowels (char model), even digits (words)
RESULT = "@@result "  # a worker's result line (other output of the libraries passes through)


def reward(prompt: str, completion: str) -> float:
    """The add-on reward both libraries call: the fraction of the completion's non-space
    characters in :data:`TARGET` (0 for an empty completion)."""
    chars = [c for c in completion if not c.isspace()]
    return sum(c in TARGET for c in chars) / len(chars) if chars else 0.0


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def versions() -> str:
    """Python, the libraries and tailor's commit (``+dirty`` with uncommitted changes)."""
    import importlib.metadata as md

    out = [f"python {platform.python_version()}"]
    for name in ("torch", "transformers", "trl", "datasets", "accelerate", "peft", "tokenizers"):
        try:
            out.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            out.append(f"{name} -")
    root = Path(__file__).resolve().parents[1]
    try:
        git = ["git", "-C", str(root)]
        sha = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run([*git, "status", "--porcelain", "-uno"], capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
        out.append(f"tailor {sha}{'+dirty' if dirty else ''}")
    except (OSError, subprocess.CalledProcessError):
        out.append("tailor (no git)")
    return ", ".join(out)


# -- models, tokenizers and data -----------------------------------------------------------------


def char_gpt2(n_positions: int = 64) -> tuple[Any, Any]:
    """The benchmark's character GPT-2: 4 layers, width 128, 4 heads (about 0.8M parameters),
    seed 0, eval mode."""
    from tailor.lm.model import PretrainConfig, build_char_tokenizer, new_char_model

    tok = build_char_tokenizer(string.ascii_lowercase)
    cfg = PretrainConfig(n_layer=4, n_embd=128, n_head=4, n_positions=n_positions, dropout=0.0)
    return new_char_model(len(tok), cfg, tok).eval(), tok


def word_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer of ``vocab_size`` ids: the 4 special tokens of tailor's character
    tokenizer, then the words ``w4 .. w{vocab_size-1}`` (split on spaces, decoded with spaces);
    ``<bos>`` is prepended like the character tokenizer's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from tailor.lm.model import SPECIAL_TOKENS

    words = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(len(SPECIAL_TOKENS), vocab_size))]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


@dataclass(frozen=True)
class LlamaShape:
    """A Llama-shaped causal LM built in code (random init, seed 0; no download)."""

    vocab_size: int = 32000
    hidden_size: int = 1024
    intermediate_size: int = 2816
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    max_position_embeddings: int = 512


def llama(
    shape: LlamaShape, tok: Any, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Any:
    """A freshly initialised ``LlamaForCausalLM`` of ``shape`` in ``dtype``, built on ``device``
    (eval mode; the initial draws differ by device)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        **asdict(shape),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(cfg).to(dtype).eval()


def save(model: Any, tok: Any, out: str | Path) -> str:
    """Save ``model`` and ``tok`` where both sides load them (safetensors)."""
    from tailor.lm.model import save_model

    return str(save_model(model, tok, out))


def symbols_of(tok: Any) -> tuple[list[str], str]:
    """The symbols random text is made of and their separator: letters for a character
    tokenizer, its words otherwise."""
    vocab = [t for t in tok.get_vocab() if not t.startswith("<")]
    return (sorted(vocab), "") if all(len(t) == 1 for t in vocab) else (sorted(vocab), " ")


def random_texts(tok: Any, n: int, lo: int, hi: int, seed: int) -> list[str]:
    """``n`` random texts of ``lo`` to ``hi`` symbols of ``tok`` (fixed by ``seed``)."""
    rng = random.Random(seed)
    syms, sep = symbols_of(tok)
    return [sep.join(rng.choices(syms, k=rng.randint(lo, hi))) for _ in range(n)]


# -- settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """Where and in what precision a side runs: ``device`` (``cpu``/``cuda``), ``dtype``
    (``float32``/``bfloat16``: the frozen weights; trained weights stay float32 under autocast),
    ``lora_r`` (0: every weight trained)."""

    device: str = "cpu"
    dtype: str = "float32"
    lora_r: int = 0


@dataclass(frozen=True)
class GRPOSetup:
    """One GRPO run, the same on both sides.

    Attributes:
        prompts: number of distinct prompts (``prompt_len`` symbols each, seed 1).
        prompt_len: ``(lo, hi)`` symbols of a prompt.
        group: completions per prompt (TRL ``num_generations``, tailor ``group_size``).
        batch: completions sampled per iteration (TRL ``generation_batch_size``).
        minibatch: completions per optimizer step (TRL ``per_device_train_batch_size``).
        epochs: passes over each batch (TRL ``num_iterations``).
        max_new: longest completion, eos included (TRL ``max_completion_length``).
        iterations: sampling rounds; optimizer steps = iterations x epochs x batch / minibatch.
        beta: the KL coefficient (TRL ``beta``, k3 in the loss; tailor ``kl`` with it).
        method: tailor's method: ``kl`` (like for like) or ``residual`` (omega' = 2 beta,
            alpha_hat = beta: the same work plus one reward term).
        lr: learning rate of both.
        machine: device, dtype, LoRA.
    """

    prompts: int = 64
    prompt_len: tuple[int, int] = (2, 6)
    group: int = 8
    batch: int = 64
    minibatch: int = 32
    epochs: int = 2
    max_new: int = 24
    iterations: int = 4
    beta: float = 0.04
    method: str = "kl"
    lr: float = 1e-5
    machine: Machine = field(default_factory=Machine)

    @property
    def steps(self) -> int:
        return self.iterations * self.epochs * self.batch // self.minibatch


@dataclass(frozen=True)
class DPOSetup:
    """One DPO run, the same on both sides: ``pairs`` preference pairs (prompt of
    ``prompt_len`` symbols, chosen and rejected of ``response_len``; seed 0), ``steps`` steps of
    ``batch`` pairs, beta, lr; ``max_len`` cuts a response (tailor) / prompt + response (TRL) and
    is set so that nothing is cut."""

    pairs: int = 2000
    prompt_len: tuple[int, int] = (0, 0)
    response_len: tuple[int, int] = (4, 30)
    batch: int = 32
    steps: int = 20
    beta: float = 0.1
    lr: float = 1e-4
    max_len: int = 32
    machine: Machine = field(default_factory=Machine)


def pairs_of(setup: DPOSetup, tok: Any) -> list[tuple[str, str, str]]:
    """The ``(prompt, chosen, rejected)`` pairs of ``setup``."""
    n, (plo, phi), (rlo, rhi) = setup.pairs, setup.prompt_len, setup.response_len
    prompts = random_texts(tok, n, plo, phi, 10) if phi else [""] * n
    chosen, rejected = random_texts(tok, n, rlo, rhi, 11), random_texts(tok, n, rlo, rhi, 12)
    return list(zip(prompts, chosen, rejected, strict=True))


# -- measuring -------------------------------------------------------------------------------------


def _rss_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Measure:
    """Wall and CPU seconds, peak memory of a block, and the times of its optimizer steps
    (``mark()``, seconds since the start)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.marks: list[float] = []

    def __enter__(self) -> Measure:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with contextlib.suppress(OSError):  # resets VmHWM to the current RSS (Linux)
            Path("/proc/self/clear_refs").write_text("5")
        self.rss0 = _rss_mb("VmRSS")
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def mark(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter() - self.w)

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c
        self.peak_rss = _rss_mb("VmHWM")

    def result(self, **extra: float) -> dict[str, float]:
        out = {
            "wall": self.wall,
            "cpu": self.cpu,
            "first_step": self.marks[0] if self.marks else float("nan"),
            "peak_rss_mb": self.peak_rss,
            "rss_start_mb": self.rss0,
            **extra,
        }
        if self.cuda:
            out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out


def _count(params: Any) -> float:
    """Trained weights (LoRA: the adapters'), to check that both sides train the same."""
    return float(sum(p.numel() for p in params))


def _stepper(m: Measure) -> Any:
    """A tailor ``LoopControl`` that marks each iteration's end (its ``stop`` is polled before
    every iteration: the second poll is the end of the first)."""
    from tailor.algos.logs import LoopControl

    class Marks(LoopControl):
        polls = 0

        def stop(self) -> bool:
            if self.polls:
                m.mark()
            self.polls += 1
            return False

    return Marks()


def _trl_marks(m: Measure) -> Any:
    from transformers import TrainerCallback

    class Marks(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            m.mark()

    return Marks()


# -- tailor --------------------------------------------------------------------------------------


def _tailor_pair(model_dir: str, mc: Machine) -> tuple[Any, Any]:
    """``(PolicyPair, tokenizer)`` of the saved model on ``mc``'s device, dtype and LoRA."""
    from tailor.lm import llamafast
    from tailor.lm.model import load_model, load_tokenizer
    from tailor.lm.policy import PolicyPair
    from tailor.lm.runtime import LMRuntime

    llamafast.set_enabled(True)  # the lean Llama path (on by default; explicit here)
    rt = LMRuntime(device=mc.device, dtype=mc.dtype, lora_r=mc.lora_r)
    prior = load_model(model_dir, "prior", dtype=getattr(torch, mc.dtype), device=mc.device)
    return PolicyPair(prior, rt), load_tokenizer(model_dir, "prior")


def tailor_grpo(s: GRPOSetup, model_dir: str) -> dict[str, float]:
    """``customize_ppo`` with ``advantage="grpo"``, ``kl_estimator="k3-loss"``."""
    from tailor.algos.lm_ppo import LMPPOConfig, customize_ppo

    pair, tok = _tailor_pair(model_dir, s.machine)
    cfg = LMPPOConfig(
        steps=s.iterations, batch_size=s.batch, max_new_tokens=s.max_new, epochs=s.epochs,
        minibatch_size=s.minibatch, lr=s.lr, clip=0.2, max_grad_norm=1.0, advantage="grpo",
        group_size=s.group, kl_estimator="k3-loss", seed=0,
    )  # fmt: skip
    coef = (
        {"beta": s.beta} if s.method == "kl" else {"omega_prime": 2 * s.beta, "alpha_hat": s.beta}
    )
    prompts = random_texts(tok, s.prompts, *s.prompt_len, seed=1)
    with Measure(s.machine.device) as m:
        _, hist = customize_ppo(pair, tok, reward, s.method, cfg, prompts, _stepper(m), **coef)
    if not m.marks:  # one iteration: no poll after it
        m.marks.append(m.wall)
    tokens = sum(row["length"] * s.batch for row in hist)
    return m.result(tokens=tokens, trainable=_count(pair.params), reward=hist[-1]["addon"])


def tailor_dpo(s: DPOSetup, model_dir: str) -> dict[str, float]:
    """``customize_offline("dpo")`` on the pairs; the clock includes tokenizing them and the
    prior's log-probs (streamed: computed for the chunks a step draws)."""
    from tailor.algos.dpo import LMDPOConfig, customize_offline
    from tailor.lm.preferences import PreferencePair

    pair, tok = _tailor_pair(model_dir, s.machine)
    pairs = [PreferencePair(*p) for p in pairs_of(s, tok)]
    cfg = LMDPOConfig(steps=s.steps, batch_size=s.batch, lr=s.lr, max_new_tokens=s.max_len)
    with Measure(s.machine.device) as m:
        _, hist, _ = customize_offline(
            pair, tok, "dpo", cfg, pairs=pairs, control=_stepper(m), beta=s.beta
        )
    m.marks.append(m.wall)  # the last step's end (no poll after it)
    return m.result(pairs=s.steps * s.batch, trainable=_count(pair.params), loss=hist[-1]["loss"])


# -- TRL -----------------------------------------------------------------------------------------


def _trl_common(mc: Machine, out: str) -> dict[str, Any]:
    """The ``TrainingArguments`` both TRL trainers get: like for like with tailor (float32 or
    bf16 autocast as asked, no activation checkpointing (TRL 1.x's default is on), dropout off,
    no logging, saving or progress bar)."""
    return dict(
        output_dir=out,
        use_cpu=mc.device == "cpu",
        bf16=mc.dtype == "bfloat16",
        gradient_checkpointing=False,
        max_grad_norm=1.0,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
        model_init_kwargs={"dtype": mc.dtype},
    )


def _lora_config(mc: Machine) -> Any:
    if not mc.lora_r:
        return None
    from peft import LoraConfig

    # tailor's LMRuntime defaults: alpha = 2 r, every linear layer but the head, no dropout.
    return LoraConfig(r=mc.lora_r, lora_alpha=2 * mc.lora_r, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")  # fmt: skip


def trl_grpo(s: GRPOSetup, model_dir: str) -> dict[str, float]:
    """``GRPOTrainer.train()``; building the trainer (loading policy and reference) is before
    the clock, as loading is on tailor's side, and reported as ``setup``."""
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(model_dir)
    counted = [0]

    def trl_reward(prompts: list, completions: list, completion_ids: list, **_: Any) -> list:
        counted[0] += sum(len(ids) for ids in completion_ids)  # eos included, as tailor's
        return [reward(p, c) for p, c in zip(prompts, completions, strict=True)]

    data = Dataset.from_list(
        [{"prompt": p} for p in random_texts(tok, s.prompts, *s.prompt_len, 1)]
    )
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            **_trl_common(s.machine, out), per_device_train_batch_size=s.minibatch,
            generation_batch_size=s.batch, num_generations=s.group, num_iterations=s.epochs,
            max_completion_length=s.max_new, max_steps=s.steps, beta=s.beta, learning_rate=s.lr,
            epsilon=0.2, temperature=1.0, top_k=0, top_p=1.0, disable_dropout=True,
            log_completions=False,
        )  # fmt: skip
        t0 = time.perf_counter()
        trainer = GRPOTrainer(
            model=model_dir, reward_funcs=[trl_reward], args=args, train_dataset=data,
            processing_class=tok, peft_config=_lora_config(s.machine),
        )  # fmt: skip
        setup = time.perf_counter() - t0
        trainer.add_callback(_trl_marks(m := Measure(s.machine.device)))
        with m, contextlib.redirect_stdout(io.StringIO()):  # its summary dict
            trainer.train()
    trainable = _count(p for p in trainer.model.parameters() if p.requires_grad)
    return m.result(tokens=float(counted[0]), setup=setup, trainable=trainable)


def trl_dpo(s: DPOSetup, model_dir: str) -> dict[str, float]:
    """``DPOTrainer``: the clock starts before the dataset and the trainer are built (it
    tokenizes the pairs there), like tailor's, which tokenizes inside ``customize_offline``;
    the reference's log-probs are computed per batch (TRL's default)."""
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(model_dir)
    mc = s.machine
    load = dict(dtype=getattr(torch, mc.dtype))
    policy = AutoModelForCausalLM.from_pretrained(model_dir, **load).to(mc.device)
    ref = None if mc.lora_r else AutoModelForCausalLM.from_pretrained(model_dir, **load).eval()
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in pairs_of(s, tok)]
    with tempfile.TemporaryDirectory() as out:
        common = _trl_common(mc, out)
        del common["model_init_kwargs"]  # the models are given, not loaded by the trainer
        args = DPOConfig(
            **common, per_device_train_batch_size=s.batch, max_steps=s.steps,
            max_length=s.max_len + max(1, s.prompt_len[1]) + 1, learning_rate=s.lr, beta=s.beta,
        )  # fmt: skip
        with Measure(mc.device) as m, contextlib.redirect_stdout(io.StringIO()):
            trainer = DPOTrainer(
                model=policy, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                processing_class=tok, peft_config=_lora_config(mc),
            )  # fmt: skip
            trainer.add_callback(_trl_marks(m))
            trainer.train()
    trainable = _count(p for p in trainer.model.parameters() if p.requires_grad)
    return m.result(pairs=s.steps * s.batch, trainable=trainable)


SIDES = {
    "tailor_grpo": (tailor_grpo, GRPOSetup),
    "trl_grpo": (trl_grpo, GRPOSetup),
    "tailor_dpo": (tailor_dpo, DPOSetup),
    "trl_dpo": (trl_dpo, DPOSetup),
}


def _setup_from(cls: type, d: dict) -> Any:
    d = dict(d)
    d["machine"] = Machine(**d.get("machine", {}))
    for k in ("prompt_len", "response_len"):
        if k in d:
            d[k] = tuple(d[k])
    return cls(**d)


def run_side(side: str, setup: Any, model_dir: str) -> dict[str, float]:
    """Run one side in this process (what it allocated is freed before the next)."""
    import gc

    fn, _ = SIDES[side]
    try:
        return fn(setup, model_dir)
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# -- worker processes ------------------------------------------------------------------------------


class Worker:
    """One side in its own process: ``run(setup, model_dir)`` sends a job, waits for its result."""

    def __init__(self, side: str, threads: int = 1) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TAILOR_BENCH_THREADS": str(threads)}
        self.side = side
        self.proc = subprocess.Popen(
            [sys.executable, "-u", __file__, "--worker", side],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip

    def run(self, setup: Any, model_dir: str) -> dict[str, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"setup": asdict(setup), "model_dir": model_dir}) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                res = json.loads(line[len(RESULT) :])
                if "error" in res:
                    raise RuntimeError(f"{self.side}: {res['error']}")
                return res
            sys.stderr.write(line)  # the libraries' own prints
        raise RuntimeError(f"worker {self.side} exited with {self.proc.wait()}")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _worker(side: str) -> None:
    import traceback

    torch.set_num_threads(int(os.environ.get("TAILOR_BENCH_THREADS", "1")))
    fn, cls = SIDES[side]
    # The idle footprint: the side's libraries imported, nothing loaded.
    if side.startswith("trl"):
        import datasets  # noqa: F401
        import trl  # noqa: F401
    import tailor.algos.dpo
    import tailor.algos.lm_ppo  # noqa: F401

    idle = _rss_mb("VmRSS")
    for line in sys.stdin:
        job = json.loads(line)
        try:
            res: dict[str, Any] = fn(_setup_from(cls, job["setup"]), job["model_dir"])
        except Exception:
            res = {"error": traceback.format_exc()}
        res["rss_idle_mb"] = idle
        print(RESULT + json.dumps(res), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(sys.argv[2])
    else:
        sys.exit("usage: python bench/_lm_peers.py --worker SIDE (started by the benchmarks)")
