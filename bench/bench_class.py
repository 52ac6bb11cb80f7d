"""Serving a class: N visitors of one app server at once, measured from the server's side.

    python bench/bench_class.py [--runs-dir DIR] [--run NAME] [--sessions 1 4 8 16] [--predictions 3] [--name class_load]

Starts `streamlit run app/main.py` on 127.0.0.1 in the demo mode (what `make app HOST=...` serves a class
with) and with $CMCS_TIMING_LOG set, so the app itself logs the wall and CPU seconds of every script run
(app/timing.py). For each N it drives N sessions at once from this process over Streamlit's websocket —
light clients, so no browser competes with the server for the CPU — each in a bounded loop: open the
Tour, open the Inspector on the run, then --predictions new tweets, one after another. Per N it records,
from the server: p50/p95 wall and CPU seconds per page open and per prediction (the app's log), the server
process's CPU seconds (/proc), its RSS before, at its peak and after the sessions closed (the server drops a
closed session after --session-ttl); and what the clients waited. Writes bench/results/class_load.json.
Aims, at 8 sessions: p50 prediction <= 2 s, Inspector open <= 5 s, RSS back within 10%.

Without --runs-dir (or $CMCS_RUNS_DIR) holding a finished run, it trains the playground runs first.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _common import write_result

REPO = Path(__file__).resolve().parents[1]
TWEET = "The new phone from Apple is great, but the battery is awful"
STEPS_PAGES = ("Tour", "Inspector")  # what every visitor opens, in order, before predicting


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_figures(pid: int) -> tuple[float, float]:
    """(RSS in MB, user + system CPU seconds) of a process, from /proc."""
    rss = next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """The server's RSS every 0.2 s while a level runs (its peak)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, proc_figures(self.pid)[0])
            time.sleep(0.2)


class Visitor:
    """One browser tab, spoken to over Streamlit's websocket protocol (BackMsg out, ForwardMsg in)."""

    def __init__(self, url: str, query: str) -> None:
        self.url, self.query = url, query
        self.pages: dict[str, str] = {}  # url path -> page script hash (from the navigation message)
        self.widgets: dict[str, str] = {}  # user key -> widget id (from the deltas)
        self.page_hash = ""

    async def rerun(self, ws, page: str | None = None, widget: tuple[str, str] | None = None) -> float:
        """Send one rerun (open `page`, or set a text widget), wait for its script to finish; seconds waited."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        if page is not None:
            self.page_hash = self.pages.get(page, "")
            state.page_name = page
        state.page_script_hash = self.page_hash
        if widget is not None:
            w = state.widget_states.widgets.add()
            w.id, w.string_value = self.widgets[widget[0]], widget[1]
        start = time.perf_counter()
        await ws.send(msg.SerializeToString())
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await ws.recv())
            kind = fm.WhichOneof("type")
            if kind == "navigation":  # st.navigation's pages: what a rerun names to switch page
                self.pages = {p.url_pathname: p.page_script_hash for p in fm.navigation.app_pages}
                self.page_hash = fm.navigation.page_script_hash
            elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                element = fm.delta.new_element
                inner = getattr(element, element.WhichOneof("type"))
                if getattr(inner, "id", "").startswith("$$ID-"):
                    self.widgets[inner.id.rsplit("-", 1)[1]] = inner.id
            elif kind == "script_finished" and fm.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return time.perf_counter() - start

    async def visit(self, predictions: int, tag: str) -> dict[str, list[float]]:
        import websockets

        waited: dict[str, list[float]] = {"open": [], "prediction": []}
        host = self.url.split("//", 1)[1]
        async with websockets.connect(f"ws://{host}/_stcore/stream", subprotocols=["streamlit"], origin=self.url,
                                      max_size=None) as ws:
            for page in STEPS_PAGES:
                waited["open"].append(await self.rerun(ws, page=page))
            for i in range(predictions):
                waited["prediction"].append(await self.rerun(ws, widget=("ins_tweet", f"{TWEET} ({tag}, try {i})")))
        return waited


async def level(url: str, query: str, n: int, predictions: int) -> dict[str, list[float]]:
    results = await asyncio.gather(*(Visitor(url, query).visit(predictions, f"visitor {k}") for k in range(n)))
    return {kind: [t for r in results for t in r[kind]] for kind in ("open", "prediction")}


def quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 3), "p95": round(ordered[min(len(ordered) - 1,
                                                                              int(0.95 * len(ordered)))], 3),
            "max": round(ordered[-1], 3), "n": len(ordered)}


def server_lines(log: Path, offset: int) -> tuple[list[dict], int]:
    text = log.read_text() if log.is_file() else ""
    return [json.loads(line) for line in text[offset:].splitlines() if line.strip()], len(text)


def server_figures(lines: list[dict]) -> dict:
    """p50/p95 of the server's wall and CPU seconds per page open (by page) and per prediction."""
    out = {}
    for name, pick in [*((f"open {p}", lambda r, p=p: r["kind"] == "open" and r["page"] == p) for p in STEPS_PAGES),
                       ("prediction", lambda r: r["kind"] == "prediction")]:
        chosen = [r for r in lines if pick(r)]
        out[name] = {"wall_s": quantiles([r["wall_s"] for r in chosen]), "cpu_s": quantiles([r["cpu_s"] for r in chosen])}
    return out


def find_run(runs_dir: Path | None, name: str | None) -> tuple[Path, str]:
    from cmcs_core.runs.reader import scan_runs

    if runs_dir is None or not any(r.finished for r in scan_runs(runs_dir)[0]):
        base = Path(tempfile.mkdtemp(prefix="cmcs_bench_class_"))
        print(f"no finished run: training the playground runs into {base} (what `make app` does first)")
        subprocess.run([sys.executable, "-m", "cmcs_core", "playground", "--runs-dir", str(base / "runs"),
                        "--data-out", str(base / "data"), "--quiet"], check=True)
        runs_dir = base / "runs"
    runs = [r for r in scan_runs(runs_dir)[0] if r.finished and r.has_checkpoint]
    wanted = [r for r in runs if r.name == name] if name else [r for r in runs if r.visual_source == "captions"
                                                                  and r.method == "cmcs"] or runs
    if not wanted:
        raise SystemExit(f"no run {name or 'with weights'} under {runs_dir}")
    return runs_dir, wanted[0].name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", type=Path, default=os.environ.get("CMCS_RUNS_DIR"))
    p.add_argument("--run", help="the run the Inspector opens (default: the captions CMCS run)")
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--predictions", type=int, default=3, help="new tweets each visitor predicts")
    p.add_argument("--name", default="class_load", help="results file: bench/results/NAME.json")
    p.add_argument("--session-ttl", type=int, default=5, help="seconds the server keeps a closed session "
                   "(Streamlit's default is 120: the RSS after would then be read 2 minutes later)")
    args = p.parse_args()
    runs_dir, run = find_run(Path(args.runs_dir) if args.runs_dir else None, args.run)
    work = Path(tempfile.mkdtemp(prefix="cmcs_class_"))
    log, port = work / "timing.jsonl", free_port()
    env = {**os.environ, "CMCS_RUNS_DIR": str(runs_dir), "CMCS_DEMO": "1", "CMCS_TIMING_LOG": str(log),
           "HF_HUB_OFFLINE": "1", "CMCS_CACHE_DIR": str(work / "cache")}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
                               "--server.port", str(port), "--server.address", "127.0.0.1",
                               "--server.disconnectedSessionTTL", str(args.session_ttl),
                               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                              cwd=REPO, env=env, stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT)
    url, query = f"http://127.0.0.1:{port}", f"run={run}"
    try:
        for _ in range(180):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        rss_cold = proc_figures(server.pid)[0]
        asyncio.run(level(url, query, 1, 1))  # warm-up: imports, the model loaded once, caches filled
        time.sleep(args.session_ttl + 3)
        offset = server_lines(log, 0)[1]
        levels = []
        for n in args.sessions:
            rss_before, cpu_before = proc_figures(server.pid)
            sampler = Sampler(server.pid)
            sampler.start()
            wall = time.perf_counter()
            waited = asyncio.run(level(url, query, n, args.predictions))
            wall = time.perf_counter() - wall
            sampler.stop.set()
            sampler.join()
            cpu = proc_figures(server.pid)[1] - cpu_before
            time.sleep(args.session_ttl + 5)  # the sessions are dropped, their state freed
            rss_after = proc_figures(server.pid)[0]
            lines, offset = server_lines(log, offset)
            row = {"sessions": n, "wall_s": round(wall, 2), "server_cpu_s": round(cpu, 2),
                   "rss_mb": {"before": round(rss_before), "peak": round(max(sampler.peak, rss_before)),
                              "after": round(rss_after), "after_vs_before": round(rss_after / rss_before - 1, 3)},
                   "server": server_figures(lines),
                   "client_waited_s": {k: quantiles(v) for k, v in waited.items()}}
            levels.append(row)
            s = row["server"]
            print(f"{n:2d} sessions: server p50 prediction {s['prediction']['wall_s']['p50']} s "
                  f"(cpu {s['prediction']['cpu_s']['p50']} s), Inspector open p50 {s['open Inspector']['wall_s']['p50']} s, "
                  f"Tour open p50 {s['open Tour']['wall_s']['p50']} s; server CPU {cpu:.1f} s in {wall:.1f} s; "
                  f"RSS {rss_before:.0f} -> peak {row['rss_mb']['peak']} -> {rss_after:.0f} MB", flush=True)
    finally:
        server.terminate()
        server.wait(20)
    write_result(args.name, {"run": run, "runs_dir": str(runs_dir), "predictions_per_visitor": args.predictions,
                                "session_ttl_s": args.session_ttl, "rss_cold_mb": round(rss_cold), "levels": levels,
                                "aims_at_8": {"p50_prediction_s": 2, "inspector_open_s": 5, "rss_back_within": 0.10}})


if __name__ == "__main__":
    main()
