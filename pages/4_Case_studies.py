"""Case studies: the same samples side by side across runs — CMCS, the text-only baseline and
each ablation (paper Fig. 6) — with filters for disagreements, errors and labels."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import common
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.runs import RunReadError, align_predictions

st.title("Case studies")
runs, run, other = common.require_run()
same = [r for r in runs if r.dataset == run.dataset and r.finished]
by_name = {r.name: r for r in same}
default = [run.name] + ([other.name] if other is not None and other.name in by_name else []) + \
    [r.name for r in same if r.name not in (run.name, getattr(other, "name", None))]
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect(f"Runs on {run.dataset} (CMCS, text-only, ablations…)", list(by_name), default=default,
                        format_func=lambda n: f"{n} · {by_name[n].method_title} · visual: {by_name[n].visual_source}")
common_splits = [s for s in ("test", "dev") if all(s in by_name[n].splits() for n in chosen)]
if not chosen or not common_splits:
    st.warning("Pick at least one finished run (all chosen runs need the same split written).")
    st.stop()
split = c2.selectbox("Split", common_splits)
for n in chosen:
    common.random_warning(by_name[n])

@st.cache_data(show_spinner="Aligning predictions…", max_entries=8)
def aligned(paths: tuple[str, ...], split: str, _stamps: tuple[float, ...]):
    from cmcs_core.runs import load_run

    return align_predictions([load_run(p) for p in paths], split)

try:
    table = aligned(tuple(str(by_name[n].path) for n in chosen), split,
                    tuple(common.stamp(by_name[n]) for n in chosen))
except RunReadError as err:
    st.error(str(err))
    st.stop()

pred_cols = [f"pred:{n}" for n in chosen]
f1, f2, f3 = st.columns(3)
only_disagree = f1.checkbox("Only where the runs disagree", value=False)
errors = f2.selectbox("Errors", ["any", f"{chosen[0]} right, another wrong", f"{chosen[0]} wrong", "all wrong"])
labels = f3.multiselect("Gold labels", list(LABEL_NAMES), default=list(LABEL_NAMES))
view = table[table.label.map(common.label_name).isin(labels)]
if only_disagree:
    view = view[view[pred_cols].nunique(axis=1) > 1]
first = f"correct:{chosen[0]}"
others = [f"correct:{n}" for n in chosen[1:]]
if errors.endswith("another wrong"):
    view = view[(view[first] == 1) & ((view[others] == 0).any(axis=1) if others else False)]
elif errors.endswith("wrong") and errors != "all wrong":
    view = view[view[first] == 0]
elif errors == "all wrong":
    view = view[(view[[f"correct:{n}" for n in chosen]] == 0).all(axis=1)]
st.markdown(f"**{len(view)}** of {len(table)} samples match.")
if view.empty:
    st.stop()

shown = view.head(200)
display = shown[["index", "tweet", "target"]].assign(gold=shown.label.map(common.label_name))
for n in chosen:
    display[n] = [f"{common.label_name(p)} {'✓' if c == 1 else '×'}" if p == p else "–"
                  for p, c in zip(shown[f"pred:{n}"], shown[f"correct:{n}"])]
st.dataframe(display, hide_index=True, width="stretch", height=320)

z = shown[[f"correct:{n}" for n in chosen]].to_numpy(dtype=float).T
fig = go.Figure(go.Heatmap(z=z, x=[str(i) for i in shown["index"]], y=chosen, colorscale=[[0, "#d62728"], [1, "#2ca02c"]],
                           zmin=0, zmax=1, showscale=False,
                           text=[[common.label_name(p) for p in shown[f"pred:{n}"]] for n in chosen],
                           hovertemplate="sample %{x}<br>%{y}: %{text}<extra></extra>"))
fig.update_layout(title="Right (green) and wrong (red) per sample and run", height=120 + 40 * len(chosen),
                  margin=dict(l=10, r=10, t=40, b=10))
fig.update_xaxes(type="category", showticklabels=len(shown) <= 40)
common.show_fig(fig, key="case_grid", name=f"case_studies_{split}")

st.subheader("Side by side (paper Fig. 6)")
pick = st.selectbox("Sample", list(shown.index), format_func=lambda r: f"#{shown.loc[r, 'index']} · "
                    f"[{shown.loc[r, 'target']}] {str(shown.loc[r, 'tweet'])[:90]}")
row = shown.loc[pick]
left, right = st.columns([1, 2])
lead = by_name[chosen[0]]  # table rows follow the first chosen run's file order
with left:
    image = common.load_dataset_image(lead, str(row.image_id))
    if image is not None:
        st.image(image, caption=str(row.image_id), width=260)
    m = common.masks(lead, split)
    entry = m["samples"][int(pick)] if m and int(pick) < len(m["samples"]) else None
    if entry and entry.get("caption"):
        st.markdown(f"caption: _{entry['caption']}_")
    if image is None and not (entry and entry.get("caption")):
        st.caption("no image or caption on disk for this sample")
with right:
    st.markdown(f"{common.highlight_target(str(row.tweet), str(row.target))} — gold **{common.label_name(row.label)}**")
    lines = []
    for n in chosen:
        p = row[f"pred:{n}"]
        mark = "✓" if row[f"correct:{n}"] == 1 else "×"
        lines.append(f"| {by_name[n].method_title} (`{n}`) | {by_name[n].visual_source} | "
                     f"{common.label_name(p) if p == p else '–'} {mark} |")
    st.markdown("| run | visual source | prediction |\n|---|---|---|\n" + "\n".join(lines))
