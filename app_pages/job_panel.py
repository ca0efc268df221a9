"""The one way a page starts, watches and controls a job, and draws a config dataclass as a form.

``start_panel`` shows whether a stage's result already exists or is under way and offers Start;
``watch`` polls a job (progress per step with time left, the whole job's time left and what it is
based on, Stop, Resume, the error, the log's tail) and reruns the page once when the job ends.
``config_form`` draws the fields of a config dataclass from the same metadata that makes the
command line's flags.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from spectrum_core import jobs, settings
from spectrum_core.progress import ProgressFollower
from spectrum_core.stages import Stage, stage_status
from spectrum_core.workspace import Workspace

POLL_SECONDS = 2.0


def config_form(cls: type, defaults: Any, key: str, skip: tuple[str, ...] = (), columns: int = 3) -> dict:
    """A widget per setting of ``cls`` (except ``skip`` and those kept off forms), filled from
    ``defaults`` and named in words, the advanced ones after the rest; a setting whose switch
    (``needs``) is off is not shown and keeps its default. Returns the values as typed by the
    user (checked when the config is built)."""
    shown = [s for s in settings.settings_of(cls) if s.form and s.name not in skip]

    def is_on(name: str) -> bool:
        return bool(st.session_state.get(f"{key}-{name}", getattr(defaults, name)))

    values: dict[str, Any] = {}
    idle = [s for s in shown if s.needs and not is_on(s.needs)]
    for item in idle:
        values[item.name] = getattr(defaults, item.name)
    visible = [s for s in shown if s not in idle]
    _setting_widgets([s for s in visible if not s.advanced], defaults, key, columns, values)
    advanced = [s for s in visible if s.advanced]
    if advanced:
        st.markdown("**Advanced**")
        _setting_widgets(advanced, defaults, key, columns, values)
    if idle:
        switches = sorted({next(s.label for s in shown if s.name == i.needs) for i in idle})
        st.caption(
            f"Not shown while {' and '.join(switches)} {'is' if len(switches) == 1 else 'are'} off: "
            + ", ".join(i.label for i in idle)
            + "."
        )
    return values


def _setting_widgets(items: list, defaults: Any, key: str, columns: int, values: dict) -> None:
    slots = st.columns(columns)
    for index, item in enumerate(items):
        value, slot, widget_key = getattr(defaults, item.name), slots[index % columns], f"{key}-{item.name}"
        label, help_text = item.label or item.name, item.help
        if item.kind is bool and not item.is_list:
            values[item.name] = slot.checkbox(label, value, key=widget_key, help=help_text)
        elif item.choices is not None and item.is_list:
            values[item.name] = slot.multiselect(label, list(item.choices), list(value), key=widget_key, help=help_text)
        elif item.choices is not None:
            options = ([None] if item.optional else []) + list(item.choices)
            values[item.name] = slot.selectbox(
                label,
                options,
                options.index(value),
                key=widget_key,
                help=help_text,
                format_func=lambda v: "none" if v is None else str(v),
            )
        elif item.kind in (int, float) and not item.is_list:
            step = 1 if item.kind is int else None
            values[item.name] = slot.number_input(
                label, value=value, step=step, key=widget_key, help=help_text, format=None if item.kind is int else "%g"
            )
        else:  # text, lists as comma-separated text, optional text
            text = ", ".join(map(str, value)) if item.is_list else "" if value is None else str(value)
            values[item.name] = slot.text_input(label, text, key=widget_key, help=help_text) or (
                None if item.optional else ""
            )


def start_panel(
    workspace: Workspace, stage: Stage, cli_args: list[str], *, label: str, user: str, watch_key: str
) -> bool:
    """The exact command, then: reuse notice, the job under way, or a Start button that launches
    ``spectrum <cli_args>`` as a job. Returns whether the result already exists."""
    st.code("spectrum " + " ".join(cli_args), language="bash")
    finished, running = stage_status(workspace, stage)
    if finished is not None:
        st.success(f"This has already run with this configuration; its result is reused: {finished}")
    elif running is not None:
        st.info(f"{workspace.job_title(running.id)} with this configuration is under way (below).")
        st.session_state.setdefault(watch_key, running.id)
    elif st.button(label, type="primary"):
        key, inputs = stage.key(workspace)
        links = stage.links(workspace)
        st.session_state[watch_key] = jobs.start_job(
            workspace,
            stage.kind,
            cli_args,
            inputs,
            dataset_id=links.dataset_id,
            parent_job_id=links.parent_job_id,
            plan_id=links.plan_id,
            user=user,
        )
        st.rerun()
    return finished is not None


def watch(
    workspace: Workspace,
    job_id: int,
    *,
    resume_args: list[str] | None = None,
    details: Callable[[jobs.JobView], None] | None = None,
) -> None:
    """Poll a job: its progress, ``details`` (charts, results), Stop / Resume / error, the log."""

    # Poll only while the job can still change: a finished job's panel is drawn once (the panel
    # reruns the whole page when it sees the job end, which draws it again without polling).
    polling = jobs.state(workspace, job_id) in jobs.ACTIVE
    title = workspace.job_title(job_id)

    @st.fragment(run_every=POLL_SECONDS if polling else None)
    def panel() -> None:
        # One follower per watched job and session: each poll reads only the new progress lines.
        followers = st.session_state.setdefault("progress_followers", {})
        job = workspace.job(job_id)
        key = (str(workspace.root), job_id, job.progress_path)
        if job.progress_path and key not in followers:
            followers[key] = ProgressFollower(workspace.root / job.progress_path)
        view = jobs.view(workspace, job_id, follower=followers.get(key))
        st.markdown(f"**{title}: {view.status}**")
        progress_lines(workspace, view)
        if details is not None:
            details(view)
        job = view.job
        if view.active and st.button("Stop", key=f"stop-{job_id}"):
            jobs.stop_job(workspace, job_id)
            st.rerun()
        if resume_args and job.status in ("stopped", "failed") and st.button("Resume", key=f"resume-{job_id}"):
            jobs.resume_job(workspace, job_id, resume_args)
            st.rerun()
        if job.status == "failed":
            st.error(f"{title} failed.")
            st.code(job.error or "(no message)", language=None, wrap_lines=True)
        if view.log_tail:
            with st.expander("Log", expanded=view.status == "failed"):
                st.code(view.log_tail, language=None)
        flag = f"job_active-{job_id}"  # one full rerun when the job ends, so the page outside catches up
        if not view.active and st.session_state.get(flag):
            st.session_state[flag] = False
            st.rerun()
        st.session_state[flag] = view.active

    panel()


def duration(seconds: float) -> str:
    """Seconds in words a person reads at a glance: 45 s, 12 min, 1 h 05 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def stage_text(stage: str, record: dict, active: bool) -> str:
    """A stage's line: its count (or, for a stage of named steps, the step under way and its own
    count and time so far) and, while the job runs, the stage's time left."""
    done, total = record["done"], record["total"]
    if "step" in record:
        count = ""
        if "step_total" in record:
            count = f" {record['step_done']:,} / {record['step_total']:,} {record.get('step_unit', '')}".rstrip()
        text = f"{stage}: {record['step']}{count} · {duration(record.get('step_elapsed') or 0)} so far"
        text += f" (step {done + 1} of {total})"
    else:
        text = f"{stage}: {done:,} / {total:,} {record.get('unit', '')}".rstrip()
    eta = record.get("eta")
    return text + (f" · about {duration(eta)} left in this stage" if eta and active else "")


def progress_lines(workspace: Workspace, view: jobs.JobView) -> None:
    """A bar per stage; beside the stage under way, the whole job's time left, and below, what
    that figure is based on (or why there is none)."""
    current = view.current["stage"] if view.current else None
    whole = jobs.estimate(workspace, view) if view.active else None
    for stage, record in view.stages.items():
        text = stage_text(stage, record, view.active)
        if whole is not None and whole.seconds is not None and stage == current:
            text += f" · about {duration(whole.seconds)} left for the whole job"
        st.progress(min(1.0, record["done"] / max(1, record["total"] or 1)), text=text)
    if whole is not None:
        known = whole.seconds is not None
        st.caption(
            f"Whole job's time left: based on {whole.basis}." if known else f"No whole-job estimate: {whole.basis}."
        )


def pick_job(options: list[int], labels: Callable[[int], str], watch_key: str, label: str) -> int:
    """A select box of jobs, defaulting to the one this page last started or found under way."""
    default = st.session_state.get(watch_key)
    return st.selectbox(label, options, index=options.index(default) if default in options else 0, format_func=labels)
