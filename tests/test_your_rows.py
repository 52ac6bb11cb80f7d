"""Bring your own rows on the Robustness page, and the commands the pages print, through AppTest:
the figures are the library's on the same rows, a bad file gets the CLI's file:line error, the demo mode
caps the upload and writes nothing, and every printed command parses as printed."""
from __future__ import annotations

import re
import shlex
import shutil

from test_app import no_exceptions, page
from test_own_rows import edited_rows, tree_digest

from app.widgets import md
from cmcs_core.command import CLI

RUN = "cap_cmcs"


def upload(at, name: str, content: bytes):
    at.file_uploader(key="own_file").set_value((name, content, "text/tab-separated-values"))
    return at.run()


def library_result(runs, content: bytes, name: str) -> dict:
    from cmcs_core.inference import Predictor
    from cmcs_core.own_rows import evaluate_rows, read_rows

    return evaluate_rows(Predictor(runs / RUN), read_rows(content, name), name)


def test_your_rows_get_the_librarys_figures_and_open_in_the_inspector(app_runs):
    text, rows = edited_rows(app_runs)
    at = page("Robustness", app_runs, RUN).run()
    upload(at, "mine.tsv", text.encode())
    no_exceptions(at)
    assert not at.main.error, [e.value for e in at.main.error]
    expected = library_result(app_runs, text.encode(), "mine.tsv")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy"] == f"{100 * expected['metrics']['acc']:.1f}%"
    assert metrics["Macro-F1"] == f"{100 * expected['metrics']['macro_f1']:.1f}%"
    pairing = next(m.value for m in at.markdown if "of your rows pair with rows of the run's" in m.value)
    assert pairing.startswith(f"**{len(rows)}** of your rows pair with rows of the run's **test** split")
    assert f"**{len(rows) // 2}** of them with a changed tweet" in pairing
    flipped = int(re.search(r"The prediction changed on \*\*(\d+)\*\*", pairing).group(1))
    if flipped:  # each flipped row one click from the Inspector, with your tweet and its caption
        table = at.dataframe[-1].value
        assert len(table) == flipped and not table["your tweet"].str.contains("$T$", regex=False).any()
        at.button(key="own_open").click().run()
        no_exceptions(at)
        assert at.session_state["ins_tweet"] == table["your tweet"].iloc[0]
        assert any("Opened from the Robustness page (your rows)" in i.value for i in at.info)


def test_a_bad_file_gets_the_clis_file_and_line(app_runs):
    at = page("Robustness", app_runs, RUN).run()
    upload(at, "bad.tsv", b"index\tlabel\timage\ttweet\ttarget\n1\t2\timg01.png\tno placeholder here\tDrake\n")
    no_exceptions(at)
    assert any(e.value.startswith(md("bad.tsv:2: tweet has no")) for e in at.main.error), [e.value for e in at.main.error]
    assert not at.metric


def test_the_demo_mode_caps_the_upload_and_writes_nothing(app_runs, tmp_path, monkeypatch):
    from app.your_rows import DEMO_MAX_KB, DEMO_MAX_ROWS

    runs = tmp_path / "runs"
    shutil.copytree(app_runs, runs)
    monkeypatch.setenv("CMCS_DEMO", "1")
    monkeypatch.setenv("CMCS_RUNS_DIR", str(runs))
    monkeypatch.setenv("CMCS_CACHE_DIR", str(tmp_path / "cache"))
    text, _ = edited_rows(runs)
    at = page("Robustness", runs, RUN).run()
    upload(at, "first.tsv", text.encode())  # loads the model (its weights may be cached once)
    assert any(m.label == "Accuracy" for m in at.metric)
    (tmp_path / "cache").mkdir(exist_ok=True)
    before = tree_digest(runs), tree_digest(tmp_path / "cache")
    upload(at, "second.tsv", text.replace("tonight", "today").encode())
    assert any(m.label == "Accuracy" for m in at.metric)
    assert (tree_digest(runs), tree_digest(tmp_path / "cache")) == before  # nothing written
    header, line = text.splitlines()[:2]
    upload(at, "many.tsv", "\n".join([header] + [line] * (DEMO_MAX_ROWS + 1)).encode())
    assert any(f"the demo mode takes {DEMO_MAX_ROWS} at most" in e.value for e in at.main.error)
    upload(at, "big.tsv", (header + "\n" + line + "\n" + " " * (DEMO_MAX_KB * 1024)).encode())
    assert any(f"the demo mode takes {DEMO_MAX_KB} KB at most" in e.value for e in at.main.error)


def test_every_command_a_page_prints_parses_as_printed(playground_runs, tmp_path):
    """Code blocks and inline commands on the pages that print them (no runs; runs not stress-tested; the
    Tour's preset and gaps; your rows): each starts with the venv's cmcs, and the CLI's parser takes it."""
    from cmcs_core.cli import build_parser

    runs = tmp_path / "runs"
    shutil.copytree(playground_runs, runs)
    shown = []
    for name, folder in (("Home", tmp_path / "empty"), ("Tour", runs), ("Robustness", runs)):
        at = page(name, folder, "playground_cmcs_s0" if folder == runs else None).run()
        no_exceptions(at)
        shown += [c.value for c in at.code]
        texts = [e.value for kind in ("markdown", "caption") for e in at.get(kind)]
        shown += [m for t in texts for m in re.findall(r"```bash\n(.+?)\n```", t)]
        shown += [m for t in texts for m in re.findall(r"`([^`]*cmcs[^`]*)`", t) if " " in m]
    commands = [c for c in shown if "cmcs" in c.split()[0]]
    assert len(commands) >= 4, shown
    for command in commands:
        words = shlex.split(command)
        assert words[0] == CLI, command
        build_parser().parse_args(words[1:])  # argparse exits on anything it does not take
