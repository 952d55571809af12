"""Prompts and preference pairs from what the Hugging Face ``datasets`` library writes
(tailor.lm.tables): parquet, Arrow IPC stream / file, save_to_disk directories, DatasetDicts.

The files are built here with pyarrow in the layout of ``datasets`` 4.x (``Dataset.save_to_disk``
in src/datasets/arrow_dataset.py: ``data-{i:05d}-of-{n:05d}.arrow`` IPC streams written by
``ArrowWriter``, ``state.json``, ``dataset_info.json``; ``DatasetDict.save_to_disk``:
``dataset_dict.json`` = ``{"splits": [...]}`` and one directory per split)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailor.errors import TailorError
from tailor.lm.preferences import PreferencePair, load_preferences, render_pairs
from tailor.lm.prompts import load_prompts, render_prompts

CHAT = [{"role": "user", "content": "hi"}]
TEXT_FEATURE = {"dtype": "string", "_type": "Value"}


def save_to_disk(directory: Path, table: pa.Table, num_shards: int = 1) -> None:
    """``Dataset.save_to_disk(directory, num_shards=num_shards)`` as datasets 4.x lays it out:
    contiguous shards (``shard(contiguous=True)``: the first ``n % k`` shards one row longer),
    each an Arrow IPC *stream* with the features in the schema's ``huggingface`` metadata."""
    directory.mkdir(parents=True)
    features = {name: TEXT_FEATURE for name in table.column_names}  # what the readers ignore
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    schema = table.schema.with_metadata(meta)
    names, start = [], 0
    for i in range(num_shards):
        length = table.num_rows // num_shards + (i < table.num_rows % num_shards)
        names.append(f"data-{i:05d}-of-{num_shards:05d}.arrow")
        with pa.OSFile(str(directory / names[-1]), "wb") as sink:
            with pa.ipc.new_stream(sink, schema) as writer:
                writer.write_table(table.slice(start, length).replace_schema_metadata(meta))
        start += length
    state = {
        "_data_files": [{"filename": n} for n in names],
        "_fingerprint": "5d8e2b1c0f3a4e67",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (directory / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    info = {"citation": "", "description": "", "features": features, "homepage": "",
            "license": ""}  # fmt: skip
    (directory / "dataset_info.json").write_text(json.dumps(info, indent=2))


def save_dict_to_disk(directory: Path, splits: dict[str, pa.Table]) -> None:
    """``DatasetDict.save_to_disk(directory)``."""
    directory.mkdir(parents=True)
    (directory / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
    for name, table in splits.items():
        save_to_disk(directory / name, table)


class ChatTokenizer:
    chat_template = "toy"

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


PROMPTS = pa.table({"id": [0, 1, 2, 3, 4], "prompt": ["ja", "mi", "lu", "ko", "be"]})


def test_parquet_and_arrow_files(tmp_path: Path) -> None:
    pq.write_table(PROMPTS, tmp_path / "p.parquet")
    assert load_prompts(tmp_path / "p.parquet") == ["ja", "mi", "lu", "ko", "be"]
    with pa.OSFile(str(tmp_path / "stream.arrow"), "wb") as sink:  # what save_to_disk writes
        with pa.ipc.new_stream(sink, PROMPTS.schema) as w:
            for batch in PROMPTS.to_batches(max_chunksize=2):  # three record batches
                w.write_batch(batch)
    assert load_prompts(tmp_path / "stream.arrow") == ["ja", "mi", "lu", "ko", "be"]
    with pa.OSFile(str(tmp_path / "file.arrow"), "wb") as sink:  # the IPC file format too
        with pa.ipc.new_file(sink, PROMPTS.schema) as w:
            w.write_table(PROMPTS)
    assert load_prompts(tmp_path / "file.arrow") == ["ja", "mi", "lu", "ko", "be"]
    other = pa.table({"question": ["a?", "b?"]})
    pq.write_table(other, tmp_path / "q.parquet")
    assert load_prompts(tmp_path / "q.parquet", column="question") == ["a?", "b?"]


def test_save_to_disk_shards_are_read_in_state_json_order(tmp_path: Path) -> None:
    save_to_disk(tmp_path / "ds", PROMPTS, num_shards=3)  # [ja, mi], [lu, ko], [be]
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [
        "data-00000-of-00003.arrow", "data-00001-of-00003.arrow", "data-00002-of-00003.arrow",
        "dataset_info.json", "state.json"]  # fmt: skip
    assert load_prompts(tmp_path / "ds") == ["ja", "mi", "lu", "ko", "be"]
    state_file = tmp_path / "ds" / "state.json"
    state = json.loads(state_file.read_text())
    state["_data_files"].reverse()  # the order is state.json's, not the names'
    state_file.write_text(json.dumps(state))
    assert load_prompts(tmp_path / "ds") == ["be", "lu", "ko", "ja", "mi"]


def test_dataset_dict_takes_the_split(tmp_path: Path) -> None:
    save_dict_to_disk(tmp_path / "dd", {"train": PROMPTS, "test": pa.table({"prompt": ["zu"]})})
    assert load_prompts(tmp_path / "dd") == ["ja", "mi", "lu", "ko", "be"]  # train by default
    assert load_prompts(tmp_path / "dd", split="test") == ["zu"]
    with pytest.raises(TailorError, match=r"without the split 'dev'; its splits: train, test"):
        load_prompts(tmp_path / "dd", split="dev")
    with pytest.raises(TailorError, match="for a DatasetDict directory"):
        load_prompts(tmp_path / "dd" / "train", split="train")  # a plain Dataset has no splits


def test_conversational_column_goes_through_the_chat_template(tmp_path: Path) -> None:
    table = pa.table({"prompt": [CHAT, [*CHAT, {"role": "assistant", "content": "yo"}]]})
    assert str(table.schema.field("prompt").type) == (
        "list<item: struct<role: string, content: string>>"
    )  # what datasets stores for a list of {"role", "content"} dicts
    save_to_disk(tmp_path / "chat", table)
    prompts = load_prompts(tmp_path / "chat")
    assert prompts == [CHAT, [*CHAT, {"role": "assistant", "content": "yo"}]]
    assert render_prompts(prompts, ChatTokenizer()) == [
        "<user>hi<assistant>",
        "<user>hi<assistant>yo<assistant>",
    ]


def test_preference_pairs_standard_and_conversational(tmp_path: Path) -> None:
    standard = pa.table({"prompt": ["p", ""], "chosen": ["a", "c"], "rejected": ["b", "d"],
                         "score": [1.0, 2.0]})  # fmt: skip
    pq.write_table(standard, tmp_path / "prefs.parquet")
    assert load_preferences(tmp_path / "prefs.parquet") == [
        PreferencePair("p", "a", "b"),
        PreferencePair("", "c", "d"),
    ]
    conv = pa.table({
        "prompt": [CHAT],
        "chosen": [[{"role": "assistant", "content": "mia"}]],
        "rejected": [[{"role": "assistant", "content": "bob"}]],
    })  # fmt: skip
    save_dict_to_disk(tmp_path / "dd", {"train": standard, "test": conv})
    assert load_preferences(tmp_path / "dd") == load_preferences(tmp_path / "prefs.parquet")
    pairs = load_preferences(tmp_path / "dd", split="test")
    assert pairs[0].prompt == CHAT
    assert render_pairs(pairs, ChatTokenizer()) == [
        PreferencePair("<user>hi<assistant>", "mia", "bob")
    ]
    pq.write_table(standard.drop_columns(["rejected"]), tmp_path / "half.parquet")
    with pytest.raises(TailorError, match=r"half.parquet' has no column 'rejected'; its columns: "
                       r"prompt, chosen, score"):  # fmt: skip
        load_preferences(tmp_path / "half.parquet")


@pytest.mark.parametrize(
    "name, data, match",
    [
        (
            "p.parquet",
            pa.table({"text": ["a"], "id": [1]}),
            r"no column 'prompt'; its columns: text, id",
        ),
        ("p.parquet", pa.table({"prompt": pa.array([], pa.string())}), "holds no prompts"),
        (
            "p.parquet",
            pa.table({"prompt": ["a", None]}),
            r"p.parquet: row 1: 'prompt' must be a non-empty list of messages, got None",
        ),
        ("p.parquet", pa.table({"prompt": [1, 2]}), r"row 0: 'prompt' must be a non-empty list"),
        ("p.parquet", pa.table({"prompt": [[{"role": "user"}]]}), "message 0 must be"),
        ("p.parquet", b"PAR1 not really", r"p.parquet' is not a Parquet file"),
        ("p.arrow", b"", r"p.arrow' is not an Arrow IPC stream or file"),
        ("p.arrow", b"\x00" * 64, r"p.arrow' is not an Arrow IPC stream or file"),
        ("p.arrow", "parquet", r"p.arrow' is not an Arrow IPC stream or file"),
    ],
)
def test_bad_tables(tmp_path: Path, name: str, data: object, match: str) -> None:
    f = tmp_path / name
    if isinstance(data, pa.Table):
        pq.write_table(data, f)
    elif data == "parquet":  # a parquet file named .arrow
        pq.write_table(PROMPTS, f)
    else:
        f.write_bytes(data)
    with pytest.raises(TailorError, match=match):
        load_prompts(f)


def test_bad_save_to_disk_directories(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TailorError, match=r"save_to_disk directory .* it has no state\.json"):
        load_prompts(tmp_path / "empty")
    save_to_disk(tmp_path / "ds", PROMPTS, num_shards=2)
    state_file = tmp_path / "ds" / "state.json"
    good = state_file.read_text()
    for state, match in (
        ({"_data_files": [{"filename": "../p.parquet"}]}, "a file name in the directory"),
        ({"_data_files": [{"filename": "/etc/passwd"}]}, "a file name in the directory"),
        ({"_data_files": "data.arrow"}, '"_data_files": \\[{"filename"'),
        ({"_data_files": [{"filename": "data-00009-of-00010.arrow"}]}, "does not exist"),
        ({"_data_files": []}, "holds no prompts"),
    ):
        state_file.write_text(json.dumps(state))
        with pytest.raises(TailorError, match=match):
            load_prompts(tmp_path / "ds")
    state_file.write_text("{not json")
    with pytest.raises(TailorError, match=r"state\.json '.*' is not readable JSON"):
        load_prompts(tmp_path / "ds")
    state_file.write_text(good)
    (tmp_path / "ds" / "data-00001-of-00002.arrow").write_bytes(b"junk")
    with pytest.raises(TailorError, match=r"data-00001-of-00002.arrow' is not an Arrow IPC"):
        load_prompts(tmp_path / "ds")
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "dataset_dict.json").write_text('["train"]')
    with pytest.raises(TailorError, match=r'dataset_dict.json must be \{"splits"'):
        load_prompts(tmp_path / "dd")


def test_options_that_do_not_apply_are_refused(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a\n")
    (tmp_path / "p.jsonl").write_text('{"q": "a"}\n')
    pq.write_table(PROMPTS, tmp_path / "p.parquet")
    with pytest.raises(TailorError, match=r"a \.txt file has no columns"):
        load_prompts(tmp_path / "p.txt", column="q")
    assert load_prompts(tmp_path / "p.jsonl", column="q") == ["a"]  # the JSON key
    for f in ("p.txt", "p.jsonl", "p.parquet"):
        with pytest.raises(TailorError, match="for a DatasetDict directory"):
            load_prompts(tmp_path / f, split="train")
    with pytest.raises(TailorError, match="does not exist"):
        load_prompts(tmp_path / "none.parquet")


def test_without_pyarrow_the_message_says_what_to_install(tmp_path, monkeypatch) -> None:
    pq.write_table(PROMPTS, tmp_path / "p.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    with pytest.raises(TailorError, match=r"needs pyarrow: pip install 'tailor-rl\[lm\]'"):
        load_prompts(tmp_path / "p.parquet")


def test_cli_reads_datasets_and_refuses_bad_ones_with_exit_2(
    tmp_path, tmp_path_factory, capsys
) -> None:
    pytest.importorskip("transformers")
    import torch

    from tailor.cli import main
    from test_lm_model import tiny_model_dir

    prior = str(tiny_model_dir(tmp_path_factory))
    questions = pa.table({"question": ["ja", "mi", "lu"], "n": [1, 2, 3]})
    save_dict_to_disk(tmp_path / "dd", {"train": PROMPTS, "test": questions})
    pairs = pa.table({"prompt": ["", "m"], "chosen": ["mia", "ia"], "rejected": ["bob", "ob"]})
    pq.write_table(pairs, tmp_path / "prefs.parquet")

    def customize(out: str, *extra: str) -> list[str]:
        return ["lm", "customize", "--prior", prior, "--out", str(tmp_path / out), "--quiet",
                "--steps", "1", "--batch-size", "8", *extra]  # fmt: skip

    threads = torch.get_num_threads()
    try:
        kl = customize("kl", "--method", "kl", "--reward", "ends-with-vowel", "--prompts-file")
        kl += [str(tmp_path / "dd"), "--prompts-split", "test", "--prompt-column", "question"]
        assert main(kl) == 0
        meta = json.loads((tmp_path / "kl" / "tailor.json").read_text())
        assert meta["prompts"] == ["ja", "mi", "lu"] and meta["prompts_split"] == "test"
        dpo = customize("dpo", "--method", "dpo", "--preferences", str(tmp_path / "prefs.parquet"))
        assert main(dpo) == 0
        meta = json.loads((tmp_path / "dpo" / "tailor.json").read_text())
        assert (meta["data"]["source"], meta["data"]["pairs"]) == ("preference file", 2)
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    bad = customize("bad", "--method", "kl", "--reward", "ends-with-vowel")
    for extra, needle in (
        (["--prompts-file", str(tmp_path / "dd"), "--prompts-split", "test"],
         "has no column 'prompt'; its columns: question, n"),
        (["--prompts-file", str(tmp_path / "dd"), "--prompts-split", "dev"],
         "without the split 'dev'; its splits: train, test"),
        (["--prompts-split", "test"], "--prompt-column and --prompts-split need --prompts-file"),
        (["--preferences-split", "test"], "--preferences-split needs --preferences"),
    ):  # fmt: skip
        assert main([*bad, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "bad").exists()  # refused before the run directory is made
