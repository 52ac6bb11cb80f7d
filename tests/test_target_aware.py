"""Target-aware selection, opt-in: the readouts that keep the target (mean+target, mention), the
target-conditioned token gate, the paired dev objective (upper_objective=counterfactual) and the mask
as an upper-level variable. Each piece's math on its own, the refusals of combinations that mean
nothing, and a CPU smoke training of every variant."""
from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

from cmcs_core.config import ModelConfig, RunConfig, apply_method, build_config
from cmcs_core.data.counterfactual import ClauseGrammar, counterfactual_copies, names_target, phrase_bank
from cmcs_core.data.tsv import Sample
from cmcs_core.model.cmcs import CMCSModel, TextTower
from cmcs_core.model.hypergrad import implicit_hypergradient
from cmcs_core.model.target_aware import TargetAware, invariance
from cmcs_core.model.mfs import (
    DISTANCE_EDGES,
    NO_MENTION,
    CausalIntervention,
    mention_distance,
    mention_tokens,
    pool,
    target_segment,
)
from cmcs_core.pipeline import torch_threads
from cmcs_core.variants import VARIANTS as NAMED_VARIANTS

pytestmark = pytest.mark.usefixtures("one_thread")


def _ids(text_encoder, tweets: list[str], targets: list[str]) -> dict[str, torch.Tensor]:
    return text_encoder.tokenize(tweets, targets, max_length=32)


def _specials(text_encoder) -> tuple[int, list[int]]:
    tok = text_encoder.tokenizer
    return tok.sep_token_id, tok.all_special_ids


# -- where the target is ------------------------------------------------------------------------------
def test_mention_tokens_mark_the_targets_words_inside_the_tweet(text_encoder):
    enc = _ids(text_encoder, ["great game by real madrid tonight", "no mention here at all"],
               ["real madrid", "barcelona"])
    found = mention_tokens(enc["input_ids"], enc["attention_mask"], *_specials(text_encoder))
    tok = text_encoder.tokenizer
    words = tok.convert_ids_to_tokens(enc["input_ids"][0][found[0]].tolist())
    assert words == ["real", "madrid"]  # in the tweet, not the copy in the second segment
    positions = found[0].nonzero().flatten().tolist()
    segment = target_segment(enc["input_ids"], enc["attention_mask"], *_specials(text_encoder))
    assert not segment[0, positions].any()  # the first segment's copy, not the second's
    assert not found[1].any()  # a tweet without its target (cut, or absent) has no mention


def test_mention_distance_buckets_and_the_no_mention_bucket():
    mention = torch.zeros(2, 40, dtype=torch.bool)
    mention[0, 5] = True
    dist = mention_distance(mention, torch.ones(2, 40, dtype=torch.long))
    gaps = (torch.arange(40) - 5).abs()
    expected = torch.bucketize(gaps, torch.tensor(DISTANCE_EDGES), right=True)
    assert torch.equal(dist[0], expected)
    assert dist[0, 5] == 0 and dist[0, 6] == 1 and dist[0, 4] == 1 and dist[0, 39] == len(DISTANCE_EDGES)
    assert (dist[1] == NO_MENTION).all()


# -- readouts ---------------------------------------------------------------------------------------
def _model(text_encoder, **model_kw) -> CMCSModel:
    cfg = dataclasses.replace(apply_method(ModelConfig(), model_kw.pop("method", "text_only")), **model_kw)
    return CMCSModel(cfg, TextTower(text_encoder, 0), None).eval()


def _batch(text_encoder, tweets, targets) -> dict[str, torch.Tensor]:
    enc = _ids(text_encoder, tweets, targets)
    with torch.no_grad():
        hidden = text_encoder.hidden_at(enc, text_encoder.num_layers)
    return {**enc, "text_hidden": hidden, "label": torch.zeros(len(tweets), dtype=torch.long),
            "image_label": torch.zeros(len(tweets), 3)}


def test_mean_plus_target_readout_concatenates_the_two_pools(text_encoder):
    batch = _batch(text_encoder, ["lovely evening with pat and sam", "the mayor spoke about taxes"], ["pat", "taxes"])
    model = _model(text_encoder, pooling="mean+target")
    out = model(batch)
    hidden = batch["text_hidden"].float()
    segment = target_segment(batch["input_ids"], batch["attention_mask"], *_specials(text_encoder))
    expected = torch.cat([pool(hidden, batch["attention_mask"]), pool(hidden, segment)], -1)
    torch.testing.assert_close(out["text_raw_pooled"], expected)
    assert model.text_head[1].in_features == 2 * text_encoder.dim


def test_mention_readout_reads_the_tweets_copy_and_falls_back_to_the_target_segment(text_encoder):
    batch = _batch(text_encoder, ["lovely evening with pat tonight", "nothing about it"], ["pat", "taxes"])
    out = _model(text_encoder, pooling="mention")(batch)
    hidden = batch["text_hidden"].float()
    ids, real = batch["input_ids"], batch["attention_mask"]
    mention = mention_tokens(ids, real, *_specials(text_encoder))
    segment = target_segment(ids, real, *_specials(text_encoder))
    torch.testing.assert_close(out["text_raw_pooled"][0], pool(hidden[:1], mention[:1])[0])
    torch.testing.assert_close(out["text_raw_pooled"][1], pool(hidden[1:], segment[1:])[0])


# -- the target-conditioned gate ------------------------------------------------------------------------
def test_target_conditioned_gate_equals_the_plain_mask_when_its_target_term_is_zero():
    torch.manual_seed(0)
    plain = CausalIntervention(16, 8, 0.0, "learned", "token").eval()
    cond = CausalIntervention(16, 8, 0.0, "learned", "token", target_conditioned=True).eval()
    cond.load_state_dict(plain.state_dict(), strict=False)  # same mask MLP and MFS networks
    x, t = torch.randn(3, 7, 16), torch.randn(3, 16)
    dist = torch.randint(0, NO_MENTION + 1, (3, 7))
    # at initialisation the target term's output layer is zero: the same gates, the same Ebar
    torch.testing.assert_close(cond.mask(x, t, dist), plain.mask(x))
    torch.testing.assert_close(cond(x, None, t, dist)[0], plain(x)[0])
    # once the term is non-zero the gate depends on the target and on the distance
    torch.nn.init.normal_(cond.relation.out.weight)
    assert not torch.allclose(cond.mask(x, t, dist), plain.mask(x))
    assert not torch.allclose(cond.mask(x, t, dist), cond.mask(x, -t, dist))
    assert not torch.allclose(cond.mask(x, t, dist), cond.mask(x, t, (dist + 1) % (NO_MENTION + 1)))
    with torch.no_grad():
        cond.relation.out.weight.zero_()
    torch.testing.assert_close(cond.mask(x, t, dist), plain.mask(x))


def test_a_closed_gate_takes_its_token_out_of_the_readout(text_encoder):
    """With a target-conditioned gate the text branch averages Ebar weighted by the gates: a token
    at gate ~0 leaves the average rather than diluting it."""
    batch = _batch(text_encoder, ["pat was lovely tonight"], ["pat"])
    model = _model(text_encoder, method="cmcs", use_visual=False, mask_granularity="token",
                   mask_condition="target")
    with torch.no_grad():
        model.text_mfs.mask_net[-1].bias.fill_(-30.0)  # every gate ~0 ...
        model.text_mfs.relation.out.bias.zero_()
    out = model(batch)
    gates = out["text_mask"][0, :, 0]
    assert float(gates.detach().max()) < 1e-6
    # ... except one released token: the gate-weighted readout is then that token's Ebar alone
    release = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
    release[0, 2] = True
    one = model(batch, release={"text": release})
    ebar, _ = model.text_mfs(batch["text_hidden"].float(), release, *model_inputs(model, batch))
    torch.testing.assert_close(one["text_bar_pooled"][0], ebar[0, 2], rtol=1e-4, atol=1e-4)


def model_inputs(model: CMCSModel, batch):
    """The target state and distance buckets the model feeds its gate (recomputed independently)."""
    tok = model.text_tower.encoder.tokenizer
    ids, real = batch["input_ids"], batch["attention_mask"]
    target = pool(batch["text_hidden"].float(), target_segment(ids, real, tok.sep_token_id, tok.all_special_ids))
    mention = mention_tokens(ids, real, tok.sep_token_id, tok.all_special_ids)
    return target, mention_distance(mention, real)


# -- clause copies and the paired dev objective ---------------------------------------------------------------------------
def test_invariance_is_zero_for_identical_pairs_and_bounded_by_log2():
    a = torch.randn(5, 3)
    assert float(invariance(a, a.clone())) == pytest.approx(0.0, abs=1e-7)
    far = torch.tensor([[20.0, -20.0, -20.0]]), torch.tensor([[-20.0, 20.0, -20.0]])
    assert float(invariance(*far)) == pytest.approx(math.log(2), rel=1e-4)
    b = torch.randn(5, 3)
    assert float(invariance(a, b)) == pytest.approx(float(invariance(b, a)), rel=1e-6)
    assert float(invariance(a, b)) > 0


FUNCTION_WORDS = {"and", "is", "my", "the", "this", "was", "a", "i", "of", "so", "that", "are", "on", "but", "also",
                  ",", ":", "."}


def test_clause_grammar_shares_no_content_word_with_the_stress_bank():
    grammar = ClauseGrammar.load()
    stress = {w for side in phrase_bank("stress").values() for p in side for w in p.lower().split()}
    assert not (grammar.words() & stress) - FUNCTION_WORDS
    n = len(grammar.templates) * len(grammar.openers) * len(grammar.subjects) * len(grammar.verbs)
    assert min(n * len(a) for a in grammar.adjectives.values()) > 1000  # not a dozen phrases to memorise


def test_clause_copies_keep_labels_and_never_use_a_stress_phrase():
    samples = [Sample(str(i), i % 3, f"{i}.jpg", f"$T$ did something {i}", t, i + 1)
               for i, t in enumerate(["Pat", "the team", "London", "my cat"] * 25)]
    copies = counterfactual_copies(samples, seed=3)
    grammar = ClauseGrammar.load()
    stress = {p for side in phrase_bank("stress").values() for p in side}
    assert len(copies) == len(samples)
    sides = set()
    for orig, new in zip(samples, copies):
        assert (new.label, new.target, new.image_id, new.index) == (orig.label, orig.target, orig.image_id, orig.index)
        clause = new.tweet[len(orig.tweet):].strip()
        assert new.tweet.startswith(orig.tweet) and clause and clause not in stress
        assert set(clause.lower().split()) <= grammar.words()  # composed from the grammar's parts only
        assert not names_target(clause, orig.target)  # "my cat" is never appended to the row about my cat
        side = [p for p, words in grammar.adjectives.items() if any(f" {w}" in f" {clause}" for w in words)]
        assert len(side) == 1
        sides.add((orig.label, side[0]))
    assert len(sides) == 6  # either sentiment, independent of the label
    assert len({c.tweet for c in copies}) > 90  # varied clauses, not a handful
    assert copies == counterfactual_copies(samples, seed=3)  # deterministic
    assert copies != counterfactual_copies(samples, seed=4)


# -- the hypergradient with a direct term ------------------------------------------------------------------
def test_hypergradient_adds_the_direct_term_of_a_hyperparameter_the_dev_loss_reads():
    """L_train = a/2 (theta - psi)^2 puts theta* = psi; L_dev = (theta - c)^2 + psi^2 then has
    total derivative 2 (psi - c) + 2 psi. A K-term Neumann series with eta * a < 1 approaches it."""
    a, c = 2.0, 0.3
    theta = torch.tensor([0.7], requires_grad=True)
    psi = torch.tensor([0.7], requires_grad=True)  # theta at its optimum for this psi
    train = 0.5 * a * (theta - psi).pow(2).sum()
    dev = (theta - c).pow(2).sum() + psi.pow(2).sum()
    stats: dict = {}
    (got,) = implicit_hypergradient(train, dev, [theta], [psi], K=200, eta=0.2, stats=stats)
    assert float(got) == pytest.approx(2 * (0.7 - c) + 2 * 0.7, rel=1e-4)
    # without the direct term (a dev loss that does not read psi) only the implicit part remains
    train = 0.5 * a * (theta - psi).pow(2).sum()
    (implicit,) = implicit_hypergradient(train, (theta - c).pow(2).sum(), [theta], [psi], K=200, eta=0.2)
    assert float(implicit) == pytest.approx(2 * (0.7 - c), rel=1e-4)
    assert "dev_train_cos" in stats


# -- refusals when the config is built ------------------------------------------------------------------------
@pytest.mark.parametrize("method, model_kw, train_kw, why", [
    ("text_only", {"mask_condition": "target", "mask_granularity": "token"}, {}, "no learned mask to condition"),
    ("wo_mfs", {"mask_condition": "target", "mask_granularity": "token"}, {}, "no learned mask to condition"),
    ("cmcs", {"mask_condition": "target"}, {}, "set mask_granularity=token"),
    ("wo_cms", {}, {"upper_objective": "counterfactual"}, "has no upper level"),
    ("text_only", {}, {"upper_objective": "counterfactual"}, "has no upper level"),
    ("wo_cms", {}, {"mask_level": "upper"}, "has no upper level"),
    ("wo_mfs", {}, {"mask_level": "upper"}, "has no learned mask"),
    ("cmcs", {"mask_granularity": "token"}, {"mask_level": "relation"}, "set mask_condition=target"),
    ("cmcs", {"pooling": "mean+mean"}, {}, "each once"),
    ("cmcs", {"pooling": "max"}, {}, "pooling must be one of"),
    ("cmcs", {}, {"upper_objective": "dev+cf"}, "upper_objective=.dev\\+cf.: choose from"),
    # a method's switch set against it: refused, never tabled under the method's name
    ("cmcs", {"use_cms": False}, {}, "use_cms=False contradicts method 'cmcs'.*choose the method instead \\(wo_cms\\)"),
    ("text_only", {"mask_mode": "learned"}, {}, "mask_mode='learned' contradicts method 'text_only'"),
    # a flag that means nothing without its feature: refused, not ignored
    ("cmcs", {}, {"mask_lr": 1e-2}, "mask_lr=0.01: .*set mask_level=upper or relation"),
    ("wo_cms", {}, {"mask_lr": 1e-2}, "mask_lr=0.01: method 'wo_cms' has no upper level"),
    ("cmcs", {}, {"invariance_weight": 2.0}, "invariance_weight=2.0: .*upper_objective=counterfactual or "
                                             "counterfactual_share > 0"),
    ("wo_cms", {}, {"neumann_eta_rule": "curvature"}, "neumann_eta_rule=curvature: method 'wo_cms' has no upper level"),
])
def test_combinations_that_mean_nothing_are_refused_with_the_reason(method, model_kw, train_kw, why):
    cfg = build_config(None, method, None, {**model_kw, **train_kw}, validate=False)
    with pytest.raises(ValueError, match=why):
        cfg.validate()
    with pytest.raises(ValueError, match=why):  # also when a saved config.json is read back
        RunConfig.from_dict(cfg.to_dict())


def test_cli_refuses_before_any_work(capsys):
    from cmcs_core.cli import main

    code = main(["train", "--method", "text_only", "--mask-condition", "target", "--mask-granularity", "token",
                 "--output-dir", "/nonexistent/never-written"])
    assert code == 2
    assert "no learned mask to condition" in capsys.readouterr().err


# -- CPU smoke training of each variant -----------------------------------------------------------------------
VARIANTS = {
    "text_only mean+target": ("text_only", {"pooling": "mean+target"}, {}),
    "text_only mention": ("text_only", {"pooling": "mention"}, {}),
    "cmcs target gates": ("cmcs", {"mask_granularity": "token", "mask_condition": "target",
                                   "pooling": "mean+target"}, {}),
    "cmcs counterfactual upper": ("cmcs", {}, {"upper_objective": "counterfactual"}),
    "cmcs target-aware (all)": ("cmcs", {"mask_granularity": "token", "mask_condition": "target",
                                         "pooling": "mean+target"},
                                {"upper_objective": "counterfactual", "mask_level": "upper", "mask_lr": 1e-2}),
    "cmcs relation upper": ("cmcs", {"mask_granularity": "token", "mask_condition": "target"},
                            {"upper_objective": "counterfactual", "mask_level": "relation", "mask_lr": 1e-2,
                             "neumann_eta_rule": "curvature"}),
    "cmcs counterfactual branch": ("cmcs", {}, {"counterfactual_share": 0.5}),
    "text_only counterfactual branch": ("text_only", {}, {"counterfactual_share": 0.5}),
    "wo_cms target gates": ("wo_cms", {"mask_granularity": "token", "mask_condition": "target",
                                       "pooling": "mean+target"}, {}),
}


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory, cmcs_cache, tiny_config_factory) -> dict:
    from cmcs_core.train.trainer import Trainer

    runs = {}
    for name, (method, model_kw, train_kw) in VARIANTS.items():
        cfg = tiny_config_factory(method, epochs=1, **train_kw, **model_kw)
        run_dir = tmp_path_factory.mktemp("variants") / name.replace(" ", "_")
        trainer = Trainer(cfg, run_dir, progress=False)
        with torch_threads(1):
            trainer.setup()
            initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
            trainer.fit()
        runs[name] = {"dir": run_dir, "trainer": trainer, "initial": initial}
    return runs


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_trains_records_its_flags_and_reloads(variant_runs, name):
    from cmcs_core.inference import Predictor

    run = variant_runs[name]
    method, model_kw, train_kw = VARIANTS[name]
    cfg = json.loads((run["dir"] / "config.json").read_text())
    for key, value in model_kw.items():
        assert cfg["model"][key] == value
    for key, value in train_kw.items():
        assert cfg["train"][key] == value
    metrics = json.loads((run["dir"] / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["acc"] <= 1.0
    batches = pd.read_parquet(run["dir"] / "batches.parquet")
    assert batches["grad_norm"].notna().all() and (batches["grad_norm"] > 0).all()
    if cfg["model"]["mask_mode"] == "learned":
        assert (batches["mask_token_std"] >= 0).all() and batches["mask_mean"].between(0, 1).all()
    pred = Predictor(run["dir"])  # the checkpoint loads into the same architecture
    out = pred.predict("great night with Pat but the traffic was awful", "Pat", caption="two people smiling")
    assert out["label"] in ("negative", "neutral", "positive")


def test_paired_dev_objective_logs_its_invariance(variant_runs):
    batches = pd.read_parquet(variant_runs["cmcs counterfactual upper"]["dir"] / "batches.parquet")
    upper = batches[batches.hypergrad_norm.notna()]
    assert len(upper) >= 2
    assert upper.dev_invariance.notna().all() and (upper.dev_invariance >= 0).all()
    assert upper.dev_L_t_edited.notna().all() and upper.dev_train_cos.between(-1, 1).all()


def test_an_upper_level_mask_moves_only_with_the_upper_level(variant_runs):
    """mask_level=upper: the mask network is stepped by its own Adam at the upper steps (and moves),
    theta's optimiser never holds it; with the plain setting the mask is in theta."""
    run = variant_runs["cmcs target-aware (all)"]
    trainer = run["trainer"]
    masks = {id(p) for p in trainer.model.mask_parameters()}
    in_theta = {id(p) for g in trainer.opt.param_groups for p in g["params"]}
    assert masks and not masks & in_theta
    assert {id(p) for g in trainer.mask_opt.param_groups for p in g["params"]} == masks
    names = {n for n, p in trainer.model.named_parameters() if id(p) in masks}
    moved = [n for n in names if not torch.equal(run["initial"][n], dict(trainer.model.named_parameters())[n])]
    assert moved  # the hypergradient reached the mask (its target term included)
    assert any(n.startswith("text_mfs.relation.") for n in moved)
    batches = pd.read_parquet(run["dir"] / "batches.parquet")
    assert batches.hypergrad_mask_norm.dropna().gt(0).all()
    plain = variant_runs["cmcs target gates"]["trainer"]
    assert {id(p) for p in plain.model.mask_parameters()} <= {id(p) for g in plain.opt.param_groups for p in g["params"]}
    assert plain.mask_opt is None


def test_curvature_rule_recovers_the_exact_hypergradient_where_the_fixed_step_diverges():
    """A quadratic with Hessian diag(50, 1): with eta = 0.1 the Neumann terms grow as (1 - 5)^j; with
    eta = 0.8 / lambda_max (power iteration) and enough terms the series approaches -g H^-1 B."""
    from cmcs_core.model.hypergrad import top_eigenvalue

    h = torch.tensor([50.0, 1.0])
    theta = torch.tensor([0.2, -0.4], requires_grad=True)
    psi = torch.tensor([1.0], requires_grad=True)
    target = torch.tensor([0.5, 0.5])

    def losses():
        train = 0.5 * (h * theta.pow(2)).sum() - psi.sum() * theta.sum()  # d2L/dtheta dpsi = -1 per coordinate
        dev = (theta - target).pow(2).sum()
        return train, dev

    g_dev = 2 * (theta.detach() - target)
    exact = float((g_dev / h).sum())  # -g^T H^-1 (-1, -1)
    train, dev = losses()
    (fixed,) = implicit_hypergradient(train, dev, [theta], [psi], K=6, eta=0.1)
    assert abs(float(fixed)) > 100 * abs(exact)  # the divergent series
    train, dev = losses()
    stats: dict = {}
    (curv,) = implicit_hypergradient(train, dev, [theta], [psi], K=800, eta=0.1, stats=stats, power_iters=30)
    assert stats["hessian_top_eig"] == pytest.approx(50.0, rel=1e-3)
    assert stats["neumann_eta"] == pytest.approx(0.8 / 50.0, rel=1e-3)
    assert float(curv) == pytest.approx(exact, rel=1e-3)
    train, _ = losses()
    grads = torch.autograd.grad(train, [theta], create_graph=True)
    assert top_eigenvalue(grads, [theta], 30) == pytest.approx(50.0, rel=1e-3)


# -- the machinery diagnosis read from a run's logs ------------------------------------------------------------
def test_machinery_summary_reads_what_reached_the_mask_and_phi(variant_runs, tmp_path, capsys):
    import shutil

    from cmcs_core.cli import main
    from cmcs_core.report.analyses import ANALYSES
    from cmcs_core.report.machinery import head_curvature, machinery_summary
    from cmcs_core.runs.reader import RunReadError, load_run

    run_dir = variant_runs["cmcs target-aware (all)"]["dir"]
    run = load_run(run_dir)
    batches = pd.read_parquet(run_dir / "batches.parquet")
    summary = machinery_summary(run)
    upper = batches[batches.hypergrad_norm.notna()]
    assert summary["upper_steps"] == len(upper) and summary["steps"] == len(batches)
    assert summary["clip_binds"] == pytest.approx(float((batches.grad_norm > 1.0).mean()))
    removed = 1 - (1.0 / batches.grad_norm).clip(upper=1.0)
    assert summary["clip_removes"] == pytest.approx(float(removed.median()))
    assert summary["hypergrad_mask_norm"] == pytest.approx(float(upper.hypergrad_mask_norm.median()))
    assert 0.0 <= summary["gates_near_half"] <= 1.0 and "gate_median" in summary
    curv = head_curvature(run, batches=1, iters=5)
    cfg = RunConfig.load(run_dir / "config.json")
    assert curv["hessian_top_eig"] > 0
    eta = (float(batches.neumann_eta.median()) if cfg.train.neumann_eta_rule == "curvature"
           else cfg.train.neumann_eta)  # the step the run took
    assert curv["eta_lambda"] == pytest.approx(eta * curv["hessian_top_eig"])
    assert curv["neumann_growth"] == pytest.approx(abs(1 - eta * curv["hessian_top_eig"]) ** cfg.train.K)
    # a curvature-rule run is measured at the step it took (its logged median eta), not --neumann-eta
    curv_dir = variant_runs["cmcs relation upper"]["dir"]
    logged = float(pd.read_parquet(curv_dir / "batches.parquet").neumann_eta.median())
    assert logged != RunConfig.load(curv_dir / "config.json").train.neumann_eta
    c2 = head_curvature(load_run(curv_dir), batches=1, iters=5)
    assert c2["eta_lambda"] == pytest.approx(logged * c2["hessian_top_eig"])
    # a run logged before these columns is named, with how to get them, rather than read as zeros
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    batches.drop(columns=["grad_norm", "mask_grad_norm"]).to_parquet(old / "batches.parquet")
    with pytest.raises(RunReadError, match="retrain"):
        machinery_summary(load_run(old))
    compute, markdown = ANALYSES["machinery"]
    table = compute([run, load_run(old)])
    assert len(table) == 1 and len(table.attrs["skipped"]) == 1
    text = markdown(table)
    assert "mask grad (median)" in text and "left out:" in text and "retrain" in text
    # behind the CLI: one column per run, the curvature rows only with `curvature`
    main(["analyse", "machinery", str(run_dir)])
    out = capsys.readouterr().out
    assert "lower clip binds" in out and "lambda_max" not in out
    main(["analyse", "curvature", str(run_dir)])
    assert "lambda_max of the heads' Hessian" in capsys.readouterr().out


def test_relation_level_moves_only_the_target_term_at_the_upper_level(variant_runs):
    """mask_level=relation: the gate's content MLP stays in theta (the training rows teach it), its
    target term is the hyperparameter (D_dev teaches it)."""
    run = variant_runs["cmcs relation upper"]
    trainer = run["trainer"]
    relation = {id(p) for p in trainer.model.text_mfs.relation.parameters()}
    content = {id(p) for p in trainer.model.text_mfs.mask_net.parameters()}
    in_theta = {id(p) for g in trainer.opt.param_groups for p in g["params"]}
    assert content <= in_theta and not relation & in_theta
    assert {id(p) for g in trainer.mask_opt.param_groups for p in g["params"]} == relation
    params = dict(trainer.model.named_parameters())
    assert not torch.equal(run["initial"]["text_mfs.relation.out.weight"], params["text_mfs.relation.out.weight"])


def test_grid_sets_the_variant_after_each_method(tmp_path):
    """`cmcs grid --methods cmcs wo_cms --variant target_aware`: CMCS gets the whole variant, w/o CMS its
    model part (it has no upper level), so the two pair by seed; folders say +target_aware."""
    from cmcs_core.flags import default_run_dir
    from cmcs_core.sweep.spec import plan_grid
    from cmcs_core.config import UPPER_LEVEL_FIELDS
    from cmcs_core.variants import VARIANTS

    runs = plan_grid(RunConfig(), ["twitter2015"], ["cmcs", "wo_cms"], [1], {"K": [1, 2]},
                     name_of=lambda cfg: str(default_run_dir(cfg).relative_to("runs")), variant="target_aware")
    assert [r.name for r in runs] == ["twitter2015_minilm_frozen_cmcs_s1+target_aware_K1",
                                      "twitter2015_minilm_frozen_wo_cms_s1+target_aware_K1",
                                      "twitter2015_minilm_frozen_cmcs_s1+target_aware_K2",
                                      "twitter2015_minilm_frozen_wo_cms_s1+target_aware_K2"]
    parts = VARIANTS["target_aware"]
    for run in runs:
        for key, value in parts["model"].items():
            assert getattr(run.cfg.model, key) == value
        for key, value in parts["train"].items():
            default = getattr(RunConfig().train, key)
            upper = key in UPPER_LEVEL_FIELDS
            assert getattr(run.cfg.train, key) == (value if run.cfg.model.use_cms or not upper else default)
    assert runs[1].cfg.train.counterfactual_share == parts["train"]["counterfactual_share"]  # a lower-level flag
    assert {r.cfg.train.K for r in runs} == {1, 2}  # --set still applies on top


def test_copy_branch_is_scheduled_by_its_causal_effect(variant_runs):
    """The copy branch (counterfactual_share): L_c = CE(copy) + JS joins the lower objective with phi_c =
    softplus(gamma * exp(L_t(copy) - L_t(row))); gamma moves with the upper level like alpha and
    beta; without CMS (text-only) phi_c stays 1 and gamma never moves."""
    run = variant_runs["cmcs counterfactual branch"]
    b = pd.read_parquet(run["dir"] / "batches.parquet")
    assert b.L_c.notna().all() and (b.L_c > 0).all() and b.eff_c.notna().all()
    softplus = torch.nn.functional.softplus
    # the logged gamma is the one the step's loss used (logged before that step's upper step moves it)
    expected = softplus(torch.tensor((b.gamma * b.eff_c).to_numpy()))
    assert torch.allclose(torch.tensor(b.phi_c.to_numpy()), expected.float(), rtol=1e-4)
    upper = b[b.hypergrad_norm.notna()]
    assert upper.hypergrad_gamma.notna().all() and b.gamma.nunique() > 1
    plain = pd.read_parquet(variant_runs["text_only counterfactual branch"]["dir"] / "batches.parquet")
    assert (plain.phi_c == 1.0).all() and plain.L_c.notna().all()
    trainer = variant_runs["text_only counterfactual branch"]["trainer"]
    assert float(trainer.target_aware.gamma.detach()) == pytest.approx(trainer.cfg.model.alpha_init)


def test_copy_losses_on_identical_copies(text_encoder):
    """A copy identical to its row costs exactly its CE, no invariance, and has causal effect 1."""
    model = _model(text_encoder, method="cmcs", use_visual=False)
    batch = _batch(text_encoder, ["pat was lovely tonight", "sam was late again"], ["pat", "sam"])
    with torch.no_grad():  # values only
        out = model(batch)
        copy = model({k: v[:1] for k, v in batch.items()})
        losses = TargetAware(copy_share=0.5).copy_losses(out, copy, batch)
    assert float(losses["L_c"]) == pytest.approx(float(losses["L_c_copy"]), rel=1e-5)
    assert float(losses["L_c_copy"]) == pytest.approx(float(losses["L_c_row"]), rel=1e-5)
    assert float(model.causal_effect(losses["L_c_copy"], losses["L_c_row"])) == pytest.approx(1.0)


def test_tables_name_a_named_variant_once_and_its_partial_flags_one_by_one():
    """config.json keeps flags, not the variant's name: the tables fold a full set of a variant's flags
    into `+target_aware` (without CMS: the flags it takes), and list a partial set flag by flag."""
    from fake_runs import fake_run

    from cmcs_core.report.regime import Regime, Variant

    full = {**NAMED_VARIANTS["target_aware"]["model"], **NAMED_VARIANTS["target_aware"]["train"]}
    assert Variant.of(fake_run("cmcs", 1, 0.5, **full).cfg).key == "cmcs +target_aware"
    no_upper = {**NAMED_VARIANTS["target_aware"]["model"], "counterfactual_share": 0.5}
    assert Variant.of(fake_run("wo_cms", 1, 0.5, **no_upper).cfg).key == "wo_cms +target_aware"
    upper = {**NAMED_VARIANTS["target_aware_mask_upper"]["model"], **NAMED_VARIANTS["target_aware_mask_upper"]["train"]}
    assert Variant.of(fake_run("cmcs", 1, 0.5, **upper).cfg).key == "cmcs +target_aware_mask_upper"
    # one flag short of the variant: every flag named, and a regime of its own
    partial = fake_run("cmcs", 1, 0.5, **{k: v for k, v in full.items() if k != "neumann_eta_rule"}).cfg
    key = Variant.of(partial).key
    assert "+target_aware" not in key and "+gates-on-target" in key and "+dev-counterfactual" in key
    assert Regime.of(partial) != Regime.of(fake_run("cmcs", 1, 0.5, **full).cfg)
    # a flag beyond the variant stays visible beside its name
    more = fake_run("cmcs", 1, 0.5, **full, invariance_weight=2.0).cfg
    assert Variant.of(more).key == "cmcs +target_aware +inv-2"


def test_analyse_playground_groups_scored_runs_by_variant(tmp_path, capsys):
    """`cmcs analyse playground` reads playground_score.json through the run reader: mean ± std over
    seeds per variant, no gates for a method without a learned mask, other runs named as left out."""
    import shutil

    from fake_runs import fake_run

    from cmcs_core.cli import main
    from cmcs_core.report.analyses import playground
    from cmcs_core.runs.formats import write_table
    from cmcs_core.runs.reader import load_run

    def make(name, method, seed, acc, planted):
        run = fake_run(method, seed, acc)
        folder = tmp_path / name
        folder.mkdir()
        run.cfg.save(folder / "config.json")
        (folder / "metrics.json").write_text(json.dumps(run.metrics))
        write_table(folder / "batches.parquet", pd.DataFrame({"epoch": [1, 2], "phi_v": [1.0, 0.5], "phi_t": [1.0, 1.0]}))
        (folder / "playground_score.json").write_text(json.dumps({
            "accuracy": {"all": acc, "spurious_conflicting": acc - 0.1, "image_conflicting": acc - 0.2},
            "text": {"sentiment": 0.8, "spurious": planted, "other_sentiment": 0.1, "other_spurious": 0.0,
                     "target": 0.0, "other": 0.01}, "visual": {"cue": 0.6, "other": 0.5}}))
        return folder

    runs = [make("a", "cmcs", 1, 0.9, 0.2), make("b", "cmcs", 2, 0.7, 0.4), make("c", "text_only", 1, 0.5, 1.0)]
    plain = tmp_path / "plain"
    shutil.copytree(runs[0], plain)
    (plain / "playground_score.json").unlink()
    frame = playground([load_run(p) for p in [*runs, plain]])
    assert frame.attrs["skipped"] == [load_run(plain).name]
    cm = frame[frame.variant.astype(str) == "cmcs"]
    assert cm["gate:spurious"].tolist() == [0.2, 0.4] and cm.phi_ratio.tolist() == [0.5, 0.5]
    assert frame[frame.variant.astype(str) == "text_only"]["gate:spurious"].isna().all()
    main(["analyse", "playground", str(tmp_path)])
    out = capsys.readouterr().out
    cmcs_row = next(line for line in out.splitlines() if line.startswith("| cmcs |"))
    assert "| 2 | 80.0 ± 14.1 | 70.0 ± 14.1 | 60.0 ± 14.1 |" in cmcs_row  # acc; planted word, image cue against label
    assert "30.0 ± 14.1" in cmcs_row  # the planted word's gate
    text_row = next(line for line in out.splitlines() if line.startswith("| text_only |"))
    assert "| 1 | 50.0 |" in text_row and text_row.count("–") >= 6
