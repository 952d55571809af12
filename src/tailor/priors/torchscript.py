"""TorchScript deploy exports (``policy.pt`` / ``motion.pt``) as priors, read without running them.

Isaac Lab's ``export_policy_as_jit`` (``_TorchPolicyExporter``: ``actor`` + ``normalizer``),
rsl-rl's ``export_policy_to_jit`` (``_TorchMLPModel``: ``obs_normalizer`` + ``mlp`` +
``deterministic_output``), unitree_rl_gym's exporters and a plain ``torch.jit.script`` /
``torch.jit.trace`` of an MLP all write the same archive: a zip with ``<root>/data.pkl`` (the
module tree as a pickle), ``<root>/data/<key>`` (raw tensor bytes), ``<root>/code/__torch__/...``
(the TorchScript source), ``constants.pkl``, ``version``.

Nothing in the file is executed: ``torch.jit.load`` is never called. ``data.pkl`` is read by
:class:`ScriptUnpickler`, whose ``find_class`` maps

- every ``__torch__.*`` class (the scripted modules) to an inert stand-in that stores its
  attributes (parameters, buffers, sub-modules, plain values) and runs nothing;
- ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``, ``collections.OrderedDict``,
  the ``torch.<Type>Storage`` names (via ``persistent_load``) and the identity helpers of
  ``torch.jit._pickle`` to functions that build tensors from the raw bytes of ``data/<key>``;

and refuses any other global with a TailorError naming it. Member sizes are checked before
reading (a zip bomb cannot allocate more than the limits below).

The policy is recognized from the module tree and the TorchScript source of the containers'
``forward`` (parsed with :mod:`ast`, never run; it must be a chain of sub-module calls): an MLP
(``Linear -> act -> ... -> Linear``, one activation of :data:`tailor.priors.base.TORCH_ACTIVATIONS`
with torch's default parameters) behind an optional rsl-rl/Isaac Lab ``EmpiricalNormalization``
(``(x - _mean) / (_std + eps)``; an ``Identity`` is none). A deploy export holds no std, so
the prior ``N(mlp(norm(s)), std^2)`` takes it from ``std=`` (``--prior-std SIGMA``); a scripted
actor-critic (legged_gym's ``ActorCriticMLP``: ``actor(torch.detach(obs))``, a critic beside it and
its own ``std`` parameter) gives its stored std instead. Recurrent
exports (an ``LSTM``/``GRU`` inside, e.g. unitree_rl_gym's ``PolicyExporterLSTM``) and any other
structure are refused with what the archive holds.
"""

from __future__ import annotations

import ast
import math
import pickle
import re
import textwrap
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tailor.errors import DeterministicPolicyError, TailorError
from tailor.priors.base import (
    TORCH_ACTIVATIONS,
    check_activation,
    gaussian_prior,
    global_std_meta,
    identity_normalizer,
    layers_from_state,
    std_eps_normalizer,
)
from tailor.priors.unpickle import Inert

__all__ = ["ScriptModule", "ScriptUnpickler", "load_torchscript", "read_torchscript"]

MAX_PICKLE_BYTES = 16 << 20  # data.pkl of a policy is a few kB
MAX_CODE_BYTES = 4 << 20  # one TorchScript source file
MAX_TENSOR_BYTES = 512 << 20  # all tensors together: deploy policies are a few MB

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_RECURRENT = ("LSTM", "GRU", "RNN")
_MANGLE = re.compile(r"^___torch_mangle_\d+$")


class ScriptModule(Inert):
    """Stand-in for a scripted module class ``__torch__.<qualname>``: its attributes only.

    Attributes:
        qualname: the class's name without ``__torch__.`` and ``___torch_mangle_<n>`` parts,
            e.g. ``torch.nn.modules.activation.ELU``.
        pickled: the name as the archive spells it (locates its TorchScript source).
    """

    pickled = "__torch__"

    @property
    def name(self) -> str:
        """The class's own name, e.g. ``ELU``."""
        return self.qualname.rsplit(".", 1)[-1]

    def children(self) -> list[tuple[str, ScriptModule]]:
        """The sub-modules, in the archive's (registration) order."""
        return [(k, v) for k, v in self.state.items() if isinstance(v, ScriptModule)]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The module's own parameters and buffers."""
        return {k: v for k, v in self.state.items() if isinstance(v, torch.Tensor)}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name, self.dtype = name, _STORAGE_DTYPES[name]


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` on a storage read from the archive (bounds checked)."""
    ok = (
        isinstance(storage, torch.Tensor)
        and isinstance(offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride))
    )
    if not ok:
        raise TailorError("malformed tensor record in data.pkl")
    if (
        math.prod(size)
        and offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= storage.numel()
    ):
        raise TailorError("a tensor in data.pkl reaches past the end of its storage")
    return storage.as_strided(size, stride, offset).clone()


def _first(value: Any, *rest: Any) -> Any:
    return value


_FUNCTIONS: dict[str, Any] = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _first,
    "torch._utils._rebuild_parameter_with_state": _first,
    "collections.OrderedDict": dict,
    "torch.jit._pickle.restore_type_tag": _first,
    **{
        f"torch.jit._pickle.build_{kind}list": _first
        for kind in ("int", "tensor", "double", "bool")
    },
}


class ScriptUnpickler(pickle.Unpickler):
    """Reads a TorchScript ``data.pkl`` into :class:`ScriptModule` stand-ins (module docstring).

    Args:
        data: the pickle's bytes.
        read_storage: ``key -> bytes`` of ``<root>/data/<key>`` (size-checked by the caller).
    """

    def __init__(self, data: bytes, read_storage: Any) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._read_storage = read_storage
        self._classes: dict[str, type[ScriptModule]] = {}
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if module == "__torch__" or module.startswith("__torch__."):
            if key not in self._classes:
                parts = [p for p in key.split(".")[1:] if not _MANGLE.match(p)]
                self._classes[key] = type(
                    name, (ScriptModule,), {"qualname": ".".join(parts), "pickled": key}
                )
            return self._classes[key]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if key in _FUNCTIONS:
            return _FUNCTIONS[key]
        raise TailorError(
            f"refusing to unpickle {key}: a TorchScript data.pkl is read with scripted-module "
            "stand-ins and tensor rebuilding only (a pickle can run arbitrary code; this one "
            "names a global outside that allowlist)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[4], int)
        ):
            raise TailorError(f"refusing to unpickle persistent id {str(pid)[:80]!r}")
        key, numel, dtype = str(pid[2]), pid[4], pid[1].dtype
        if key not in self._storages:
            raw = self._read_storage(key)
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != numel * itemsize:
                raise TailorError(
                    f"data/{key} holds {len(raw)} bytes, not {numel} {pid[1].name} elements"
                )
            self._storages[key] = (
                torch.frombuffer(bytearray(raw), dtype=dtype)
                if numel
                else torch.empty(0, dtype=dtype)
            )
        return self._storages[key]


def _bounded(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, src: str) -> bytes:
    if info.file_size > limit:
        raise TailorError(
            f"{src}: archive member {info.filename} is too large ({info.file_size} B)"
        )
    with z.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TailorError(f"{src}: archive member {info.filename} is larger than it declares")
    return data


def read_torchscript(path: str | Path) -> tuple[ScriptModule, dict[str, str], dict[str, Any]]:
    """The module tree of a TorchScript archive, its source files and facts about it.

    Returns:
        ``(root, code, info)``: the root :class:`ScriptModule`; ``{"__torch__/a/b.py": text}``
        of the archive's ``code/`` files (the source of the classes, read as text); ``info``
        with ``root_dir`` and ``version``.

    Raises:
        TailorError: not a TorchScript zip, an oversized member, a disallowed global, a
            malformed tensor record.
    """
    path = Path(path)
    src = repr(str(path))
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise TailorError(f"{src} is not a readable zip ({exc})") from None
    with z:
        infos = {i.filename: i for i in z.infolist()}
        pkls = [n for n in infos if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise TailorError(f"{src}: not a TorchScript archive (no <root>/data.pkl)")
        root_dir = pkls[0].split("/")[0]
        byteorder = infos.get(f"{root_dir}/byteorder")
        if byteorder is not None and _bounded(z, byteorder, 16, src).strip() != b"little":
            raise TailorError(f"{src}: a big-endian TorchScript archive is not supported")
        budget = [MAX_TENSOR_BYTES]

        def read_storage(key: str) -> bytes:
            info = infos.get(f"{root_dir}/data/{key}")
            if info is None:
                raise TailorError(f"{src}: data.pkl names a tensor data/{key} that is missing")
            data = _bounded(z, info, budget[0], src)
            budget[0] -= len(data)
            return data

        data = _bounded(z, infos[pkls[0]], MAX_PICKLE_BYTES, src)
        try:
            root = ScriptUnpickler(data, read_storage).load()
        except TailorError as exc:
            raise TailorError(f"{src}: {exc}") from None
        except Exception as exc:  # malformed pickles raise many types
            raise TailorError(
                f"{src}: data.pkl is not a readable pickle ({type(exc).__name__}: {exc})"
            ) from None
        code: dict[str, str] = {}
        prefix = f"{root_dir}/code/"
        for name, info in infos.items():
            if name.startswith(prefix) and name.endswith(".py"):
                raw = _bounded(z, info, MAX_CODE_BYTES, src)
                code[name[len(prefix) :]] = raw.decode("utf-8", "replace")
        version = infos.get(f"{root_dir}/version")
        ver = _bounded(z, version, 64, src).decode("ascii", "replace").strip() if version else None
    if not isinstance(root, ScriptModule):
        raise TailorError(
            f"{src}: data.pkl holds {type(root).__name__}, not a scripted module: not a "
            "TorchScript export (torch.jit.script/trace(...).save)"
        )
    return root, code, {"root_dir": root_dir, "version": ver}


# ---------------------------------------------------------------------------------------------
# What the module tree computes.


def _class_source(module: ScriptModule, code: dict[str, str]) -> str | None:
    """The TorchScript source of ``module``'s class (the block ``class <Name>(Module):``)."""
    parts = module.pickled.split(".")
    file = "/".join(parts[:-1]) + ".py"
    text = code.get(file)
    if text is None:
        return None
    match = re.search(
        rf"^class {re.escape(parts[-1])}\(Module\):\n((?:[ \t]+.*\n?|\n)*)", text, re.M
    )
    return match.group(1) if match else None


def _forward_chain(module: ScriptModule, code: dict[str, str], src: str) -> list[str]:
    """The sub-module names ``module.forward`` applies to its input, first to last.

    The forward's TorchScript source is parsed (:mod:`ast`), not run, and must be a chain:
    ``m = self.m`` / ``m = getattr(self, "0")`` assignments, ``y = (m).forward(x, )`` calls on
    one argument, and ``return``.
    """
    body = _class_source(module, code)
    tree = None
    if body is not None:
        match = re.search(r"^  def forward\(.*?(?=^  def |\Z)", body, re.M | re.S)
        if match:
            try:
                tree = ast.parse(textwrap.dedent(match.group(0)))
            except SyntaxError:
                tree = None
    kids = ", ".join(f"{n} ({m.name})" for n, m in module.children()) or "none"
    not_chain = TailorError(
        f"{src}: the forward of {module.name} is not a chain of its sub-modules {kids} (it "
        "computes something else around them, e.g. slices an observation history or feeds an "
        "estimator's output to the actor); tailor reads MLP policies behind an optional "
        "normalizer. What works: a TorchScript export whose forward is [normalizer ->] MLP "
        "(Isaac Lab's exported/policy.pt of an MLP run, rsl-rl's export_policy_to_jit), or the "
        "run's training checkpoint (rsl-rl model_*.pt)"
    )
    if tree is None or not isinstance(tree.body[0], ast.FunctionDef):
        raise not_chain
    fn = tree.body[0]
    args = [a.arg for a in fn.args.args]
    if len(args) != 2:
        raise not_chain
    mods: dict[str, str] = {}
    values: dict[str, list[str] | None] = {args[1]: []}

    def value(node: ast.expr) -> list[str]:
        if isinstance(node, ast.Name) and values.get(node.id) is not None:
            return values[node.id]  # type: ignore[return-value]
        if _is_detach(node):  # torch.detach(x): the same values (no gradient; read-only here)
            return value(node.args[0])  # type: ignore[attr-defined]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and re.fullmatch(r"forward\d*", node.func.attr)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in mods
            and len(node.args) == 1
            and not node.keywords
        ):
            return [*value(node.args[0]), mods[node.func.value.id]]
        raise not_chain

    for stmt in fn.body:
        if isinstance(stmt, ast.Return) and stmt.value is not None:
            return value(stmt.value)
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            raise not_chain
        target, rhs = stmt.targets[0].id, stmt.value
        if (
            isinstance(rhs, ast.Attribute)
            and isinstance(rhs.value, ast.Name)
            and rhs.value.id == args[0]
        ):
            mods[target] = rhs.attr
        elif (
            isinstance(rhs, ast.Call)
            and isinstance(rhs.func, ast.Name)
            and rhs.func.id == "getattr"
            and len(rhs.args) == 2
            and isinstance(rhs.args[0], ast.Name)
            and rhs.args[0].id == args[0]
            and isinstance(rhs.args[1], ast.Constant)
        ):
            mods[target] = str(rhs.args[1].value)
        elif (
            isinstance(rhs, ast.Call)
            and isinstance(rhs.func, ast.Attribute)
            and isinstance(rhs.func.value, ast.Name)
            and not rhs.args
            and not rhs.keywords
        ):
            values[target] = None  # a traced Identity: called without input, result unused
        else:
            values[target] = value(rhs)
    raise not_chain


def _is_detach(node: ast.expr) -> bool:
    """``torch.detach(x)``: an actor-critic's ``act_inference`` detaches its observations."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "detach"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
        and len(node.args) == 1
        and not node.keywords
    )


def _finals(module: ScriptModule, code: dict[str, str]) -> dict[str, Any]:
    """The ``name : Final[T] = value`` constants of a module's class (e.g. ELU's ``alpha``)."""
    out: dict[str, Any] = {}
    for name, value in re.findall(
        r"^  (\w+) : Final\[\w+\] = (.+)$", _class_source(module, code) or "", re.M
    ):
        try:
            out[name] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[name] = value.strip()
    return out


def _describe(module: ScriptModule, depth: int = 0) -> str:
    kids = module.children()
    if not kids or depth > 1:
        return module.name
    return f"{module.name}({', '.join(_describe(m, depth + 1) for _, m in kids)})"


def _walk(module: ScriptModule, path: str = "") -> list[tuple[str, ScriptModule]]:
    out = [(path, module)]
    for name, child in module.children():
        out += _walk(child, f"{path}.{name}" if path else name)
    return out


def _is_mlp(module: ScriptModule) -> bool:
    kids = module.children()
    return bool(kids) and all(m.name == "Linear" or m.name in TORCH_ACTIVATIONS for _, m in kids)


def _recurrent_refusal(root: ScriptModule, src: str) -> TailorError | None:
    rnns = [(p, m) for p, m in _walk(root) if m.name in _RECURRENT]
    if not rnns:
        return None
    parts = [f"{m.name} {p}" for p, m in rnns]
    parts += [f"{n} MLP" for n, m in root.children() if _is_mlp(m)]
    return TailorError(
        f"{src} is a TorchScript export of a recurrent policy ({root.name}: "
        f"{' + '.join(parts)}); tailor customizes feed-forward policies only (a recurrent "
        "policy's action depends on its hidden state). What works: the TorchScript export of a "
        "feed-forward (MLP) policy (e.g. Isaac Lab's exported/policy.pt of a non-recurrent run), "
        "or the training checkpoint of one (rsl-rl's model_*.pt)"
    )


def _mlp_layers(
    mlp: ScriptModule, path: str, code: dict[str, str], src: str
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str, list[str]]:
    """``(layers, activation, class names)`` of a ``Linear -> act -> ... -> Linear`` chain."""
    order = _forward_chain(mlp, code, src)
    kids = dict(mlp.children())
    mods = [kids[n] for n in order if n in kids and kids[n].name != "Identity"]
    if len(order) != len([n for n in order if n in kids]):
        raise TailorError(f"{src}: {path}'s forward calls modules it does not hold")
    state: dict[str, torch.Tensor] = {}
    acts: set[str] = set()
    for i, m in enumerate(mods):
        want_linear = i % 2 == 0
        if (m.name == "Linear") != want_linear:
            raise TailorError(
                f"{src}: {path} is {_describe(mlp)}; tailor reads Linear -> activation -> ... -> "
                "Linear (one activation between layers, a linear output layer)"
            )
        if want_linear:
            t = m.tensors()
            w = t.get("weight")
            if w is None or w.ndim != 2:
                raise TailorError(f"{src}: {path} has a Linear without a 2-d weight")
            state[f"{i // 2}.weight"] = w
            state[f"{i // 2}.bias"] = t.get("bias", torch.zeros(w.shape[0], dtype=w.dtype))
            continue
        act = check_activation(TORCH_ACTIVATIONS[m.name], src)
        default = vars(getattr(torch.nn, m.name)())
        changed = {
            k: v for k, v in _finals(m, code).items() if k != "inplace" and default.get(k, v) != v
        }
        if changed:
            raise TailorError(
                f"{src}: {path} uses {m.name} with {changed} (not torch's default "
                f"{ {k: default[k] for k in changed} }); tailor's {act} has torch's defaults"
            )
        acts.add(act)
    if not mods or len(mods) % 2 == 0:
        raise TailorError(f"{src}: {path} ({_describe(mlp)}) does not end with a Linear layer")
    if len(acts) > 1:
        raise TailorError(f"{src}: {path} mixes activations {sorted(acts)}; tailor uses one")
    layers = layers_from_state(state, "", src)
    return layers, acts.pop() if acts else "elu", [m.qualname for m in mods]


_STORED_STD = ("std", "log_std")  # an actor-critic's own noise parameter (rsl-rl's names)


def _check_export(root: ScriptModule, src: str, normalizer: str | Path | None) -> str:
    """Refuse a recurrent export, a ``normalizer=``, and a root holding tensors of its own other
    than one 1-d ``std`` / ``log_std`` (a scripted actor-critic, e.g. a legged_gym
    ``ActorCriticMLP``); returns the ``found`` summary (the first modules, by path) that later
    errors quote."""
    refusal = _recurrent_refusal(root, src)
    if refusal is not None:
        raise refusal
    if normalizer is not None:
        raise TailorError(
            f"{src}: a TorchScript export computes its own normalization (or none); drop "
            "normalizer= (--prior-normalizer)"
        )
    found = "; ".join(f"{p or '<root>'}: {m.qualname}" for p, m in _walk(root)[:12])
    own = root.tensors()
    if own and not (len(own) == 1 and next(iter(own)) in _STORED_STD and _stored_std(root)):
        raise TailorError(
            f"{src}: the exported module {root.name} holds tensors of its own "
            f"({', '.join(root.tensors())}) besides its sub-modules; not an MLP export. "
            f"Found: {found}"
        )
    return found


def _chain_role(name: str, m: ScriptModule | None, root: ScriptModule, src: str, found: str) -> str:
    """The role (``identity``, ``normalizer`` or ``mlp``) of the module ``name`` that the root's
    forward applies; anything else is refused."""
    if m is None:
        raise TailorError(f"{src}: {root.name}.forward calls {name!r}, which it does not hold")
    if m.name in ("Identity", "_IdentityDeterministicOutput"):
        return "identity"
    if m.name == "EmpiricalNormalization":
        return "normalizer"
    if _is_mlp(m):
        return "mlp"
    hint = (
        " (rsl-rl's state-dependent-std or Beta output: not supported)"
        if m.name.endswith("DeterministicOutput")
        else ""
    )
    raise TailorError(
        f"{src}: a TorchScript export whose structure tailor does not read as an MLP "
        f"policy: {root.name}.forward applies {m.qualname} ({name}){hint}. Found: "
        f"{found}. tailor reads an MLP (Linear/activation modules) behind an optional "
        "EmpiricalNormalization"
    )


def _locate_mlp(
    root: ScriptModule, code: dict[str, str], src: str, found: str
) -> tuple[str, ScriptModule | None]:
    """``(path of the MLP, the EmpiricalNormalization before it or None)``: the root is the MLP
    (path ``""``), or its forward applies ``[normalizer ->] MLP`` (identities skipped)."""
    if _is_mlp(root):
        return "", None
    chain = _forward_chain(root, code, src)
    kids = dict(root.children())
    roles = {name: _chain_role(name, kids.get(name), root, src, found) for name in chain}
    seq = [roles[n] for n in chain if roles[n] != "identity"]
    if seq not in (["mlp"], ["normalizer", "mlp"]):
        what = "tailor export's DeterministicPolicy" if root.name == "DeterministicPolicy" else ""
        hint = f" (a {what}: pass its tailor run directory instead)" if what else ""
        raise TailorError(
            f"{src}: a TorchScript export that is not normalizer -> MLP: {root.name}.forward "
            f"applies {' -> '.join(chain) or 'nothing'}{hint}. Found: {found}"
        )
    mlp_path = next(n for n in chain if roles[n] == "mlp")
    norm_path = next((n for n in chain if roles[n] == "normalizer"), None)
    return mlp_path, kids[norm_path] if norm_path else None


def _export_normalizer(
    norm_mod: ScriptModule | None, obs_dim: int, src: str
) -> tuple[Any, dict[str, Any]]:
    """``(observation normalizer [obs_dim], its meta)``: the identity without a normalizer, else
    rsl-rl's ``(x - mean) / (std + eps)`` from the module's buffers."""
    if norm_mod is None:
        return identity_normalizer(obs_dim), {"kind": "none"}
    t, eps = norm_mod.tensors(), norm_mod.state.get("eps")
    if "_mean" not in t or "_std" not in t or not isinstance(eps, (int, float)):
        raise TailorError(
            f"{src}: the EmpiricalNormalization has no _mean/_std buffers or eps; found "
            f"{sorted(norm_mod.state)}"
        )
    count = t.get("count")
    obs_norm = std_eps_normalizer(
        t["_mean"], t["_std"], float(eps), float(count) if count is not None else 0.0
    )
    return obs_norm, {
        "kind": "rsl-rl EmpiricalNormalization",
        "class": norm_mod.qualname,
        "formula": "(x - mean) / (std + eps)",
        "eps": float(eps),
        "count": float(count) if count is not None else None,
    }


def _stored_std(root: ScriptModule) -> tuple[str, torch.Tensor] | None:
    """``(name, log std [A])`` of the root's own 1-d ``std`` / ``log_std`` parameter, or None."""
    for name, t in root.tensors().items():
        if name in _STORED_STD and t.ndim == 1 and t.is_floating_point():
            return name, (t.double().log() if name == "std" else t.double()).float()
    return None


def _given_log_std(std: float | Sequence[float] | None, act_dim: int, src: str) -> torch.Tensor:
    """``log std`` ``[act_dim]`` (float32) of the given std: one positive number, or one each."""
    if std is None:
        raise DeterministicPolicyError(
            f"{src} is a TorchScript deploy export (a deterministic policy: {act_dim} actions, "
            "no std stored); pass the standard deviation of the Gaussian around its action: "
            "--prior-std SIGMA (std=SIGMA)",
            "std",
        )
    try:  # one std for all actions, or one per action
        stds = torch.as_tensor(std, dtype=torch.float64).reshape(-1).broadcast_to((act_dim,))
    except (RuntimeError, TypeError, ValueError):
        stds = torch.full((act_dim,), math.nan, dtype=torch.float64)
    if not bool((stds > 0).all() and torch.isfinite(stds).all()):
        raise TailorError(
            f"{src}: std must be one positive number or {act_dim} (one per action), got {std}"
        )
    return stds.log().float()


def _export_source(path: Path, root: ScriptModule, info: dict[str, Any]) -> dict[str, Any]:
    """The ``source`` meta of a TorchScript export (which library wrote it, its modules)."""
    return {
        "format": "torchscript",
        "library": {
            "_TorchPolicyExporter": "Isaac Lab export_policy_as_jit",
            "_TorchMLPModel": "rsl-rl export_policy_to_jit",
        }.get(root.name, f"TorchScript export of {root.name}"),
        "version": f"archive v{info['version']}",
        "algorithm": "unknown (deploy export)",
        "path": str(path),
        "root_class": root.qualname,
        "modules": {p or "<root>": m.qualname for p, m in _walk(root)},
    }


def load_torchscript(
    path: str | Path,
    std: float | Sequence[float] | None = None,
    normalizer: str | Path | None = None,
    activation: str | None = None,
) -> Any:
    """A :class:`tailor.priors.PolicyPrior` from a TorchScript deploy export (module docstring).

    Args:
        path: the ``.pt`` archive.
        std: the Gaussian's standard deviation around the export's action (a number, or one per
            action); required: a deploy export has none.
        normalizer: refused (the export's forward includes its normalizer).
        activation: checked against the archive's activation modules when given.

    Raises:
        TailorError: unreadable or hostile archive, a recurrent or otherwise non-MLP export, no
            ``std``, sizes that do not chain.
    """
    path = Path(path)
    src = repr(str(path))
    root, code, info = read_torchscript(path)
    found = _check_export(root, src, normalizer)
    mlp_path, norm_mod = _locate_mlp(root, code, src, found)
    mlp = dict(_walk(root))[mlp_path]
    layers, act, classes = _mlp_layers(mlp, mlp_path or root.name, code, src)
    if activation is not None and check_activation(activation, src) != act and len(layers) > 1:
        raise TailorError(
            f"{src}: the export's activation modules are {act}, not {activation}; drop "
            "activation= (--prior-activation): the archive says which"
        )
    obs_dim, act_dim = layers[0][0].shape[1], layers[-1][0].shape[0]
    obs_norm, norm_info = _export_normalizer(norm_mod, obs_dim, src)
    stored = _stored_std(root)
    if stored is not None and std is None:
        name, log_std = stored
        if log_std.shape != (act_dim,) or not bool(torch.isfinite(log_std).all()):
            raise TailorError(
                f"{src}: the stored {name} has {log_std.numel()} entries (finite and positive "
                f"needed), the actor {act_dim} actions; pass --prior-std SIGMA instead"
            )
        how = f"the archive's own {root.name}.{name} parameter (a scripted actor-critic)"
    else:
        log_std = _given_log_std(std, act_dim, src)
        how = "given (std= / --prior-std): " + (
            f"overrides the archive's own {stored[0]}" if stored else "the export is deterministic"
        )
    source = _export_source(path, root, info)
    meta = global_std_meta(
        layers, log_std, act, "the archive's activation modules", norm_info, source
    )
    meta["distribution"]["std"] = how
    meta["architecture"]["layers"] = classes
    return gaussian_prior(layers, log_std, act, obs_norm, meta, src)
