"""The frame every page shares: workspace, user and dataset, chosen once in the sidebar.

Streamlit state holds only handles (ids); what they point to lives in the workspace database, so a
reload or a second browser tab sees the same thing. The chosen dataset also goes in the URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from spectrum_core.access import TOKENS_ENV, auth_mode, parse_tokens, user_for_token
from spectrum_core.audit.review import AuditView
from spectrum_core.bundled import HH_DEMO, LLAMAFACTORY_DEMO, bundled_file
from spectrum_core.data import PreferenceDataset
from spectrum_core.workspace import Workspace, artifact_version, default_user

BUNDLED_DATA = {
    "HH-RLHF harmless-base (test, 2,312 rows)": bundled_file(HH_DEMO),
    "LLaMA-Factory DPO demo (300 rows)": bundled_file(LLAMAFACTORY_DEMO),
}
DEMO_NAME = "HH-RLHF harmless-base (demo)"


@dataclass
class Frame:
    workspace: Workspace
    user: str
    dataset_id: int | None
    audit_id: int | None = None  # the job that produced the audit in use

    def audit_folder(self) -> Path | None:
        if self.audit_id is None:
            return None
        key = self.workspace.job(self.audit_id).artifact_key
        return self.workspace.find_artifact(key) if key else None

    def dataset(self) -> PreferenceDataset | None:
        if self.dataset_id is None:
            return None
        return load_pairs(str(self.workspace.root), self.dataset_id)


# Characters markdown, Streamlit's emoji and icon shortcodes, LaTeX or HTML would read.
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def escape_markdown(text) -> str:
    """Text from a file (a file name, a concept label, a warning quoting its contents) made safe
    for st.markdown, st.caption, st.warning and the like: every character markup would read is
    backslash-escaped and line breaks become spaces, so it shows as typed and never as a link,
    an image or formatting."""
    return _MARKUP.sub(r"\\\1", " ".join(str(text).splitlines()))


@st.cache_resource(show_spinner=False)
def open_workspace(root: str) -> Workspace:
    return Workspace(root)


@st.cache_resource(show_spinner="Reading pairs ...", max_entries=8)
def load_pairs(root: str, dataset_id: int) -> PreferenceDataset:
    return open_workspace(root).load_dataset(dataset_id)


def _workspace_root() -> str:
    return str(Path(os.environ.get("SPECTRUM_WORKSPACE") or "workspace").resolve())


def login_gate() -> str | None:
    """The logged-in user's name when the app asks for a login (``spectrum_core.access``), else
    None; until the user has logged in, draws the login and stops the page."""
    mode = auth_mode(os.environ)
    if mode is None:
        return None
    if mode == "oidc":
        if not st.user.is_logged_in:
            st.title("Spectrum")
            st.button("Log in", on_click=st.login, type="primary")
            st.stop()
        return str(st.user.get("email") or st.user.get("name") or st.user.get("sub"))
    if "login_user" in st.session_state:
        return st.session_state["login_user"]
    st.title("Spectrum")
    given = st.text_input("Access token", type="password", help="Your own token, from whoever runs this server.")
    if given:
        name = user_for_token(given, parse_tokens(os.environ[TOKENS_ENV]))
        if name is not None:
            st.session_state["login_user"] = name
            st.rerun()
        st.error("That token is not valid.")
    st.stop()
    return None  # not reached: st.stop ends the run


def log_out() -> None:
    if auth_mode(os.environ) == "oidc":
        st.logout()
    st.session_state.pop("login_user", None)


def build_frame() -> Frame:
    """Draw the sidebar and return the shared selection. Adds the demo on a first open.

    Every page calls this first (rather than app.py calling it once) so that a page run on its
    own, as Streamlit's AppTest does on reruns, still gets the same frame."""
    login = login_gate()  # stops the page until a shared server's user has logged in
    workspace = open_workspace(_workspace_root())
    if not workspace.datasets():
        with st.spinner("Loading the bundled HH-RLHF demo into a new workspace ..."):
            workspace.add_dataset(BUNDLED_DATA["HH-RLHF harmless-base (test, 2,312 rows)"], name=DEMO_NAME)
    with st.sidebar:
        st.caption(f"Workspace: `{workspace.root}`")
        # The name lives under a plain key: a widget's own key is forgotten when another page
        # draws its widget, so the widget is refilled from it on every page.
        if login is not None:  # the login's name is recorded with every decision
            st.caption(f"Signed in as {escape_markdown(login)}")
            st.button("Log out", on_click=log_out)
            user = login
        else:
            if "user" not in st.session_state:
                st.session_state["user"] = default_user()
            st.session_state["user_input"] = st.session_state["user"]
            st.text_input(
                "Your name (recorded with every decision)",
                key="user_input",
                on_change=lambda: st.session_state.update(user=st.session_state["user_input"]),
            )
            user = st.session_state["user"].strip() or default_user()
        datasets = {d["id"]: d for d in workspace.datasets()}
        wanted = st.query_params.get("dataset")
        ids = list(datasets)[::-1]  # newest first
        current = st.session_state.get("current_dataset")
        if current not in datasets:
            current = int(wanted) if wanted and wanted.isdigit() and int(wanted) in datasets else ids[0]
        # No widget key: the choice lives in "current_dataset", which other pages may also set.
        dataset_id = st.selectbox(
            "Dataset",
            ids,
            index=ids.index(current),
            format_func=lambda i: f"{datasets[i]['name']} · {datasets[i]['rows_kept']:,} pairs (#{i})",
        )
        st.session_state["current_dataset"] = dataset_id
        st.query_params["dataset"] = str(dataset_id)
        audits = finished_audits(workspace, dataset_id)
        audit_id = None
        if audits:
            wanted = st.query_params.get("audit")
            current = st.session_state.get("current_audit")
            if current not in audits:
                current = int(wanted) if wanted and wanted.isdigit() and int(wanted) in audits else list(audits)[0]
            audit_id = st.selectbox("Audit", list(audits), index=list(audits).index(current), format_func=audits.get)
            st.session_state["current_audit"] = audit_id
            st.query_params["audit"] = str(audit_id)
    # The user is passed to every write explicitly: the cached Workspace is shared by sessions.
    return Frame(workspace=workspace, user=user, dataset_id=dataset_id, audit_id=audit_id)


def load_audit_view(path: str | Path) -> AuditView:
    """A finished audit's tables, read once per server process for each content of its files:
    keyed by what is on disk (names, sizes, modification times), not the path alone, so a page
    never shows an audit older than its folder holds."""
    folder = Path(path)
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir()) if f.is_file())
    return _read_audit_view(str(folder), stamp)


@st.cache_resource(show_spinner="Reading the audit ...", max_entries=4)
def _read_audit_view(path: str, stamp: tuple) -> AuditView:
    return AuditView.load(path)


def finished_audits(workspace: Workspace, dataset_id: int) -> dict[int, str]:
    """Finished audits of a dataset, newest first, one per result: a later run that reused a
    result is the same audit, so decisions attach to the job that produced it."""
    first_job: dict[str, dict] = {}
    for job in workspace.jobs("audit"):  # newest first, so the last seen is the oldest
        if job.dataset_id == dataset_id and job.status == "succeeded" and job.artifact_key:
            first_job[job.artifact_key] = job
    audits = {}
    for key, job in sorted(first_job.items(), key=lambda item: -item[1].id):
        if workspace.find_artifact(key) is None:
            continue
        config = job.settings
        pairs = config.get("max_pairs") or "all"
        version = artifact_version(key)
        audits[job.id] = (
            f"{workspace.job_title(job.id)} · {pairs} pairs · layer {config.get('layer') or 'mid'} · "
            f"{job.created_at[:16].replace('T', ' ')}" + (f" · version {version} (rerun)" if version > 1 else "")
        )
    return audits


def select_dataset(dataset_id: int) -> None:
    """Make a newly added dataset the current one (before the sidebar widget is drawn again)."""
    st.session_state["current_dataset"] = dataset_id
    st.query_params["dataset"] = str(dataset_id)
