"""Dataset page: add preference data, read its load report, browse pairs, compare lengths."""

from __future__ import annotations

import hashlib
import os
import re

import pandas as pd
import streamlit as st

from app_pages.frame import BUNDLED_DATA, build_frame, escape_markdown, select_dataset
from spectrum_core.charts import length_histogram, length_scatter
from spectrum_core.data import SCHEMAS, DataLoadError, SchemaError
from spectrum_core.data.messages import render_plain

MAX_UPLOAD_MB = int(os.environ.get("SPECTRUM_MAX_UPLOAD_MB", "200"))
UPLOAD_TYPES = ["jsonl", "json", "csv", "tsv", "parquet", "gz", "ndjson", "pq"]

frame = build_frame()
workspace = frame.workspace


def parse_column_map(text: str) -> dict[str, str]:
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        field, sep, column = item.partition("=")
        if not sep:
            raise SchemaError(f"Column map entries look like field=column; got {item!r}.")
        mapping[field.strip()] = column.strip()
    return mapping


def add(source: str) -> None:
    """Button callback (runs before the page redraws): load the chosen source into the workspace
    and make it current, or keep the error to show."""
    st.session_state.pop("add_error", None)
    try:
        options = {
            "schema": None if st.session_state["schema"] == "detect" else st.session_state["schema"],
            "column_map": parse_column_map(st.session_state["column_map"]) or None,
        }
        if source == "bundled":
            choice = st.session_state["bundled_choice"]
            path, name = BUNDLED_DATA[choice], choice.split(" (")[0]
        elif source == "local":
            path, name = os.path.expanduser(st.session_state["local_path"].strip()), None
        else:
            uploaded = st.session_state["upload"]
            data = uploaded.getvalue()
            safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", uploaded.name)[-120:] or "upload"
            path = workspace.root / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}-{safe_name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)  # kept as bytes and parsed by the loader; never unpickled
            name = uploaded.name
        record = workspace.add_dataset(path, name=name, user=frame.user, **options)
    except (DataLoadError, SchemaError, OSError) as exc:
        st.session_state["add_error"] = str(exc)
        return
    select_dataset(record["id"])


st.title("Dataset")
with st.expander("Add preference data", expanded=frame.dataset_id is None or "add_error" in st.session_state):
    st.selectbox(
        "Schema", ["detect", *SCHEMAS], key="schema", help="Leave on detect unless detection picks the wrong one."
    )
    st.text_input(
        "Column map (optional)",
        key="column_map",
        help="Your columns for the fields, e.g. prompt=question, chosen=good, rejected=bad",
    )
    bundled, local, upload = st.tabs(["Bundled", "Local file", "Upload"])
    with bundled:
        st.selectbox("Bundled dataset", list(BUNDLED_DATA), key="bundled_choice")
        st.button("Load bundled dataset", on_click=add, args=("bundled",))
    with local:
        path = st.text_input("Path to a file or a save_to_disk folder on this machine", key="local_path")
        st.button("Load local file", disabled=not path.strip(), on_click=add, args=("local",))
    with upload:
        uploaded = st.file_uploader(
            f"JSONL, JSON, CSV, TSV or Parquet, optionally .gz (up to {MAX_UPLOAD_MB} MB)",
            type=UPLOAD_TYPES,
            key="upload",
            max_upload_size=MAX_UPLOAD_MB,
        )
        st.button("Load uploaded file", disabled=uploaded is None, on_click=add, args=("upload",))
    if "add_error" in st.session_state:
        st.error("This file could not be used. Nothing was added to the workspace.")
        # The reason quotes file contents; show it verbatim, never as markup.
        st.code(st.session_state["add_error"], language=None, wrap_lines=True)

dataset = frame.dataset()
if dataset is None:
    st.info("Add a dataset to begin.")
    st.stop()
record = workspace.dataset(frame.dataset_id)
report = dataset.report

st.subheader(escape_markdown(record["name"]))
st.caption(
    f"{escape_markdown(record['source_path'])} · {report.file_format} · schema {report.schema} · "
    f"added {record['created_at'][:16].replace('T', ' ')} by {record['created_by']}"
)
read, kept, rejected, merged = st.columns(4)
read.metric("Rows read", f"{report.rows_read:,}")
kept.metric("Pairs kept", f"{report.rows_kept:,}")
rejected.metric("Rows rejected", f"{report.rows_rejected:,}")
merged.metric("Duplicates merged", f"{report.duplicates_merged:,}")
for warning in report.warnings:
    st.warning(escape_markdown(warning))
if report.pairs_without_prompt:
    st.caption(f"{report.pairs_without_prompt:,} pairs have no prompt (their texts share no prefix).")
if report.conflicting_pairs:
    st.caption(f"{report.conflicting_pairs:,} pairs also appear with chosen and rejected swapped.")
if report.rejections:
    with st.expander(
        f"Rejected rows ({report.rows_rejected:,}): "
        + ", ".join(f"{reason} {n}" for reason, n in report.rejection_counts().items())
    ):
        st.dataframe(
            pd.DataFrame(
                [
                    {"where": r.location, "field": r.field or "", "reason": r.reason, "detail": r.detail}
                    for r in report.rejections
                ]
            ),
            hide_index=True,
            width="stretch",
        )
if report.duplicates:
    with st.expander(f"Merged duplicates ({report.duplicates_merged:,})"):
        st.dataframe(
            pd.DataFrame(
                [{"where": d.location, "same as": d.kept_location, "pair": d.pair_id} for d in report.duplicates]
            ),
            hide_index=True,
            width="stretch",
        )

pairs = dataset.pairs
st.subheader("Response lengths")
unit = st.radio("Unit", ["words", "chars"], horizontal=True, label_visibility="collapsed")
left, right = st.columns(2)
left.plotly_chart(length_histogram(pairs, unit), width="stretch")
right.plotly_chart(length_scatter(pairs, unit), width="stretch")

st.subheader("Pairs")
split_counts = pairs["split"].value_counts()
filter_col, search_col = st.columns([1, 2])
split = filter_col.radio(
    "Split",
    ["all", "train", "held_out"],
    horizontal=True,
    format_func=lambda s: f"{s} ({split_counts.get(s, len(pairs)) if s != 'all' else len(pairs):,})",
)
query = search_col.text_input("Search prompt and responses", help="Case-insensitive text, e.g. sorry")
view = pairs if split == "all" else pairs[pairs["split"] == split]
if query:
    needle = query.lower()
    hits = (
        view["chosen"].str.lower().str.contains(needle, regex=False)
        | view["rejected"].str.lower().str.contains(needle, regex=False)
        | view["prompt"].map(lambda p: needle in render_plain(p).lower())
    )
    view = view[hits]
table = pd.DataFrame(
    {
        "pair": view["pair_id"],
        "split": view["split"],
        "last user turn": view["prompt"].map(
            lambda p: next((m["content"] for m in reversed(p) if m["role"] == "user"), "")
        ),
        "chosen": view["chosen"],
        "rejected": view["rejected"],
    }
)
st.caption(f"{len(view):,} pairs. Select a row to read it in full.")
selection = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    height=320,
    on_select="rerun",
    selection_mode="single-row",
    key="pairs_table",
)
rows = selection.selection.rows if selection else []
if rows:
    pair = view.iloc[rows[0]]
    st.markdown(f"**Pair `{pair['pair_id']}`** · {escape_markdown(pair['source'])} · {escape_markdown(pair['split'])}")
    for message in pair["prompt"]:
        st.caption(escape_markdown(message["role"]))
        st.code(message["content"], language=None, wrap_lines=True)
    chosen_col, rejected_col = st.columns(2)
    chosen_col.markdown("**Chosen**")
    chosen_col.code(pair["chosen"], language=None, wrap_lines=True)
    rejected_col.markdown("**Rejected**")
    rejected_col.code(pair["rejected"], language=None, wrap_lines=True)
    if pair["metadata"]:
        with st.expander("Metadata"):
            st.json(pair["metadata"])
