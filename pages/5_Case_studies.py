"""Case studies: the same samples side by side across runs — CMCS, the text-only baseline and
each ablation (paper Fig. 6) — with filters for disagreements, errors and labels."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import data, state, widgets
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.report.analyses import align_predictions
from cmcs_core.runs.reader import RunReadError, load_run

st.title("Case studies")
runs, run, other = widgets.require_run()
same = [r for r in runs if r.dataset == run.dataset and r.finished]
by_path = {str(r.path): r for r in same}  # names repeat across grids: a run is its path
matched = [str(r.path) for r in state.seed_matched(run, same)]
default = [p for p in dict.fromkeys([str(run.path), str(getattr(other, "path", "")), *matched]) if p in by_path]
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect(f"Runs on {run.dataset} (CMCS, text-only, ablations…)", list(by_path), default=default,
                        format_func=lambda p: state.run_label(by_path[p]),
                        help="Defaults to the selected run and the runs of its grid with the same seed "
                             "(the other methods), plus the run to compare with.")
common_splits = [s for s in ("test", "dev") if all(s in by_path[p].splits() for p in chosen)]
if not chosen:
    st.warning("Pick at least one run.")
    st.stop()
if not common_splits:
    without = [by_path[p].name for p in chosen if not by_path[p].splits()]
    st.info("No split with per-sample predictions is shared by the chosen runs"
            + (f": {', '.join(without)} {'is a result folder' if len(without) == 1 else 'are result folders'} kept "
               "without predictions (their metrics are on *Compare*)." if without else "."))
    st.stop()
split = c2.selectbox("Split", common_splits, format_func=widgets.split_name)
for p in chosen:
    widgets.random_warning(by_path[p])
names = {p: by_path[p].name for p in chosen}

@st.cache_data(show_spinner="Aligning predictions…", max_entries=8)
def aligned(paths: tuple[str, ...], split: str, versions: tuple[float, ...]):
    return align_predictions([load_run(p) for p in paths], split)

try:
    table = aligned(tuple(chosen), split, tuple(data.stamp(by_path[p]) for p in chosen))
except RunReadError as err:
    st.error(str(err))
    st.stop()

pred_cols = [f"pred:{p}" for p in chosen]
f1, f2, f3 = st.columns(3)
only_disagree = f1.checkbox("Only where the runs disagree", value=False)
lead_name = names[chosen[0]]
errors = f2.selectbox("Errors", ["any", f"{lead_name} right, another wrong", f"{lead_name} wrong", "all wrong"])
labels = f3.multiselect("Gold labels", list(LABEL_NAMES), default=list(LABEL_NAMES))
view = table[table.label.map(widgets.label_name).isin(labels)]
if only_disagree:
    view = view[view[pred_cols].nunique(axis=1) > 1]
first = f"correct:{chosen[0]}"
others = [f"correct:{p}" for p in chosen[1:]]
if errors.endswith("another wrong"):
    view = view[(view[first] == 1) & ((view[others] == 0).any(axis=1) if others else False)]
elif errors.endswith("wrong") and errors != "all wrong":
    view = view[view[first] == 0]
elif errors == "all wrong":
    view = view[(view[[f"correct:{p}" for p in chosen]] == 0).all(axis=1)]
st.markdown(f"**{len(view)}** of {len(table)} samples match.")
if view.empty:
    st.stop()

shown = view.head(200)
display = shown[["index", "tweet", "target"]].assign(gold=shown.label.map(widgets.label_name))
for p in chosen:
    display[names[p]] = [f"{widgets.label_name(v)} {'✓' if c == 1 else '×'}" if v == v else "–"
                         for v, c in zip(shown[f"pred:{p}"], shown[f"correct:{p}"])]
st.dataframe(display, hide_index=True, width="stretch", height=320)

z = shown[[f"correct:{p}" for p in chosen]].to_numpy(dtype=float).T
y = [names[p] for p in chosen]
fig = go.Figure(go.Heatmap(z=z, x=[str(i) for i in shown["index"]], y=y, colorscale=[[0, "#d62728"], [1, "#2ca02c"]],
                           zmin=0, zmax=1, showscale=False,
                           text=[[widgets.label_name(v) for v in shown[f"pred:{p}"]] for p in chosen],
                           hovertemplate="sample %{x}<br>%{y}: %{text}<extra></extra>"))
fig.update_layout(title="Right (green) and wrong (red) per sample and run", height=120 + 40 * len(chosen),
                  margin=dict(l=10, r=10, t=40, b=10))
fig.update_xaxes(type="category", showticklabels=len(shown) <= 40)
widgets.show_fig(fig, key="case_grid", name=f"case_studies_{split}")

st.subheader("Side by side (paper Fig. 6)")
pick = st.selectbox("Sample", list(shown.index), format_func=lambda r: f"#{shown.loc[r, 'index']} · "
                    f"[{shown.loc[r, 'target']}] {str(shown.loc[r, 'tweet'])[:90]}")
row = shown.loc[pick]
left, right = st.columns([1, 2])
lead = by_path[chosen[0]]  # table rows follow the first chosen run's file order
with left:
    image = data.load_dataset_image(lead, str(row.image_id))
    if image is not None:
        st.image(image, caption=str(row.image_id), width=260)
    m = data.masks(lead, split)
    entry = m["samples"][int(pick)] if m and int(pick) < len(m["samples"]) else None
    if entry and entry.get("caption"):
        st.markdown(f"caption: _{widgets.md(entry['caption'])}_")
    if image is None and not (entry and entry.get("caption")):
        st.caption("no image or caption on disk for this sample")
with right:
    st.markdown(f"{widgets.highlight_target(str(row.tweet), str(row.target))} — gold **{widgets.label_name(row.label)}**")
    lines = []
    for p in chosen:
        v = row[f"pred:{p}"]
        mark = "✓" if row[f"correct:{p}"] == 1 else "×"
        lines.append(f"| {by_path[p].method_title} ({widgets.md(names[p])}) | {by_path[p].visual_source} | "
                     f"{widgets.label_name(v) if v == v else '–'} {mark} |")
    st.markdown("| run | visual source | prediction |\n|---|---|---|\n" + "\n".join(lines))
