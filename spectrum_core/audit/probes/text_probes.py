"""Interpretable probes: measured text properties of a response, tested like SAE features.

An SAE feature is a hypothesis that still needs a name; a probe is a property with a name from
the start (list items, refusal phrases, question marks, ...). Each probe maps one response to one
number, so the audit can take chosen - rejected per pair and run the same statistics on probes as
on features, and it can tell a reader which known property a feature moves with
(``correlation.py``).

Everything here is the standard library `re` and `unicodedata` plus numpy/pandas, so probes are
cheap: every pattern is compiled once at import and each response is prepared once (code removed,
curly apostrophes straightened, lower-cased) before the probes run on it.

Phrase probes count matches. Patterns are whole-word, case-insensitive (they run on lower-cased
text) and accept both ' and the typographic ’ (HH-RLHF uses the latter), and several phrases of
one probe that overlap at one position count once (one alternation, leftmost match wins).
Prose probes ignore fenced code and inline code spans, so a `# comment` in a code block is not a
markdown header and `x != y` in code is not an exclamation.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..text import straighten_apostrophes

EMOJI_RANGES_FILE = "emoji_ranges.json"  # beside this module, shipped as package data


@dataclass(frozen=True)
class Probe:
    """One measured property of a response: `measure(text)` gives its value for that response."""

    name: str
    description: str
    measure: Callable[[str], float]


# A fenced code block (CommonMark style): an opening fence of 3+ backticks (whose info string has
# no backtick, so ```x``` on one line stays an inline span) or 3+ tildes, up to a closing fence of
# the same character at least as long, or to the end of the text when it is never closed.
_FENCE_BLOCK = re.compile(
    r"^[ \t]{0,3}(?:(`{3,})[^`\n]*|(~{3,})[^\n]*)(?:\n|\Z)"
    r".*?"
    r"(?:^[ \t]{0,3}(?:\1`*|\2~*)[ \t]*(?:\n|\Z)|\Z)",
    re.MULTILINE | re.DOTALL,
)

# An inline code span: a run of N backticks, content, a run of exactly N backticks. It may wrap a
# line but not cross a blank line (a paragraph break), as in CommonMark.
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n)[\s\S])+?)(?<!`)\1(?!`)")


@dataclass(frozen=True)
class _Views:
    """The forms of one response that the probes read."""

    raw: str  # the response as given
    n_fences: int  # fenced code blocks in it
    prose: str  # fenced code blocks removed
    n_inline: int  # inline code spans in the prose
    plain: str  # prose with inline code removed too, original case
    low: str  # " " + plain, apostrophes straightened, lower-cased (see _phrases for the space)


def _views(text: str) -> _Views:
    if "```" in text or "~~~" in text:
        prose, n_fences = _FENCE_BLOCK.subn("\n", text)
    else:
        prose, n_fences = text, 0
    if "`" in prose:
        plain, n_inline = _INLINE_CODE.subn(" code ", prose)
    else:
        plain, n_inline = prose, 0
    low = " " + straighten_apostrophes(plain).lower()
    return _Views(text, n_fences, prose, n_inline, plain, low)


def _phrases(*fragments: str) -> re.Pattern[str]:
    """One whole-word alternation over `_Views.low`; list longer phrases before their prefixes.

    The match consumes the non-word character before the phrase (hence the space `low` starts
    with) instead of asserting a word boundary: a pattern that starts with a character class lets
    `re` skip ahead to candidate positions, measurably faster than a leading \\b on long texts.
    """
    return re.compile(r"\W(?:" + "|".join(fragments) + r")(?!\w)")


def _count(pattern: re.Pattern[str], text: str) -> float:
    return float(len(pattern.findall(text)))


# Fallback tokenisation when the model's token counts are not given: runs of word characters, and
# every other non-space character on its own ("can't" -> can ' t). It tracks a subword tokenizer's
# count to within a small factor, which is enough for a chosen-vs-rejected comparison.
_WORD_PIECE = re.compile(r"\w+|[^\w\s]")


def _length_tokens(v: _Views) -> float:
    return float(_WORD_PIECE.subn("", v.raw)[1])


_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+\S", re.MULTILINE)
_HEADER = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+\S", re.MULTILINE)

# `__` bold must not touch a word character on the outside, so snake_case__names are not bold.
_BOLD = re.compile(r"\*\*(?=\S)[^\n]+?(?<=\S)\*\*|(?<!\w)__(?=\S)[^\n]+?(?<=\S)__(?!\w)")


def _markdown_list(v: _Views) -> float:
    return _count(_LIST_ITEM, v.prose)


def _markdown_header(v: _Views) -> float:
    return _count(_HEADER, v.prose)


def _markdown_bold(v: _Views) -> float:
    if "**" not in v.plain and "__" not in v.plain:
        return 0.0
    return _count(_BOLD, v.plain)


def _code_block(v: _Views) -> float:
    return float(v.n_fences)


def _inline_code(v: _Views) -> float:
    return float(v.n_inline)


# What a refusal declines to do. "I can't" alone is too common ("I can't stress enough") to count.
_REFUSED_ACT = (
    r"(?:help|assist|aid|do|provide|give|answer|share|support|write|make|create|generate|"
    r"participate|engage|encourage|condone|endorse|recommend|advise|suggest|explain|discuss|"
    r"talk about|describe|teach|show|offer|facilitate|promote|comply|fulfill|go along|agree|"
    r"be (?:a )?part|be involved|in good conscience|tell you)"
    # "I can't help but notice", "I can't help it" are not refusals.
    r"(?! (?:but|it|feeling|thinking|wondering|noticing|myself)\b)"
)
_ADVERB = r"(?:really|simply|just|actually|honestly|definitely|absolutely|ethically|possibly)"
_DEGREE = r"(?:really|very|totally|entirely|quite|extremely|highly|pretty|so|definitely|clearly)"
_THAT = r"(?:it|that|this|which|doing (?:that|this|so))"

# Refusal: the response declines, says it cannot or should not, or objects to the request.
_REFUSAL = _phrases(
    # "I can't help", "I won't do that", "I really shouldn't give", "I don't want to encourage"
    rf"i (?:{_ADVERB} )?(?:can't|cannot|can not|won't|will not|couldn't|could not|shouldn't|"
    rf"should not|don't want to|do not want to|refuse to) (?:{_ADVERB} )?{_REFUSED_ACT}",
    # "I'm not able to", "I am unable to", "I'm not going to help", "I'm not comfortable"
    rf"i(?:'m| am) (?:{_ADVERB} )?(?:not (?:able|going|willing|allowed|permitted) to|unable to) "
    rf"(?:{_ADVERB} )?{_REFUSED_ACT}",
    r"i(?:'m| am) not (?:designed|programmed|built|made) (?:to|for)",
    r"i(?:'m| am) (?:not |un)comfortable",
    r"makes? me (?:feel )?uncomfortable",
    # "I'm sorry, but" / "sorry, but": the apology that introduces a refusal
    r"sorry,? but",
    # "I do not feel comfortable", "I don't think you should", "I don't think that would be a
    # good idea", "I don't condone"
    r"i (?:do not|don't) (?:feel comfortable|think (?:i|we|you) should|think (?:it|that|this)"
    r"(?:'s| is| would be| will be) (?:a good idea|appropriate|okay|ok|right|wise|safe|legal)|"
    r"condone|endorse|support that|encourage|recommend|advise)",
    # "please don't do that" (but not "please don't hesitate to ask")
    r"please (?:don't|do not)(?! hesitate)",
    # "that's not something I can/will/..."
    r"(?:it|that|this)(?:'s| is) not something (?:i|i'm|i am|i'd|i would|i will|i can|i feel)",
    r"as an? (?:ai(?: language model| assistant| model)?|artificial intelligence|language model|"
    r"assistant|chatbot)",
    # moral/legal objection: "it is not appropriate", "that's illegal", "this would be wrong".
    # Bare "illegal"/"harmful" is not counted: compliant answers mention them too ("the harmful
    # dose is ..."); the objection is the framing "that is <verdict>".
    rf"{_THAT}(?:'s| is| would be| sounds| seems)(?: like)?(?: {_DEGREE})? "
    r"(?:not (?:appropriate|okay|ok|acceptable|right|ethical|legal|safe|a good idea|nice|kind|"
    r"something)|inappropriate|unacceptable|illegal|unethical|immoral|harmful|dangerous|wrong|"
    r"a crime|against the law|a bad idea|abusive|cruel|hurtful)",
    rf"(?:it|that|this)(?: isn't| is not| wouldn't be| would not be| would never be)"
    rf"(?: {_DEGREE})? "
    r"(?:appropriate|okay|ok|acceptable|right|ethical|legal|safe|a good idea|nice|kind)",
    # "I must decline", "I have to refuse", "I respectfully decline"
    r"i (?:must|have to|need to|will have to|'ll have to|would have to|'d have to) "
    r"(?:respectfully |politely )?(?:decline|refuse|pass)",
    r"i (?:respectfully |politely )?(?:decline|refuse)",
    # "I'd rather not", "I would prefer not to", "I prefer not to"
    r"i(?:'d| would) (?:rather|prefer) not",
    r"i prefer not to",
    r"(?:against|violates?|violating|goes against) (?:my|the|our) (?:principles|values|guidelines|"
    r"policy|policies|programming|ethics|rules)",
)

# Deflection: evades rather than answers or refuses: claims not to understand or know, asks why
# the user wants it, asks them to clarify, or changes the subject (typical of HH-RLHF's harmless
# set, where the preferred answer to a harmful request is often a question back).
_DEFLECTION = _phrases(
    # not understanding: "I'm not sure what you mean", "I don't understand", "I'm confused"
    r"i(?:'m| am) (?:really |still )?not (?:sure|certain|clear) "
    r"(?:what|if i|that i|i|how to (?:help|answer|respond)|why|where you're going|about what)",
    r"i(?:'m| am) (?:really |still )?not sure(?= ?[.!?,]|$)",
    r"i (?:still |really )?(?:don't|do not|didn't|did not) (?:really |quite |fully )?"
    r"(?:understand|follow|get (?:what|it|you|that)|"
    r"know what you(?:'re| are)? (?:mean|asking|talking|getting|referring))",
    r"i(?:'m| am) (?:a (?:little|bit) |so |very |really |still )?(?:confused|not following|"
    r"not understanding|lost)",
    # feigned ignorance: "I don't know"
    r"i (?:really |honestly |just )?(?:don't|do not) know",
    # asking for clarification
    r"what (?:do|did) you mean",
    r"what are you (?:asking|talking about|referring to|getting at)",
    r"(?:can|could|would) you (?:please )?(?:explain|clarify|elaborate|rephrase|be more specific|"
    r"tell me (?:more|what you mean|why)|say more|give me more)",
    # asking why: "why do you want to", "what makes you ask", "what are you hoping to accomplish"
    r"why (?:do|would|did|are|were) you (?:want|ask|need|think|say|wish|like|asking|interested|"
    r"wondering|curious|care|feel)",
    r"why (?:would|do|does) (?:anyone|someone|somebody) want",
    r"what makes you (?:ask|want|think|say|feel|wonder|curious|interested)",
    r"what(?:'s| is) (?:the reason|your reason|your goal|your motivation|the purpose)",
    r"(?:what|why) (?:are|were) you (?:hoping|trying|planning|looking|wanting) to",
    # changing the subject
    r"(?:let's|let us|can we|could we|how about we|maybe we (?:can|could|should)|why don't we|"
    r"i'd (?:rather|prefer to|like to)|i would (?:rather|prefer to|like to)) (?:talk|chat|focus) "
    r"(?:about |on )?(?:something|other|another|a different|anything)",
    r"(?:change|changing|switch|switching) (?:the )?(?:subject|topic)s?",
    r"(?:let's|let us) move on",
)


def _refusal(v: _Views) -> float:
    return _count(_REFUSAL, v.low)


def _deflection(v: _Views) -> float:
    return _count(_DEFLECTION, v.low)


# "I apologize" counts, "you should apologize to her" does not.
_APOLOGY = _phrases(
    r"sorry",
    r"(?:i|we) (?:(?:do|must|sincerely|truly|really|deeply) )?apologi[sz]e",
    r"(?:my |our |sincere |many )?apologies",
)
_HEDGING = _phrases(
    r"might",
    r"perhaps",
    r"possibly",
    r"probably",
    r"maybe",
    r"likely",
    r"unlikely",
    r"it (?:all )?depends",
    r"that depends",
    r"depends on",
    r"depending on",
    r"i think",
    r"i believe",
    r"i guess",
    r"i suppose",
    r"it seems",
    r"seems like",
    r"seems to",
    r"it appears",
    r"not sure",
    r"not certain",
    r"uncertain",
    r"could be",
    r"in some cases",
    r"in most cases",
    r"in general",
    r"generally",
    r"(may)",
)
_PRAISE_ADJ = (
    r"(?:great|good|excellent|wonderful|fantastic|lovely|thoughtful|interesting|smart|clever|"
    r"brilliant|insightful|fascinating|awesome|amazing|perceptive|terrific|superb)"
)

# Praise of the user or their question. "smart" alone is not counted ("smart phone"), only
# "you're smart" or "smart question"; "not a good point" is not praise.
_PRAISE = _phrases(
    rf"what an? (?:really |very )?{_PRAISE_ADJ} \w+",
    rf"(?<!not a )(?<!n't a )(?:(?:really|very) )?(?:{_PRAISE_ADJ}|fair|valid|important) "
    r"(?:question|point|observation|insight|thought)s?",
    rf"(?:that's|that is|what) an? (?:really |very )?{_PRAISE_ADJ} idea",
    r"you(?:'re| are) (?:absolutely |totally |completely |quite |so |100% )?(?:right|correct)",
    r"you(?:'re| are) (?:so |very |really |clearly )?(?:smart|clever|intelligent|brilliant|"
    r"thoughtful|insightful|wise|perceptive|kind|sweet)",
    r"i (?:really )?(?:love|admire) (?:your|that you|how you)",
    r"i (?:really )?appreciate your (?:question|curiosity|honesty|interest|thoughtfulness|"
    r"enthusiasm|insight|openness)",
)


def _apology(v: _Views) -> float:
    if "sorry" not in v.low and "apolog" not in v.low:
        return 0.0
    return _count(_APOLOGY, v.low)


def _hedging(v: _Views) -> float:
    n = len(_HEDGING.findall(v.low))
    if "May" in v.plain and len(v.low) == len(v.plain) + 1:
        for m in _HEDGING.finditer(v.low):
            if m.group(1) and _is_month(v.plain, m.start(1) - 1):
                n -= 1
    return float(n)


def _is_month(plain: str, at: int) -> bool:
    """Whether the "may" at `plain[at]` is the month: "May" not opening a sentence, or "May 5"."""
    if plain[at] != "M":
        return False
    if re.match(r"May\s*\d", plain[at : at + 8]):
        return True
    before = plain[:at].rstrip(" \t\"'\u201c(*_")
    return bool(before) and before[-1] not in ".!?:\n"


def _praise_of_user(v: _Views) -> float:
    return _count(_PRAISE, v.low)


# Enthusiastic openings. "Absolutely not" / "Of course not" are refusals, not affirmations; a
# plain "Sure," is compliance, so "Sure" counts only as "Sure!" or before another enthusiastic
# phrase ("Sure, I'd be happy to").
_ENTHUSIASM = "|".join(
    (
        rf"what an? (?:really |very )?{_PRAISE_ADJ}\b",
        rf"{_PRAISE_ADJ} (?:question|point|idea|observation|thinking|choice|request|topic)s?\b",
        rf"(?:{_PRAISE_ADJ}|perfect)!",
        r"(?:absolutely|of course|certainly|definitely|totally)\b(?![\s,!.]*not\b)",
        r"sure(?: thing)?!",
        r"i(?:'d| would)(?: be)? (?:so |really |more than )?"
        r"(?:happy|glad|delighted|thrilled|love) to\b",
        r"i(?:'m| am) (?:so |really |more than )?(?:happy|glad|delighted|thrilled|excited) to "
        r"(?:help|assist|answer|share|hear|explain)\b",
        r"(?:happy|glad) to help\b",
        r"glad you asked\b",
        rf"(?:thank you|thanks) (?:so much )?for (?:asking|(?:the|your|this|such an?) "
        rf"(?:{_PRAISE_ADJ} )?question)\b",
    )
)
_OPENER = re.compile(
    r"(?:(?:hi|hello|hey|oh|wow|ah|ooh)(?: there)?[!,.]*\s+)?"
    r"(?:(?:sure|okay|ok|yes|yeah)(?: thing)?[!,.]*\s+)?"
    rf"(?:{_ENTHUSIASM})"
)
_OPENER_WINDOW = 80  # characters: the opening sentence, roughly
_LEADING_MARKUP = " \t\r\n*#>_-\"'\u201c"


def _sycophantic_opener(v: _Views) -> float:
    head = v.low.lstrip(_LEADING_MARKUP)[:_OPENER_WINDOW]
    return 1.0 if _OPENER.match(head) else 0.0


# A question mark ends a question when it ends the text or is followed by space, a closing quote
# or bracket, or markdown emphasis; "?q=1" in a URL is not a question. "??" is one question.
_QUESTION = re.compile(r"\?+(?![^\s\"')\]*_])")


def _question_back(v: _Views) -> float:
    return _count(_QUESTION, v.low)


def _exclamation(v: _Views) -> float:
    return float(v.plain.count("!"))


_SECOND_PERSON = _phrases(r"you", r"your", r"yours", r"yourself", r"yourselves")


def _second_person(v: _Views) -> float:
    return _count(_SECOND_PERSON, v.low)


def _emoji_ranges(table: str) -> tuple[tuple[int, int], ...]:
    """One table of code point ranges from emoji_ranges.json (data, not code: 140 lines of hex)."""
    return tuple((int(row[0], 16), int(row[1], 16)) for row in _EMOJI_TABLES[table]["ranges"])


_EMOJI_TABLES = json.loads((Path(__file__).parent / EMOJI_RANGES_FILE).read_text(encoding="utf-8"))
_ASTRAL_EMOJI_BLOCKS = _emoji_ranges("astral_blocks")
_BMP_EMOJI = _emoji_ranges("bmp_pictographs")
_TEXT_DEFAULT_EMOJI = _emoji_ranges("text_default")


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges
    )


def _merge(codepoints: Iterable[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for cp in sorted(codepoints):
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


_ASTRAL_PICTOGRAPHS = _merge(
    cp
    for lo, hi in _ASTRAL_EMOJI_BLOCKS
    for cp in range(lo, hi + 1)
    if unicodedata.category(chr(cp)) in ("So", "Cn") and not 0x1F1E6 <= cp <= 0x1F1FF
)

# One emoji = one match: a keycap (1️⃣), a flag (a pair of regional indicators), a pictograph, or
# a text-default symbol with VS16. A pictograph right after a zero-width joiner continues a ZWJ
# sequence (👨‍👩‍👧 is one emoji), and skin-tone modifiers are category "Sk", so neither adds a count.
_EMOJI = re.compile(
    r"(?<!\u200d)(?:"
    r"[0-9#*]\ufe0f?\u20e3"
    r"|[\U0001F1E6-\U0001F1FF]{2}"
    rf"|[{_char_class(_BMP_EMOJI + tuple(_ASTRAL_PICTOGRAPHS))}]"
    rf"|[{_char_class(_TEXT_DEFAULT_EMOJI)}]\ufe0f"
    r")"
)


def _emoji(v: _Views) -> float:
    if v.raw.isascii():
        return 0.0
    return _count(_EMOJI, v.raw)


_BUILTIN: tuple[tuple[str, str, Callable[[_Views], float]], ...] = (
    (
        "length_tokens",
        "Tokens in the response (the model's count when given; else word pieces: "
        "runs of word characters plus each punctuation mark).",
        _length_tokens,
    ),
    ("markdown_list", "Lines that are bullet or numbered list items (-, *, +, 1., 1)).", _markdown_list),
    ("markdown_header", "Lines that are markdown headers (1 to 6 # and a space).", _markdown_header),
    ("markdown_bold", "Bold spans (**x** or __x__).", _markdown_bold),
    ("code_block", "Fenced code blocks (``` or ~~~; an unclosed fence counts as one).", _code_block),
    ("inline_code", "Inline `code` spans outside fenced blocks.", _inline_code),
    (
        "refusal",
        'Refusal phrases: declining or inability ("I can\'t help", "I\'m not able '
        'to"), "I\'m sorry, but", discomfort, "as an AI", moral or legal objections '
        '("that\'s illegal").',
        _refusal,
    ),
    (
        "deflection",
        "Deflecting: claiming not to understand or know, asking why the user wants it, "
        "asking for clarification, changing the subject.",
        _deflection,
    ),
    ("apology", "Apologies: sorry, I apologize, (my) apologies.", _apology),
    (
        "hedging",
        "Hedges: might, may, perhaps, probably, I think, it seems, not sure, it depends, generally, ...",
        _hedging,
    ),
    (
        "praise_of_user",
        'Praise of the user or their question: "great question", "you\'re right", "what a wonderful idea".',
        _praise_of_user,
    ),
    (
        "sycophantic_opener",
        "1 if the response opens with enthusiastic affirmation or praise "
        '("Great question!", "Absolutely!", "I\'d be happy to"), else 0.',
        _sycophantic_opener,
    ),
    ("question_back", "Questions in the response (sentences ending with ?).", _question_back),
    ("exclamation", "Exclamation marks outside code.", _exclamation),
    ("emoji", "Emoji (pictographs, flags, keycaps; not plain symbols such as ©).", _emoji),
    ("second_person", "Second-person words: you, your, yours, yourself, yourselves.", _second_person),
)


def _on_text(fn: Callable[[_Views], float]) -> Callable[[str], float]:
    def measure(text: str) -> float:
        return fn(_views(_as_text(text)))

    measure.__name__ = fn.__name__.lstrip("_")
    measure.__doc__ = fn.__doc__
    return measure


PROBES: dict[str, Probe] = {name: Probe(name, desc, _on_text(fn)) for name, desc, fn in _BUILTIN}

# compute_probes measures each text once into _Views and runs these on it; a probe that was
# replaced or added in PROBES is measured through its own `measure` instead.
_FAST: dict[str, tuple[Probe, Callable[[_Views], float]]] = {name: (PROBES[name], fn) for name, _, fn in _BUILTIN}


def _as_text(value: object) -> str:
    """A response as a string; a missing one (None, NaN, pd.NA) is empty."""
    if isinstance(value, str):
        return value
    try:
        missing = bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like: not a missing scalar
        missing = False
    return "" if missing else str(value)


def compute_probes(texts: Sequence[str], token_counts: Sequence[float] | np.ndarray | None = None) -> pd.DataFrame:
    """Probe values: one row per text (same order), one float32 column per probe in `PROBES`.

    `token_counts`, when given (the model tokenizer's count per text), is used for `length_tokens`
    instead of the word-piece fallback, so lengths are in the units the rest of the audit uses.
    """
    texts = list(texts)
    if token_counts is not None:
        token_counts = np.asarray(token_counts, dtype=np.float64).reshape(-1)
        if len(token_counts) != len(texts):
            raise ValueError(f"token_counts has {len(token_counts)} values for {len(texts)} texts")
    probes = list(PROBES.values())
    values = np.zeros((len(texts), len(probes)), dtype=np.float64)
    fast = [_FAST[p.name][1] if p.name in _FAST and _FAST[p.name][0] is p else None for p in probes]
    for i, text in enumerate(texts):
        text = _as_text(text)
        views = _views(text)
        for j, (probe, fn) in enumerate(zip(probes, fast)):
            values[i, j] = fn(views) if fn is not None else probe.measure(text)
    if token_counts is not None and "length_tokens" in PROBES:
        values[:, list(PROBES).index("length_tokens")] = token_counts
    return pd.DataFrame(values.astype(np.float32), columns=[p.name for p in probes])


def probe_deltas(
    pairs: pd.DataFrame,
    chosen_tokens: Sequence[int] | None = None,
    rejected_tokens: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probe values of the chosen and of the rejected responses, both indexed by `pair_id`.

    The per-pair delta the audit tests is `chosen - rejected` of the two frames (same index and
    columns). Token counts, when given, are per pair in the order of `pairs`.
    """
    index = pd.Index(pairs["pair_id"], name="pair_id")
    chosen = compute_probes(pairs["chosen"].tolist(), chosen_tokens).set_axis(index, axis=0)
    rejected = compute_probes(pairs["rejected"].tolist(), rejected_tokens).set_axis(index, axis=0)
    return chosen, rejected
