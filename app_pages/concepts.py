"""Concepts page: the review queue (the heads), then the concept families and every concept, a
card per head, family or concept with its members and evidence, and keep / suppress / amplify."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages.frame import build_frame, escape_markdown, finished_audits, load_audit_view
from spectrum_core.audit.carry import CARRY_R, carry_decisions, carry_proposal
from spectrum_core.audit.review import (
    describe_concept,
    highlight_tokens,
    is_composite,
    label_check,
    label_fidelity,
    verdict_badge,
    word_differences,
)
from spectrum_core.charts import topic_heatmap, topic_lean_bars

CARD_EXAMPLES = 4  # strongest examples shown on a card (the audit keeps top_examples of them)
# Said where a card has no silent contrast, so its absence is never mistaken for a missing section. A
# concept with no pair where it is above zero on one answer and zero on the other has none: a family
# with a probe member (a probe is rarely zero), or a concept in a small sampled audit.
NO_SILENT_PAIR = "none in this audit: no audited pair has it above zero on one answer and at zero on the other"
OLD_CARDS = "this audit was made before cards had a silent contrast; run it again to see one"


def show_example(example: pd.Series, pair: pd.Series) -> None:
    """One card example: the pair's two answers side by side, the one it is about shaded by the
    concept's token activations (or, without them, by the words that differ from the other)."""
    other = "rejected" if example["side"] == "chosen" else "chosen"

    def value(activation) -> str:
        return "silent" if activation == 0 else f"{activation:.2f}"

    other_value = example.get("other_activation")  # absent from audits made before it was kept
    st.caption(
        f"pair {example['pair_id']} · on the {example['side']} answer: {value(example['activation'])}"
        + (f"; on the {other} answer: {value(other_value)}" if pd.notna(other_value) else "")
    )
    columns = dict(zip(("chosen", "rejected"), st.columns(2)))
    has_tokens = len(example["tokens"]) > 0 and max(example["token_activations"], default=0) > 0
    for side, column in columns.items():
        column.markdown(f"*{side}*")
        if side == example["side"] and has_tokens:
            column.html(highlight_tokens(list(example["tokens"]), list(example["token_activations"])))
        elif has_tokens:
            column.code(pair[side], language=None, wrap_lines=True)
        else:
            words, differs = word_differences(pair[side], pair["rejected" if side == "chosen" else "chosen"])
            column.html(highlight_tokens(words, differs, rgb=(233, 196, 106)))


frame = build_frame()
workspace = frame.workspace
st.title("Concepts")
folder = frame.audit_folder()
if folder is None:
    st.info("Run an audit on the Audit page first; its concepts appear here.")
    st.stop()


view = load_audit_view(str(folder))
audit_id = frame.audit_id
if view.report.verdict:
    (st.success if view.report.total_significant else st.warning)(view.report.verdict)
decisions = workspace.current_decisions(audit_id)
if not decisions and frame.dataset_id is not None:
    # Decisions made on another audit of this data (an older version, another SAE) reach this one
    # only through a match by what the concepts measure, shown before it is applied: the same id
    # can be another concept here.
    audits = finished_audits(workspace, frame.dataset_id)
    earlier = [job for job in audits if job != audit_id and workspace.current_decisions(job)]
    if earlier:
        with st.expander(f"Decisions made on {len(earlier)} other audit(s) of this dataset: carry them here"):
            source = st.selectbox("Audit decided on", earlier, format_func=audits.get)
            if st.button("Match its decided concepts to this audit's"):
                st.session_state["carry"] = (source, audit_id, carry_proposal(workspace, source, audit_id))
            carry = st.session_state.get("carry")
            if carry is not None and carry[:2] == (source, audit_id):
                proposal = carry[2]
                st.dataframe(
                    pd.DataFrame(
                        {
                            "decision": [m.action for m in proposal],
                            "there": [f"{m.concept_id} · {m.label}" for m in proposal],
                            "here": [f"{m.matched} · {m.matched_label}" if m.matched else "" for m in proposal],
                            "r": [m.r for m in proposal],
                            "carried": ["yes" if m.carried else f"no: {m.why_not}" for m in proposal],
                        }
                    ),
                    hide_index=True,
                    column_config={"r": st.column_config.NumberColumn(format="%.2f")},
                )
                n_carried = sum(m.carried for m in proposal)
                st.caption(f"Matched by the correlation of per-pair Δ (r ≥ {CARRY_R}, same direction).")
                if st.button(f"Carry {n_carried} decision(s) to this audit", disabled=not n_carried, type="primary"):
                    carry_decisions(workspace, source, audit_id, proposal, user=frame.user)
                    del st.session_state["carry"]
                    st.rerun()
labels = workspace.labels(audit_id)
concepts = view.concepts.copy()
concepts["label"] = [labels.get(cid, label) for cid, label in zip(concepts["concept_id"], concepts["label"])]
concepts["decision"] = [decisions[c]["action"] if c in decisions else "" for c in concepts["concept_id"]]

has_families = bool((concepts["kind"] == "family").any())
has_heads = bool((concepts["kind"] == "head").any())
VIEW_KINDS = {"Heads": ["head"], "Families": ["family"]}
review = st.radio(
    "Review",
    [name for name, present in (("Heads", has_heads), ("Families", has_families)) if present] + ["All concepts"],
    horizontal=True,
    help="Heads are the review queue: at most 30 findings chosen jointly (no two alike), each tested on "
    "held-out prompts. A family is one idea that several SAE features (and probes) express. A decision on a "
    "head or a family applies to every member; open a member from the card to decide on it alone.",
)
if view.report.heads is not None:
    st.caption(view.report.heads.sentence())
with st.expander("Filters", expanded=False):
    c1, c2, c3 = st.columns(3)
    direction = c1.multiselect("Direction", ["chosen", "rejected", "none"], default=["chosen", "rejected"])
    kinds = VIEW_KINDS.get(review) or c1.multiselect("Kind", ["sae", "probe"], default=["sae", "probe"])
    max_q = c2.select_slider("q-value at most", [1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 1.0], value=1.0)
    min_prevalence = c2.slider("Prevalence at least", 0.0, 1.0, 0.0, 0.01)
    decided = c3.radio("Decided", ["all", "undecided", "decided"], horizontal=True)
    sort = c3.selectbox("Sort by", ["rank", "q_value", "coef", "prevalence", "share_chosen_more"])
listed = concepts[concepts["kind"].isin(kinds)]
# Each filter with the rows it hides on its own, so "181 of 196" says why the 15 are missing.
filters = {
    f"direction not {' or '.join(direction) or 'any'}": listed["direction"].isin(direction),
    f"q above {max_q:g}": listed["q_value"] <= max_q,
    f"prevalence under {min_prevalence:.0%}": listed["prevalence"] >= min_prevalence,
    f"not {decided}": (listed["decision"] != "") == (decided == "decided")
    if decided != "all"
    else pd.Series(True, index=listed.index),
}
passing = np.logical_and.reduce([mask.to_numpy() for mask in filters.values()])
shown = listed[passing]
hidden_by = [f"{int((~mask).sum()):,} {why}" for why, mask in filters.items() if (~mask).any()]
ascending = sort in ("rank", "q_value")
shown = shown.sort_values(sort, ascending=ascending, key=(lambda s: s.abs()) if sort == "coef" else None)
noun = {"Heads": "heads", "Families": "families"}.get(review, "concepts")
total = int(concepts["kind"].isin(kinds).sum())
st.caption(
    f"{len(shown):,} of {total:,} {noun}"
    + (f" (hidden by the filters: {'; '.join(hidden_by)})" if hidden_by else "")
    + ". Select one to open its card."
)
alpha = view.report.fdr_threshold
shown = shown.assign(verdict=[verdict_badge(r, alpha) for _, r in shown.iterrows()])
optional = ["confirm_q", "effect_size", "agreement_strength"]
if review == "Families":
    optional += ["seed_stability", "n_members"]
if review == "Heads":
    optional = [
        "confirm_q",
        "confirm_share_chosen_more",
        "selection_share",
        "label_fidelity",
        "source",
        "n_members",
        "effect_size",
    ]
table = shown[
    [
        "rank",
        "concept_id",
        "label",
        "verdict",
        "direction",
        "share_chosen_more",
        "n_differ",
        "q_value",
        "coef",
        "prevalence",
        *[c for c in optional if c in shown],
        "decision",
    ]
]
# The table's key names the rows it lists, so a selection (kept by Streamlit as a row number) never
# outlives the listing it was made in: a view switch, a filter, a new sort or a rerun lists other
# rows under another key, with nothing selected, and the card stays on the concept chosen by id.
listing = hashlib.sha1("\n".join(shown["concept_id"]).encode()).hexdigest()[:12]
selection = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    height=300,
    on_select="rerun",
    selection_mode="single-row",
    key=f"concept_table-{listing}",
    column_config={
        "share_chosen_more": st.column_config.NumberColumn(format="%.2f"),
        "agreement_strength": st.column_config.NumberColumn(
            "κ × relevance", format="%.3f", help="Feedback Forensics' agreement strength with the human choice"
        ),
        "q_value": st.column_config.NumberColumn(
            "q (discovery)", format="%.2e", help="on the discovery pairs, across every concept"
        ),
        "confirm_q": st.column_config.NumberColumn(
            "q (confirmation)",
            format="%.2e",
            help="on the held-out confirmation pairs, across the hypotheses carried there (blank: not carried)",
        ),
        "effect_size": st.column_config.NumberColumn(
            "effect size", format="%+.2f", help="standardised mean Δ (mean / SD over pairs)"
        ),
        "n_members": st.column_config.NumberColumn("members"),
        "label_fidelity": st.column_config.NumberColumn(
            "label fidelity",
            format="%.2f",
            help="AUC of the head's activation, held-out responses with the label's phrases against those without",
        ),
        "selection_share": st.column_config.NumberColumn(
            "selected", format="%.2f", help="share of bootstrap resamples of prompts whose sparse model selects it"
        ),
        "confirm_share_chosen_more": st.column_config.NumberColumn(
            "chosen more (confirmation)", format="%.2f", help="on the held-out pairs where it differs"
        ),
        "seed_stability": st.column_config.NumberColumn(
            "SAE seeds", format="%.2f", help="share of SAEs retrained with other seeds that find the family again"
        ),
        "coef": st.column_config.NumberColumn(format="%+.2f"),
        "prevalence": st.column_config.NumberColumn(format="%.2f"),
    },
)
if review == "Families" and len(view.topic_leans) and len(view.topics) > 1:
    with st.expander("Lean per prompt topic: the top 20 families", expanded=False):
        st.caption(
            "Prompts clustered into topics (k-means on sentence embeddings of the user's turns, named by their "
            "most distinctive words). Green: chosen responses have more of the family within that topic; red: "
            "rejected ones do. Hover for the 95% interval."
        )
        st.plotly_chart(topic_heatmap(view.topic_leans, view.topics, shown.head(20)), width="stretch")
rows = selection.selection.rows if selection else []
if rows:
    st.session_state["concept"] = shown.iloc[rows[0]]["concept_id"]
concept_id = st.session_state.get("concept")
if concept_id not in concepts.index:
    concept_id = shown["concept_id"].iloc[0] if len(shown) else None
    # The card opened by default is remembered like a chosen one: a view switch or a filter then
    # keeps it open instead of opening the new list's first row (family:0 became token:423).
    st.session_state["concept"] = concept_id
if concept_id is None:
    st.info("No concept passes these filters.")
    st.stop()
row = concepts.loc[concept_id]

st.divider()
st.subheader(f"{concept_id}")
new_label = st.text_input("Label", row["label"], key=f"label-{concept_id}")
if new_label.strip() and new_label.strip() != row["label"]:
    workspace.set_label(audit_id, concept_id, new_label.strip(), user=frame.user)
    st.rerun()
fidelity_text, label_mismatch = label_fidelity(row, concepts)
(st.warning if label_mismatch else st.caption)(
    ("The label does not match where it fires: " if label_mismatch else "Label check: ") + fidelity_text + "."
)
st.text(describe_concept(row))  # labels come from dataset text: shown as text, never markup
st.caption(f"Verdict: {verdict_badge(row, alpha)}")
family_id = row.get("family") if isinstance(row.get("family"), str) else ""
head_id = row.get("head") if isinstance(row.get("head"), str) else ""
if row["kind"] == "head":
    parts = view.family_members(concept_id)
    share = row.get("selection_share")
    chosen_by = f"selected in {share:.0%} of prompt resamples" if pd.notna(share) else "the length spline's own test"
    st.markdown(
        f"**Stands for {row['source']}** ({chosen_by}). A decision here applies to its {len(parts)} "
        "member(s) in the data interventions, the shaped reward, CAFT and prevalence; a member decided on "
        "its own keeps its own decision."
    )
    if label_check(row):
        st.caption(label_check(row).capitalize() + ".")
    under = view.under_head(concept_id)
    if len(under):
        st.markdown(f"**Under this head**: {len(under)} families and probes whose Δ moves with it (|r| ≥ 0.3)")
        under_table = st.dataframe(
            under[["concept_id", "label", "head_r", "direction", "q_value", "confirm_q"]],
            hide_index=True,
            width="stretch",
            height=min(300, 40 + 35 * len(under)),
            on_select="rerun",
            selection_mode="single-row",
            key=f"under-{concept_id}",
            column_config={
                "head_r": st.column_config.NumberColumn("r with head", format="%+.2f"),
                "q_value": st.column_config.NumberColumn("q (discovery)", format="%.2e"),
                "confirm_q": st.column_config.NumberColumn("q (confirmation)", format="%.2e"),
            },
        )
        picked = under_table.selection.rows if under_table else []
        if picked:
            st.session_state["concept"] = under.iloc[picked[0]]["concept_id"]
            st.rerun()
elif row["kind"] == "family":
    members = concepts[concepts["family"] == concept_id]
    st.markdown(
        f"**{len(members)} members** (mean similarity {row['mean_similarity']:.2f}; representative "
        f"{row['representative']}). A decision here applies to every member in the data interventions, the "
        "shaped reward, CAFT and prevalence; a member decided on its own keeps its own decision."
    )
    member_table = st.dataframe(
        members[["concept_id", "label", "direction", "share_chosen_more", "q_value", "effect_size", "decision"]],
        hide_index=True,
        width="stretch",
        height=min(300, 40 + 35 * len(members)),
        on_select="rerun",
        selection_mode="single-row",
        key=f"members-{concept_id}",
        column_config={
            "share_chosen_more": st.column_config.NumberColumn(format="%.2f"),
            "q_value": st.column_config.NumberColumn(format="%.2e"),
            "effect_size": st.column_config.NumberColumn(format="%+.2f"),
        },
    )
    picked = member_table.selection.rows if member_table else []
    if picked:
        st.session_state["concept"] = members.iloc[picked[0]]["concept_id"]
        st.rerun()
    if head_id:
        st.caption(f"Under {head_id} (r = {row['head_r']:+.2f}).")
    family_leans = view.topic_leans[view.topic_leans["concept_id"] == concept_id] if len(view.topic_leans) else None
    if family_leans is not None and len(family_leans) > 1:
        st.markdown("**Lean per prompt topic** (share of differing pairs where chosen has more, 95% interval)")
        st.plotly_chart(topic_lean_bars(family_leans, view.topics), width="stretch")
elif family_id:
    family_label = concepts.loc[family_id, "label"] if family_id in concepts.index else family_id
    st.caption(f"Member of {family_id} ({escape_markdown(family_label)}).")
    if family_id in decisions:
        st.caption(f"Its family's decision ({decisions[family_id]['action']}) applies to it unless it has its own.")
    if st.button(f"Open {family_id}", key=f"open-{family_id}"):
        st.session_state["concept"] = family_id
        st.rerun()
snippets = row.get("snippets")
if snippets is not None and len(snippets):
    st.text("\n".join(f"“{quote}”" for quote in snippets))  # dataset text: plain text, never markup
# Two rows of four: eight metrics in one row cut their names ("Pairs where it d…") on a laptop.
stats = st.columns(4) + st.columns(4)
stats[0].metric("Pairs where it differs", f"{int(row['n_differ']):,}")
stats[1].metric("Chosen has more", f"{row['share_chosen_more']:.0%}" if row["n_differ"] else "–")
stats[2].metric("q (length-aware)", f"{row['q_value']:.1e}")
stats[3].metric("Length-controlled coef", f"{row['coef']:+.2f}")
stats[4].metric("Prevalence", f"{row['prevalence']:.0%}")
if pd.notna(row.get("seed_stability")):
    stats[7].metric(
        "Found by other SAE seeds",
        f"{row['seed_stability']:.0%}",
        help="Share of SAEs retrained on the same activations with other seeds that have a feature about as "
        "aligned with this family as its best member",
    )
if "effect_size" in row and pd.notna(row["effect_size"]):
    stats[6].metric("Effect size", f"{row['effect_size']:+.2f}", help="standardised mean Δ: mean / SD over pairs")
if bool(row.get("carried", False)):
    stats[5].metric(
        "q (held-out pairs)",
        f"{row['confirm_q']:.1e}",
        help="The length-aware test again on the confirmation pairs (held-out prompts), corrected over the "
        f"hypotheses carried there; chosen has more in {row['confirm_share_chosen_more']:.0%} of the "
        f"{int(row['confirm_n_differ']):,} where it differs",
    )
st.caption(
    "A pair's two responses answer one prompt, so their activations are not independent samples: a test "
    "that treats them as two groups (a naive z-score) counts each prompt twice and is too confident. "
    "The q-value here is the length-aware score test (does the concept predict the choice beyond both "
    "responses' lengths?); the sign test and the length-controlled logit work on pairs too."
)

deltas = view.deltas(concept_id)
nonzero = deltas[deltas != 0]
figure = go.Figure(go.Histogram(x=nonzero, nbinsx=40, marker_color="#264653"))
figure.update_layout(
    xaxis_title="Δ = chosen − rejected (pairs where it differs)",
    yaxis_title="pairs",
    height=260,
    margin=dict(t=10, b=10),
)
left, right = st.columns([3, 2])
left.plotly_chart(figure, width="stretch")
correlations = view.probe_correlations(concept_id).head(5)
right.markdown("**Most correlated probes** (Pearson r of Δ)")
right.dataframe(correlations.rename("r").to_frame(), width="stretch")

card = view.card(concept_id)
pairs_by_id = frame.dataset().pairs.set_index("pair_id") if len(card) else None
if len(card):
    shaded = any(len(tokens) for tokens in card["tokens"])
    how = (
        "tokens shaded by its members' activations, weighted as the family's score weights them"
        if shaded and is_composite(str(card["concept_id"].iat[0]))
        else "tokens shaded by activation"
        if shaded
        else "no token activations in this mode: the words that differ between the two answers are shaded"
    )
    st.markdown(f"**Where it fires most** ({how})")
    for _, example in card.head(CARD_EXAMPLES).iterrows():
        show_example(example, pairs_by_id.loc[example["pair_id"]])
    silent = view.card(concept_id, role="silent")
    if len(silent):
        st.markdown(
            "**Where it is silent**: the pair where it fires most on one answer and not at all on the other, "
            "so the two answers to one prompt show what it responds to"
        )
        show_example(silent.iloc[0], pairs_by_id.loc[silent["pair_id"].iat[0]])
    else:
        st.markdown(f"**Where it is silent**: {NO_SILENT_PAIR if 'role' in view.cards.columns else OLD_CARDS}")

st.markdown("**Decision**")
current = decisions.get(concept_id)
if current:
    st.info(
        f"Current decision: {current['action']} on {concept_id}"
        + (f" (strength {current['strength']:g})" if current["strength"] else "")
        + f" by {current['decided_by']} at {current['decided_at'][:19].replace('T', ' ')}"
        + (f": {current['reason']}" if current["reason"] else "")
    )
reason = st.text_input("Reason (optional)", key=f"reason-{concept_id}")
strength = st.slider("Strength (amplify)", 0.1, 5.0, 1.0, 0.1, key=f"strength-{concept_id}")
shown_stats = {
    k: (None if pd.isna(row[k]) else float(row[k]))
    for k in ("q_value", "p_sign", "coef", "ci_low", "ci_high", "share_chosen_more", "prevalence", "n_differ")
}
buttons = st.columns(3)
for column, action in zip(buttons, ("keep", "suppress", "amplify")):
    # The button names the concept it decides on, so a decision cannot land on another unseen.
    if column.button(f"{action.capitalize()} {concept_id}", key=f"{action}-{concept_id}", width="stretch"):
        workspace.decide(
            audit_id,
            concept_id,
            action,
            reason=reason,
            strength=strength if action == "amplify" else None,
            stats=shown_stats,
            user=frame.user,
        )
        st.rerun()

with st.expander("Audit log: every decision, newest first"):
    history = workspace.decisions(audit_id)[::-1]
    for decision in history:
        line = (
            f"{decision['decided_at'][:19].replace('T', ' ')} · {decision['decided_by']} · "
            f"{decision['action']} {decision['concept_id']}"
        )
        if decision["reason"]:
            line += f" · {decision['reason']}"
        cols = st.columns([5, 1])
        if decision["undone_at"]:
            cols[0].text(line + f"  (undone by {decision['undone_by']})")
        else:
            cols[0].text(line)
            if cols[1].button("Undo", key=f"undo-{decision['id']}"):
                workspace.undo_decision(decision["id"], user=frame.user, reason="undone in the app")
                st.rerun()
