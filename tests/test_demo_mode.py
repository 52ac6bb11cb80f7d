"""The read-only demo's one promise (CMCS_DEMO=1, what `make app HOST=0.0.0.0` serves to a class): the runs
folder is fixed and no visitor can type or link another. A link's `?runs=` is compared with it as a
resolved path, never by its text: `<runs>/../elsewhere` and `<runs>_evil` begin with the folder's name
and are still other folders; `<runs>/../runs` is the folder itself."""
from __future__ import annotations

from pathlib import Path

import pytest
from app_fixtures import REPO
from streamlit.testing.v1 import AppTest

ENTRY = REPO / "app" / "main.py"
FIXED_NOTE = "fixed in demo mode"
IGNORED = "the link's `runs=` was ignored"


@pytest.fixture
def demo(tmp_path, monkeypatch) -> Path:
    """Demo mode on an (empty) runs folder: the sidebar's folder logic runs before any run is read."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs_evil").mkdir()
    monkeypatch.setenv("CMCS_DEMO", "1")
    monkeypatch.setenv("CMCS_RUNS_DIR", str(runs))
    return runs


def _open(query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _runs_field(at: AppTest) -> list:
    return [t for t in at.sidebar.text_input if t.label == "Runs folder"]


def test_a_link_without_runs_shows_no_field_to_type_a_folder(demo) -> None:
    at = _open({})
    assert not _runs_field(at)
    assert any(FIXED_NOTE in c.value for c in at.sidebar.caption)
    assert at.session_state["runs_dir"] == str(demo)
    at.session_state["runs_dir"] = str(demo.parent / "elsewhere")  # a forged value is not used either
    at.run()
    assert not _runs_field(at) and at.session_state["runs_dir"] == str(demo)


@pytest.mark.parametrize("link, ignored", [
    ("{runs}/../elsewhere", True),  # begins with the folder's path, is another folder
    ("{runs}_evil", True),  # begins with the folder's name, is a sibling
    ("{runs}/../runs", False),  # the folder itself, written another way
    ("{runs}", False),
])
def test_a_links_runs_is_compared_as_a_resolved_path(demo, link, ignored) -> None:
    at = _open({"runs": link.format(runs=demo)})
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert (IGNORED in warnings) == ignored, warnings
    assert not _runs_field(at) and at.session_state["runs_dir"] == str(demo)
