"""The same real HH-RLHF pairs written in every accepted schema and file format load to the same
pairs: same prompt, same responses, hence the same content-derived pair ids."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from spectrum_core.data import SCHEMAS, SchemaError, load_preferences

N_PAIRS = 30


def to_hh(messages: list[dict]) -> str:
    names = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages)


@pytest.fixture(scope="module")
def sample(hh_dataset):
    return hh_dataset.pairs.head(N_PAIRS).reset_index(drop=True)


def schema_rows(schema: str, pairs: pd.DataFrame) -> list[dict]:
    rows = []
    for i, p in pairs.iterrows():
        prompt, chosen, rejected = list(p["prompt"]), p["chosen"], p["rejected"]
        a_wins = i % 2 == 0
        a, b = (chosen, rejected) if a_wins else (rejected, chosen)
        if schema == "trl-explicit":
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "id": i})
        elif schema == "trl-explicit-conversational":
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "id": i,
                }
            )
        elif schema == "trl-implicit-conversational":
            rows.append(
                {
                    "chosen": prompt + [{"role": "assistant", "content": chosen}],
                    "rejected": prompt + [{"role": "assistant", "content": rejected}],
                    "id": i,
                }
            )
        elif schema == "trl-implicit-transcript":
            rows.append(
                {
                    "chosen": to_hh(prompt + [{"role": "assistant", "content": chosen}]),
                    "rejected": to_hh(prompt + [{"role": "assistant", "content": rejected}]),
                    "id": i,
                }
            )
        elif schema == "ab-label":
            # WIMHF numeric labels: 1 = response_A preferred, 0 = response_B; letters also work.
            label = (1 if a_wins else 0) if i % 4 < 2 else ("A" if a_wins else "B")
            rows.append({"prompt": prompt, "response_A": a, "response_B": b, "label": label, "id": i})
        elif schema == "icai":
            ta = to_hh(prompt + [{"role": "assistant", "content": a}])
            tb = to_hh(prompt + [{"role": "assistant", "content": b}])
            rows.append({"text_a": ta, "text_b": tb, "preferred_text": "text_a" if a_wins else "text_b", "id": i})
        elif schema == "llamafactory-sharegpt":
            conv = [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]} for m in prompt]
            rows.append(
                {
                    "conversations": conv,
                    "chosen": {"from": "gpt", "value": chosen},
                    "rejected": {"from": "gpt", "value": rejected},
                    "id": i,
                }
            )
        else:
            raise AssertionError(schema)
    return rows


EXPECTED_SCHEMA = {
    "trl-explicit": "trl-explicit",
    "trl-explicit-conversational": "trl-explicit",
    "trl-implicit-conversational": "trl-implicit",
    "trl-implicit-transcript": "trl-implicit",
    "ab-label": "ab-label",
    "icai": "icai",
    "llamafactory-sharegpt": "llamafactory",
}


def write(rows: list[dict], path, fmt: str):
    """Write rows in a file format; nested values become JSON text where the format is flat."""
    if fmt.startswith("parquet") or fmt == "hf-datasets":
        # Columnar formats need one type per column: mixed 1/0/"A"/"B" labels become text.
        rows = [dict(r, label=str(r["label"])) if "label" in r else r for r in rows]
    if fmt in ("jsonl", "jsonl.gz"):
        text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
        data = text.encode()
        path = path.with_suffix("." + fmt)
        path.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)
    elif fmt in ("json", "json.gz"):
        data = json.dumps(rows, ensure_ascii=False, indent=1).encode()
        path = path.with_suffix("." + fmt)
        path.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)
    elif fmt in ("csv", "tsv", "csv.gz"):
        flat = pd.DataFrame(
            [
                {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for k, v in r.items()}
                for r in rows
            ]
        )
        path = path.with_suffix("." + fmt)
        flat.to_csv(
            path, index=False, sep="\t" if fmt == "tsv" else ",", compression="gzip" if fmt.endswith(".gz") else None
        )
    elif fmt in ("parquet", "parquet.gz"):
        path = path.with_suffix(".parquet")
        pd.DataFrame(rows).to_parquet(path, index=False)
        if fmt.endswith(".gz"):
            gz = path.with_suffix(".parquet.gz")
            gz.write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
            path = gz
    elif fmt == "hf-datasets":
        import datasets

        path = path.with_suffix("")
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    else:
        raise AssertionError(fmt)
    return path


@pytest.mark.parametrize("schema", list(EXPECTED_SCHEMA))
def test_every_schema_gives_the_same_pairs(tmp_path, sample, schema):
    path = write(schema_rows(schema, sample), tmp_path / schema, "jsonl")
    dataset = load_preferences(path)
    assert dataset.report.schema == EXPECTED_SCHEMA[schema]
    assert dataset.report.rows_kept == N_PAIRS and dataset.report.is_consistent()
    assert list(dataset.pairs["pair_id"]) == list(sample["pair_id"])
    assert list(dataset.pairs["metadata"].map(lambda m: m["id"])) == list(range(N_PAIRS))


@pytest.mark.parametrize(
    "fmt", ["jsonl", "jsonl.gz", "json", "json.gz", "csv", "csv.gz", "tsv", "parquet", "parquet.gz", "hf-datasets"]
)
@pytest.mark.parametrize("schema", ["trl-explicit-conversational", "ab-label", "icai", "llamafactory-sharegpt"])
def test_every_format_gives_the_same_pairs(tmp_path, sample, schema, fmt):
    path = write(schema_rows(schema, sample), tmp_path / "pairs", fmt)
    dataset = load_preferences(path)
    assert dataset.report.file_format == fmt
    assert dataset.report.rows_kept == N_PAIRS, dataset.report.summary()
    assert list(dataset.pairs["pair_id"]) == list(sample["pair_id"])


def test_hf_dataset_dict_keeps_split_name(tmp_path, sample):
    import datasets

    rows = schema_rows("trl-explicit", sample)
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:20]), "test": datasets.Dataset.from_list(rows[20:])}
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    dataset = load_preferences(tmp_path / "dd")
    assert dataset.report.rows_kept == N_PAIRS
    assert dataset.pairs["metadata"].map(lambda m: m["hf_split"]).tolist() == ["train"] * 20 + ["test"] * 10
    assert dataset.pairs["source"].iloc[20] == "split test row 1"


def test_llamafactory_alpaca_and_system(tmp_path):
    rows = [
        {
            "instruction": "Name a colour.",
            "input": "Answer in one word.",
            "system": "Be brief.",
            "chosen": "Blue.",
            "rejected": "I cannot help with that.",
        }
    ]
    path = write(rows, tmp_path / "alpaca", "json")
    pair = load_preferences(path).pairs.iloc[0]
    assert pair["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a colour.\n\nAnswer in one word."},
    ]


def test_plain_text_implicit_prompt_is_the_shared_prefix(tmp_path):
    rows = [
        {
            "chosen": "Question: is the sky blue? Answer: yes, on a clear day.",
            "rejected": "Question: is the sky blue? Answer: no.",
        },
        {"chosen": "Completely different", "rejected": "Nothing shared"},
    ]
    dataset = load_preferences(write(rows, tmp_path / "plain", "jsonl"))
    first, second = dataset.pairs.iloc[0], dataset.pairs.iloc[1]
    assert first["prompt"] == [{"role": "user", "content": "Question: is the sky blue? Answer:"}]
    assert (first["chosen"], first["rejected"]) == ("yes, on a clear day.", "no.")
    assert second["prompt"] == [] and dataset.report.pairs_without_prompt == 1


def test_column_map(tmp_path, sample):
    rows = [
        {"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]}
        for r in schema_rows("trl-explicit", sample)
    ]
    path = write(rows, tmp_path / "mapped", "jsonl")
    with pytest.raises(SchemaError) as error:
        load_preferences(path)
    message = str(error.value)
    assert "question, good, bad" in message
    assert all(name in message for name in SCHEMAS)
    dataset = load_preferences(path, column_map={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert dataset.report.schema == "trl-explicit"
    assert list(dataset.pairs["pair_id"]) == list(sample["pair_id"])


def test_forced_schema(tmp_path, sample):
    # LLaMA-Factory's bundled file also fits trl-explicit; forcing it ignores the conversation.
    rows = schema_rows("trl-explicit", sample)
    path = write(rows, tmp_path / "forced", "jsonl")
    assert load_preferences(path, schema="trl-explicit").report.schema == "trl-explicit"
    with pytest.raises(SchemaError, match="needs columns"):
        load_preferences(path, schema="ab-label")
