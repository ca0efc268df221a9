"""Feature labels: Fightin' Words n-grams, offline labels, and the LLM path against a local fake."""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from spectrum_core.audit.labelling.llm_client import (
    MAX_RETRIES,
    NO_KEY,
    LabelCache,
    LabelingError,
    LLMEndpoint,
    _redact,
)
from spectrum_core.audit.labelling.llm_labeller import LLMLabeler
from spectrum_core.audit.labelling.offline import contrastive_ngrams, offline_label, top_activating_tokens
from spectrum_core.audit.labelling.parsing import parse_annotations, parse_label_list

SECRET = "sk-test-Zq9-never-store-me"

# --------------------------------------------------------------------------------------------
# Fightin' Words
# --------------------------------------------------------------------------------------------

HIGH = ["Sorry, I can't.", "sorry sorry no"]
LOW = ["Sure, I can!", "sure here it is"]


def test_contrastive_ngrams_matches_hand_computed_z() -> None:
    # Counts by hand. high: sorry x3, i, can't, no -> n_h = 6; low: sure x2, i, can, here, it, is
    # -> n_l = 7. With prior_scale 0.5 the prior is half the pooled counts: a_0 = 0.5 * 13 = 6.5.
    # "sorry": y_h = 3, y_l = 0, a = 1.5
    #   delta = log(4.5 / (6 + 6.5 - 3 - 1.5)) - log(1.5 / (7 + 6.5 - 0 - 1.5)) = log(4.5/8) - log(1.5/12)
    #   var   = 1/4.5 + 1/1.5
    expected_sorry = (math.log(4.5 / 8) - math.log(1.5 / 12)) / math.sqrt(1 / 4.5 + 1 / 1.5)
    assert expected_sorry == pytest.approx(1.595315, abs=1e-6)  # = log(4.5) / sqrt(8/9)

    result = dict(contrastive_ngrams(HIGH, LOW, ngram_range=(1, 1), min_count=1, prior_scale=0.5, top_k=50))
    assert result["sorry"] == pytest.approx(expected_sorry, rel=1e-12)
    assert "can't" in result  # the apostrophe keeps the word whole
    assert not {"sure", "can", "here"} & set(result)  # over-represented in LOW: z < 0
    assert next(iter(result)) == "sorry"


def _reference_fightin_words(high: list[str], low: list[str], scale: float) -> dict[str, float]:
    """Unigram-only, plain-Python Fightin' Words, written independently of the module."""

    def tokens(texts: list[str]) -> Counter[str]:
        return Counter(w for t in texts for w in re.findall(r"\w+(?:'\w+)*", t.lower().replace("’", "'")))

    ch, cl = tokens(high), tokens(low)
    vocab = set(ch) | set(cl)
    n_h, n_l = sum(ch.values()), sum(cl.values())
    a0 = scale * (n_h + n_l)
    out = {}
    for w in vocab:
        a = scale * (ch[w] + cl[w])
        log_odds_high = math.log((ch[w] + a) / (n_h + a0 - ch[w] - a))
        log_odds_low = math.log((cl[w] + a) / (n_l + a0 - cl[w] - a))
        delta = log_odds_high - log_odds_low
        out[w] = delta / math.sqrt(1 / (ch[w] + a) + 1 / (cl[w] + a))
    return out


def test_contrastive_ngrams_agrees_with_reference_and_filters() -> None:
    high = ["I’m sorry, I can’t help with that.", "Sorry, I don't know.", "I can't do that, sorry."]
    low = ["Sure! Here is how to do that.", "Here you go: step one, step two.", "Sure, do that now."]
    reference = _reference_fightin_words(high, low, 0.1)
    got = contrastive_ngrams(high, low, ngram_range=(1, 1), min_count=2, top_k=100, prior_scale=0.1)
    assert got, "expected some over-represented words"
    for word, z in got:
        assert z == pytest.approx(reference[word], rel=1e-9)
    counts = Counter(re.findall(r"\w+(?:'\w+)*", " ".join(high + low).lower().replace("’", "'")))
    kept = [w for w, z in reference.items() if z > 0 and counts[w] >= 2]
    expected = sorted(kept, key=lambda w: (-reference[w], w))
    assert [w for w, _ in got] == expected
    # Curly and straight apostrophes merge ("can't" x2); "i'm" is seen once, below min_count.
    assert "can't" in dict(got) and "i'm" not in dict(got)
    top2 = [w for w, _ in contrastive_ngrams(high, low, top_k=2)]
    assert top2 == [w for w, _ in contrastive_ngrams(high, low)][:2]
    assert contrastive_ngrams([], []) == [] and contrastive_ngrams(["!!"], ["??"]) == []


def test_contrastive_ngrams_on_hh_prefers_refusal_markers(hh_dataset) -> None:
    pairs = hh_dataset.pairs
    start = time.perf_counter()
    top = contrastive_ngrams(pairs["chosen"].tolist(), pairs["rejected"].tolist(), top_k=30)
    elapsed = time.perf_counter() - start
    print(f"\nHH chosen-vs-rejected top n-grams ({len(pairs)} pairs, {elapsed:.2f}s):")
    print(", ".join(f"{g} ({z:.2f})" for g, z in top))
    markers = {"sorry", "i'm not sure", "not sure", "i don't", "can't", "why"}
    assert markers & {g for g, _ in top}, f"no refusal/deflection marker in {top}"
    assert elapsed < 5


# --------------------------------------------------------------------------------------------
# Offline labels
# --------------------------------------------------------------------------------------------


def test_top_activating_tokens_normalises_and_sums() -> None:
    records = [
        ("Ġsorry", 1.0),
        (" sorry ", 2.0),
        ("▁can", 0.5),
        ("Ġ", 9.0),
        ("", 1.0),
        ("\n", 4.0),
        ("I", 1.5),
        ("nan", float("nan")),
    ]
    assert top_activating_tokens(records) == [("sorry", 3.0), ("I", 1.5), ("can", 0.5)]
    assert top_activating_tokens(records, top_k=1) == [("sorry", 3.0)]
    assert top_activating_tokens([]) == []


HH_LIKE_NGRAMS = [
    ("i", 7.8),
    ("sorry", 7.2),
    ("i'm", 6.8),
    ("what", 6.7),
    ("i don't", 6.5),
    ("i'm sorry", 5.8),
]


def test_offline_label_prefers_phrases_and_adds_probe() -> None:
    label = offline_label([("sorry", 3.0)], HH_LIKE_NGRAMS, "refusal", 0.62)
    assert label == "i don't / i'm sorry · ≈refusal (r=0.62)"  # "what", "i", "i'm": function words
    assert offline_label([("sorry", 3.0)], HH_LIKE_NGRAMS, "refusal", 0.62) == label  # deterministic
    assert offline_label(None, [("sorry", 2.0), ("can't help", 1.5)], "refusal", -0.45) == (
        "sorry / can't help · ≈refusal (r=-0.45)"
    )


def test_offline_label_drops_weak_probe_and_falls_back() -> None:
    assert offline_label([], [("sorry", 2.0)], "refusal", 0.29) == "sorry"
    assert offline_label([], [("sorry", 2.0)], "refusal", float("nan")) == "sorry"
    assert offline_label([], [("sorry", 2.0)], None, 0.9) == "sorry"
    assert offline_label([("Sorry", 3.0), ("can", 1.0), ("help", 0.5), ("x", 0.1)], [], None, None) == (
        "Sorry / help / x"
    )
    # Function words only: the probe, or "unlabelled", never "a / that / and".
    assert offline_label([("a", 3.0), ("that", 2.0)], [("and", 2.0), ("you're", 1.5), ("i'd", 1.0)], None, None) == (
        "unlabelled"
    )
    assert offline_label([], [("a", 2.0), ("them", 1.0)], "praise", 0.4) == "≈praise (r=0.40)"
    assert offline_label([], [], None, None) == "unlabelled"
    assert offline_label(None, None, "refusal", 0.1) == "unlabelled"
    assert offline_label([], [], "refusal", 0.5) == "≈refusal (r=0.50)"


# --------------------------------------------------------------------------------------------
# Reply parsing
# --------------------------------------------------------------------------------------------


def test_parse_label_list_formats() -> None:
    both = ["Apologetic refusal", "Weather talk"]
    assert parse_label_list('["Apologetic refusal", "Weather talk"]') == both
    assert parse_label_list('[{"label": "A b"}, {"name": "C"}]') == ["A b", "C"]
    assert parse_label_list('Sure:\n```json\n{"labels": ["A", "B"]}\n```') == ["A", "B"]
    numbered = "Candidates:\n1. **Apologetic refusal**\n2) Weather talk.\n- apologetic refusal"
    assert parse_label_list(numbered) == both
    assert parse_label_list("• one\n• two\n• three", limit=2) == ["one", "two"]
    long = parse_label_list("1. a b c d e f g h i j k")
    assert long == ["a b c d e f g h"]
    assert parse_label_list("Polite deflection") == ["Polite deflection"]
    assert parse_label_list("") == []


def test_parse_annotations_formats() -> None:
    assert parse_annotations("1: yes\n2: no\n3: Yes.", 3) == [True, False, True]
    assert parse_annotations("[1] **Yes**\nText 2 - no\n3. YES", 3) == [True, False, True]
    assert parse_annotations('["yes", "no"]', 2) == [True, False]
    assert parse_annotations("```json\n[true, false, true]\n```", 3) == [True, False, True]
    assert parse_annotations('{"1": "no", "2": "yes"}', 2) == [False, True]
    nested = '{"answers": [{"id": 1, "answer": "yes"}, {"id": 2, "answer": "no"}]}'
    assert parse_annotations(nested, 2) == [True, False]
    assert parse_annotations("yes\nno", 2) == [True, False]
    assert parse_annotations("1: yes\n3: no", 3) == [True, None, False]
    assert parse_annotations("I cannot tell.", 2) == [None, None]


# --------------------------------------------------------------------------------------------
# LLM path: the real openai client against a fake OpenAI-compatible server on 127.0.0.1
# --------------------------------------------------------------------------------------------

CANNED_LABELS = (
    "Here are my candidates:\n1. Apologises with the word sorry\n2. **Talks about the weather**\n"
    "- Uses formal legal language"
)
# Bodies that are not a chat completion with text, by path prefix: each must be a LabelingError.
BROKEN_BODIES = {
    "/not-json": "<html>proxy login</html>",
    "/no-choices": json.dumps({"choices": []}),
    "/no-message": json.dumps({"choices": [{}]}),
    "/not-text": json.dumps({"choices": [{"message": {"role": "assistant", "content": None}}]}),
}
# What the client must not pick up from the environment and send to a third-party endpoint.
OPENAI_ENV = {"OPENAI_API_KEY": "sk-openai-decoy", "OPENAI_ORG_ID": "org-decoy", "OPENAI_PROJECT_ID": "proj-decoy"}


class FakeHandler(BaseHTTPRequestHandler):
    """Deterministic chat completions: an annotator says yes when the label's keyword is in the text."""

    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, payload: str) -> None:
        data = payload.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _content(self, user: str) -> str:
        if self.server.scripted:
            return self.server.scripted.pop(0)
        if "candidate labels" in user:
            return CANNED_LABELS
        label = re.search(r"Concept: (.*)", user).group(1).lower()
        keyword = "sorry" if "apolog" in label else "weather" if "weather" in label else None
        texts = re.findall(r"^\[(\d+)\] (.*)$", user, flags=re.MULTILINE)
        return "\n".join(f"{i}: {'yes' if keyword and keyword in text.lower() else 'no'}" for i, text in texts)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        auth = self.headers.get("Authorization")
        self.server.requests.append({"path": self.path, "auth": auth, "body": body, "headers": dict(self.headers)})
        if self.path.startswith("/fail"):  # echoes the header: the error must still not show the key
            self._reply(500, json.dumps({"error": "boom", "auth": self.headers.get("Authorization")}))
            return
        for prefix, broken in BROKEN_BODIES.items():
            if self.path.startswith(prefix):
                self._reply(200, broken)
                return
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        content = self._content(body["messages"][-1]["content"])
        self._reply(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}))


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.requests: list[dict[str, Any]] = []
        self.scripted: list[str] = []  # replies to give, in order, before the deterministic ones

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPECTRUM_LLM_API_KEY", SECRET)
    for name, value in OPENAI_ENV.items():
        monkeypatch.setenv(name, value)
    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


SORRY = [f"I'm sorry, I can't help with request {i}." for i in range(10)]
OTHER = [f"Here is how to do task {i}, step by step." for i in range(10)]
# Weather appears evenly on both sides, so the weather label should be uninformative (AUC 0.5).
SORRY[:5] = [t + " The weather is nice." for t in SORRY[:5]]
OTHER[:5] = [t + " Check the weather first." for t in OTHER[:5]]
HELDOUT = SORRY + OTHER
ACTIVATIONS = [2.0 + 0.1 * i for i in range(10)] + [0.0] * 10


def test_label_feature_end_to_end_with_cache(fake_server: FakeServer, tmp_path: Path) -> None:
    endpoint = LLMEndpoint(base_url=fake_server.base + "/v1/", model="fake-model")
    cache_path = tmp_path / "labels.jsonl"
    labeler = LLMLabeler(endpoint, cache_path, timeout=5)

    results = labeler.label_feature(SORRY[5:8], OTHER[5:8], HELDOUT, ACTIVATIONS)
    assert [r["label"] for r in results] == [
        "Apologises with the word sorry",
        "Talks about the weather",
        "Uses formal legal language",
    ]
    assert results[0]["fidelity"] >= 0.9
    assert results[1]["fidelity"] == pytest.approx(0.5) and results[2]["fidelity"] == pytest.approx(0.5)

    # 1 proposal call + 3 labels x 2 batches of 10 texts.
    assert len(fake_server.requests) == 7
    assert {r["path"] for r in fake_server.requests} == {"/v1/chat/completions"}
    assert all(r["auth"] == f"Bearer {SECRET}" for r in fake_server.requests)
    assert all(r["body"]["temperature"] == 0 for r in fake_server.requests)
    assert all(r["body"]["model"] == "fake-model" for r in fake_server.requests)
    # Nothing of the OpenAI account in the environment goes to this endpoint.
    sent = json.dumps([r["headers"] for r in fake_server.requests])
    assert not any(value in sent for value in OPENAI_ENV.values())

    # The same requests again, from a fresh labeler on the same cache file: no HTTP at all.
    fresh = LLMLabeler(endpoint, cache_path, timeout=5)
    again = fresh.label_feature(SORRY[5:8], OTHER[5:8], HELDOUT, ACTIVATIONS)
    assert again == results
    assert len(fake_server.requests) == 7

    cache_text = cache_path.read_text(encoding="utf-8")
    assert len(cache_text.splitlines()) == 7
    assert SECRET not in cache_text and "Bearer" not in cache_text
    assert SECRET not in repr(labeler) and SECRET not in repr(endpoint)
    assert SECRET not in repr(vars(labeler))  # no client holding the key outlives a call


def test_annotate_and_fidelity(fake_server: FakeServer, tmp_path: Path) -> None:
    labeler = LLMLabeler(LLMEndpoint(fake_server.base, "fake-model"), tmp_path / "c.jsonl", timeout=5)
    answers = labeler.annotate("apologises", HELDOUT)
    assert answers == [True] * 10 + [False] * 10
    assert {r["path"] for r in fake_server.requests} == {"/chat/completions"}
    assert labeler.fidelity("apologises", HELDOUT, ACTIVATIONS) == pytest.approx(1.0)
    n = len(fake_server.requests)
    assert labeler.annotate("apologises", HELDOUT) == answers and len(fake_server.requests) == n
    # Undefined: every activation equal -> NaN without asking the LLM.
    assert math.isnan(labeler.fidelity("apologises", HELDOUT, [1.0] * len(HELDOUT)))
    assert math.isnan(labeler.fidelity("apologises", [], []))
    assert len(fake_server.requests) == n
    with pytest.raises(ValueError):
        labeler.fidelity("apologises", HELDOUT, [1.0])


def test_http_500_raises_labeling_error_naming_url(fake_server: FakeServer, tmp_path: Path) -> None:
    endpoint = LLMEndpoint(fake_server.base + "/fail", "fake-model")
    labeler = LLMLabeler(endpoint, tmp_path / "c.jsonl", timeout=5)
    with pytest.raises(LabelingError) as info:
        labeler.propose_labels(["a"], ["b"])
    message = str(info.value)
    assert f"{fake_server.base}/fail/chat/completions" in message and "HTTP 500" in message and "boom" in message
    assert SECRET not in message  # the body echoed the Authorization header
    assert len(fake_server.requests) == 1 + MAX_RETRIES  # the client's retries, then the error
    assert fake_server.requests[-1]["auth"] == f"Bearer {SECRET}"
    assert not (tmp_path / "c.jsonl").exists()  # failures are not cached


@pytest.mark.parametrize("prefix", sorted(BROKEN_BODIES))
def test_a_reply_that_is_no_completion_raises_labeling_error(fake_server: FakeServer, prefix: str) -> None:
    labeler = LLMLabeler(LLMEndpoint(fake_server.base + prefix, "m"), None, timeout=5)
    with pytest.raises(LabelingError) as info:
        labeler.annotate("x", ["y"])
    message = str(info.value)
    assert f"{fake_server.base}{prefix}/chat/completions" in message and SECRET not in message
    expected = "no text content" if prefix == "/not-text" else "unexpected response body"
    assert expected in message, message
    if prefix == "/not-json":
        assert "proxy login" in message  # the start of the body says what answered
    assert len(fake_server.requests) == 1 and len(labeler.cache) == 0  # a 200 is not retried, nor cached


def test_timeout_and_unreachable_raise_labeling_error(fake_server: FakeServer, tmp_path: Path) -> None:
    slow = LLMLabeler(LLMEndpoint(fake_server.base + "/slow", "m"), None, timeout=0.2)
    with pytest.raises(LabelingError, match=re.escape(f"{fake_server.base}/slow/chat/completions")) as info:
        slow.propose_labels(["a"], ["b"])
    assert f"no reply within 0.2 s, {1 + MAX_RETRIES} attempts" in str(info.value)

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = LLMLabeler(LLMEndpoint(f"http://127.0.0.1:{port}", "m"), None, timeout=2)
    with pytest.raises(LabelingError, match=f"127.0.0.1:{port}/chat/completions") as info:
        dead.annotate("x", ["y"])
    assert "APIConnectionError" in str(info.value) and "ConnectError" in str(info.value)

    for malformed in (f"http://127.0.0.1:{port}0000/v1", "http://[::1/v1", "not a url"):
        with pytest.raises(LabelingError):  # never a ValueError or an httpx error
            LLMLabeler(LLMEndpoint(malformed, "m"), None, timeout=2).annotate("x", ["y"])


def test_retry_of_missing_answers_and_no_key(fake_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECTRUM_LLM_API_KEY", raising=False)
    fake_server.scripted = ["1: yes\n2: no", "1: yes"]  # the first reply skips text 3
    labeler = LLMLabeler(LLMEndpoint(fake_server.base + "/v1", "m"), None, timeout=5)
    assert labeler.annotate("c", ["a", "b", "c"]) == [True, False, True]
    assert [r["path"] for r in fake_server.requests] == ["/v1/chat/completions"] * 2
    # No key set: the placeholder, never OPENAI_API_KEY from the environment.
    assert {r["auth"] for r in fake_server.requests} == {f"Bearer {NO_KEY}"}
    assert "[1] c" in fake_server.requests[1]["body"]["messages"][-1]["content"]


def test_query_string_and_credentials_in_the_base_url(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    query = "api-version=2024-06-01&key=k3y-in-query"
    host = fake_server.base.removeprefix("http://")
    labeler = LLMLabeler(LLMEndpoint(f"http://ana:s3cret@{host}/v1?{query}", "m"), tmp_path / "c.jsonl", timeout=5)
    with caplog.at_level(logging.DEBUG):
        assert labeler.annotate("apologises", SORRY[:2]) == [True, True]
    (request,) = fake_server.requests
    assert request["path"] == f"/v1/chat/completions?{query}"  # the query follows the path
    assert request["auth"] == "Basic " + base64.b64encode(b"ana:s3cret").decode()  # httpx's reading of user:pw@
    assert "/v1/chat/completions" in caplog.text  # httpx2 logged the request, redacted
    assert not any(s in caplog.text for s in ("s3cret", "k3y-in-query", "ana:", SECRET))
    assert not any(s in (tmp_path / "c.jsonl").read_text() for s in ("s3cret", "k3y-in-query", "ana:"))

    failing = LLMLabeler(LLMEndpoint(f"http://ana:s3cret@{host}/fail?{query}", "m"), None, timeout=5)
    with pytest.raises(LabelingError) as info:
        failing.annotate("x", ["y"])
    assert f"{fake_server.base}/fail/chat/completions failed: HTTP 500" in str(info.value)
    assert not any(s in str(info.value) for s in ("s3cret", "k3y-in-query", "ana:", "YW5hOnMzY3JldA=="))


def test_redact() -> None:
    url = "https://ana:p%40ss@llm.example/v1?api-version=2024&key=k3y-k3y&stream=1"
    text = f"{SECRET} ana p%40ss p@ss api-version=2024&key=k3y-k3y&stream=1 k3y-k3y HTTP 401"
    assert _redact(text, SECRET, url) == "*** *** *** *** *** *** HTTP 401"  # "1" is no secret
    basic = base64.b64encode(b"ana:p@ss").decode()  # what httpx sends for ana:p%40ss@, and a server may echo
    assert _redact(f"Authorization: Basic {basic}", None, url) == "Authorization: Basic ***"
    assert _redact(f"{SECRET} x", SECRET, "http://[::1/v1") == "*** x"  # a malformed URL still hides the key
    assert _redact("nothing", None) == "nothing"


def test_label_cache_roundtrip_and_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    cache = LabelCache(path)
    cache.put("k1", "reply one", model="m")
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"key": "k2", "cont')  # a crash mid-write
    reloaded = LabelCache(path)
    assert reloaded.get("k1") == "reply one" and reloaded.get("k2") is None and len(reloaded) == 1


def test_endpoint_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECTRUM_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("SPECTRUM_LLM_MODEL", raising=False)
    assert LLMEndpoint.from_env() is None
    monkeypatch.setenv("SPECTRUM_LLM_BASE_URL", "http://127.0.0.1:1/v1")
    assert LLMEndpoint.from_env() is None
    monkeypatch.setenv("SPECTRUM_LLM_MODEL", "some-model")
    monkeypatch.setenv("SPECTRUM_LLM_API_KEY", SECRET)
    endpoint = LLMEndpoint.from_env()
    assert endpoint == LLMEndpoint("http://127.0.0.1:1/v1", "some-model")
    assert endpoint.api_key() == SECRET and SECRET not in repr(endpoint)


def test_display_url_drops_credentials_and_query() -> None:
    endpoint = LLMEndpoint("https://ana:s3cret@llm.example:8443/v1?api_key=k3y#frag", "m")
    assert endpoint.display_url == "https://llm.example:8443/v1/chat/completions"
    assert endpoint.url.startswith("https://ana:s3cret@")  # the request itself still carries them
    assert endpoint.url.endswith("/v1/chat/completions?api_key=k3y")
    assert LLMEndpoint("http://h:99999/v1", "m").display_url == "http://h:99999/v1/chat/completions"
    assert LLMEndpoint("http://[::1/v1", "m").display_url == "<malformed URL>"


# An audit small enough to run for a labelling path: 30 pairs, short texts, token mode only.
TINY_AUDIT = dict(
    max_pairs=30,
    max_prompt_tokens=64,
    max_response_tokens=64,
    sae_training_tokens=20_000,
    modes=("token",),
    sae_seeds=0,
    topics=0,
    null_runs=0,  # these tests are about labels
)


def test_a_dead_endpoint_costs_a_warning_not_the_audit(tmp_path: Path, monkeypatch, bundled_model) -> None:
    from spectrum_core.audit.pipeline import AuditConfig
    from spectrum_core.audit.runner import run_audit_in_workspace
    from spectrum_core.workspace import Workspace
    from tests.conftest import LLAMAFACTORY_FILE

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SPECTRUM_LLM_BASE_URL", f"http://ana:s3cret@127.0.0.1:{port}/v1?api_key=k3y")
    monkeypatch.setenv("SPECTRUM_LLM_MODEL", "m")
    workspace = Workspace(tmp_path / "ws")
    config = AuditConfig(**TINY_AUDIT, llm_labelled_concepts=3, labelled_concepts=5)
    outcome = run_audit_in_workspace(workspace, LLAMAFACTORY_FILE, config)
    assert outcome is not None and not outcome.reused
    (warning,) = outcome.report.warnings
    assert "LLM labels skipped" in warning and f"127.0.0.1:{port}/v1/chat/completions" in warning
    labelled = outcome.concepts[outcome.concepts["label_source"].isin(["offline", "llm"])]
    assert len(labelled) == 5 + 5 and set(labelled["label_source"]) == {"offline"}  # 5 families, 5 features
    recorded = [workspace.job(outcome.job_id).error or "", json.dumps(workspace.audit_log()), warning]
    log = (tmp_path / "ws").rglob("*.jsonl")
    recorded += [path.read_text() for path in log]
    assert not any(secret in text for text in recorded for secret in ("s3cret", "k3y", "ana:"))


def test_function_words_and_snippets() -> None:
    from spectrum_core.audit.labelling.offline import is_function_words, snippet

    for term in ("a", "that and", "you're", "i'd", "i'm", "them in", ",", "It's"):
        assert is_function_words(term), term
    for term in ("kill", "you're welcome", "i don't", "can't", "not", "i’m sorry", "area"):
        assert not is_function_words(term), term
    tokens = [" I", " am", " so", " sorry", ",", " but", " I", " cannot", " help"]
    assert snippet(tokens, [0, 0, 0, 5, 0, 0, 0, 1, 0], radius=2) == "…am so sorry, but…"
    assert snippet(tokens, [9, 0, 0, 0, 0, 0, 0, 0, 0], radius=1) == "I am…"
    assert snippet([], []) == ""


def test_the_local_labeller_labels_with_the_bundled_model(tmp_path: Path, bundled_model) -> None:
    """The same prompts and scoring as the endpoint, answered by a model loaded here."""
    from spectrum_core.audit.labelling.local_labeller import LocalLabeler

    labeler = LocalLabeler(bundled_model, tmp_path / "cache.jsonl", batch_size=4)
    high = ["I'm sorry, but I can't help with that.", "Sorry, I cannot assist with this request."]
    low = ["Sure! Here is a recipe for pancakes.", "The capital of France is Paris."]
    labels = labeler.propose_labels(high, low, n_candidates=2)
    assert all(isinstance(label, str) and label for label in labels) and len(labels) <= 2
    answers = labeler.annotate("refusal", high + low)
    assert len(answers) == 4 and all(isinstance(a, bool) for a in answers)
    assert (tmp_path / "cache.jsonl").stat().st_size > 0  # every reply is cached


def test_an_audit_with_a_local_labeller_and_with_one_that_cannot_load(tmp_path: Path, bundled_model) -> None:
    from spectrum_core.audit.pipeline import AuditConfig
    from spectrum_core.audit.runner import run_audit_in_workspace
    from spectrum_core.constants import LLM_LABEL_CACHE_FILE
    from spectrum_core.workspace import Workspace
    from tests.conftest import LLAMAFACTORY_FILE

    small = dict(TINY_AUDIT, labelled_concepts=2, llm_labelled_concepts=1, topics=0)
    workspace = Workspace(tmp_path / "ws")
    outcome = run_audit_in_workspace(workspace, LLAMAFACTORY_FILE, AuditConfig(**small, labeller="bundled"))
    assert outcome is not None and outcome.report.warnings == []
    assert (outcome.folder / LLM_LABEL_CACHE_FILE).stat().st_size > 0  # the local model was asked
    first = outcome.concepts.iloc[0]
    assert first["label_source"] in ("llm", "offline")  # offline when no candidate could be scored
    if first["label_source"] == "llm" and not math.isnan(first["detection"]):
        assert 0 <= first["detection"] <= 1 and first["detection_low"] <= first["detection"] <= first["detection_high"]
    else:  # no detection score: too few responses beyond the ten the label was written from
        assert math.isnan(first["detection_low"]) and math.isnan(first["detection_high"])
    missing = run_audit_in_workspace(
        workspace, LLAMAFACTORY_FILE, AuditConfig(**small, labeller=str(tmp_path / "no-such-model"))
    )
    assert missing is not None
    (warning,) = missing.report.warnings
    assert "local labeller" in warning and "offline labels kept" in warning


def test_an_llm_labelled_head_is_scored_by_the_models_yes_no_on_300_held_out_responses(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    """The head's LLM label annotated by the model on a seeded sample of 150 confirmation pairs
    (300 responses, none it was written from): fidelity near 1 for the label that names the head,
    and the label tested as a hypothesis on the same pairs."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from spectrum_core.audit.labelling.fidelity import MIN_RESPONSES, check_head_labels

    labeler = LLMLabeler(LLMEndpoint(base_url=fake_server.base + "/v1/", model="fake-model"), tmp_path / "c.jsonl")
    rng = np.random.default_rng(0)
    n_pairs = 400
    sorry_chosen, sorry_rejected = rng.random(n_pairs) < 0.6, rng.random(n_pairs) < 0.2
    texts = [
        text
        for c, r in zip(sorry_chosen, sorry_rejected)
        for text in ("I'm sorry, I can't do that." if c else "Sure, here it is.", "Sorry, no." if r else "Fine.")
    ]
    fire = lambda has: sp.csr_matrix(np.where(has, 1.0 + rng.random(n_pairs), 0.0)[:, None])  # noqa: E731
    concepts = pd.DataFrame(
        {
            "concept_id": ["head:0"],
            "kind": ["head"],
            "feature": [0],
            "label": ["Apologises with the word sorry"],
            "label_source": ["llm"],
            "top_ngrams": ["sure here"],  # the offline phrases are not what an LLM label is scored on
            "share_chosen_more": [0.7],
            "direction": ["chosen"],
        }
    )
    confirmation = np.arange(n_pairs) >= 100
    head = check_head_labels(
        concepts, fire(sorry_chosen), fire(sorry_rejected), texts, confirmation, 0.05, 0, annotate=labeler.annotate
    ).iloc[0]
    assert head["label_fidelity_n"] == MIN_RESPONSES and head["label_fidelity"] == pytest.approx(1.0)
    assert head["label_explains"] is True and head["label_share_chosen_more"] > 0.65
    asked = [r for r in fake_server.requests if "Concept: Apologises" in r["body"]["messages"][-1]["content"]]
    shown = {t for r in asked for t in re.findall(r"^\[\d+\] (.*)$", r["body"]["messages"][-1]["content"], re.M)}
    assert shown <= set(texts) and asked  # only response texts, annotated by the model
