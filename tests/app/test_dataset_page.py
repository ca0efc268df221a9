"""The app frame and Dataset page, through Streamlit's AppTest, on the bundled data."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from spectrum_core.workspace import Workspace
from tests.conftest import ROOT


def query_param(app, name: str) -> str:
    """A query parameter as the page set it (older Streamlit's AppTest lists every value)."""
    value = app.query_params[name]
    return value[-1] if isinstance(value, list) else value


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRUM_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    return at


def metric_values(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_first_open_loads_the_demo(app):
    app.run()
    assert not app.exception, app.exception
    assert metric_values(app) == {
        "Rows read": "2,312",
        "Pairs kept": "2,303",
        "Rows rejected": "9",
        "Duplicates merged": "0",
    }
    assert query_param(app, "dataset") == "1"
    assert len(app.get("plotly_chart")) == 2


def test_load_the_second_bundled_dataset_and_survive_a_reload(app):
    app.run()
    bundled = [s for s in app.selectbox if s.label == "Bundled dataset"][0]
    bundled.set_value("LLaMA-Factory DPO demo (300 rows)")
    [b for b in app.button if b.label == "Load bundled dataset"][0].click()
    app.run()
    assert not app.exception
    assert metric_values(app)["Duplicates merged"] == "5"
    assert query_param(app, "dataset") == "2"
    # A reload is a fresh session; the workspace and the URL bring the same dataset back.
    again = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    again.query_params["dataset"] = "2"
    again.run()
    assert metric_values(again)["Pairs kept"] == "295"


def load_local_file(app, path) -> None:
    app.run()
    [t for t in app.text_input if t.label.startswith("Path to a file")][0].input(str(path))
    app.run()
    [b for b in app.button if b.label == "Load local file"][0].click()
    app.run()
    assert not app.exception


def test_bad_local_file_shows_the_reason(app, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nhi,there\n")
    load_local_file(app, bad)
    assert "could not be used" in app.error[0].value
    assert "No accepted schema" in app.code[0].value
    assert len(Workspace(tmp_path / "ws").datasets()) == 1


def test_html_in_responses_is_shown_as_text(app, tmp_path):
    evil = tmp_path / "evil.jsonl"
    evil.write_text(
        json.dumps(
            {
                "prompt": "hi",
                "chosen": "<script>alert(1)</script> **bold** [x](javascript:1)",
                "rejected": "<img src=x onerror=alert(2)>",
            }
        )
        + "\n"
    )
    load_local_file(app, evil)
    assert metric_values(app)["Pairs kept"] == "1"
    # Responses reach the page only as dataframe cells and code blocks, which show text verbatim;
    # no markdown or HTML element carries them.
    table = app.dataframe[-1].value
    assert table["chosen"].iloc[0].startswith("<script>alert(1)</script>")
    rendered_markup = " ".join(m.value for m in [*app.markdown, *app.caption])
    assert "<script>" not in rendered_markup and "onerror" not in rendered_markup


def test_a_file_name_with_markup_is_shown_as_typed(app, tmp_path):
    name = "**bold** [x](javascript:alert) :red[y].jsonl"
    path = tmp_path / name
    path.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n")
    load_local_file(app, path)
    assert metric_values(app)["Pairs kept"] == "1"
    heading = app.subheader[0].value
    # every character markdown or a Streamlit shortcode would read is escaped, so it shows as typed
    assert heading == r"\*\*bold\*\* \[x\]\(javascript\:alert\) \:red\[y\]\.jsonl"
    assert all("](javascript" not in c.value for c in app.caption)


def test_a_shared_server_asks_for_a_token_and_records_its_user(app, monkeypatch):
    from spectrum_core.access import TOKENS_ENV

    monkeypatch.setenv(TOKENS_ENV, "ana:ana-4f9c2e7b1d8a6035,ben:ben-0a1b2c3d4e5f6789")
    app.run()
    assert not app.exception, app.exception
    assert not app.metric  # nothing of the workspace before a login
    token = [t for t in app.text_input if t.label == "Access token"][0]
    token.input("wrong-token-0000000000").run()
    assert "not valid" in app.error[0].value and not app.metric
    [t for t in app.text_input if t.label == "Access token"][0].input("ben-0a1b2c3d4e5f6789").run()
    assert not app.exception, app.exception
    assert metric_values(app)["Pairs kept"] == "2,303"
    assert "Signed in as ben" in [c.value for c in app.sidebar.caption]
    assert not [t for t in app.text_input if t.label.startswith("Your name")]  # no free text box
