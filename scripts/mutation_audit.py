"""Mutation audit of the training loop's tests: apply each mutation alone to cmcs_core/,
run the tests, print which fail, restore the file. Every mutation must make at least one test fail.

    python scripts/mutation_audit.py                                  # tests/test_core_train_loop.py
    python scripts/mutation_audit.py tests/test_core_train.py tests/test_core_model.py

It edits files in place: run it on a clean tree and do not edit cmcs_core/ meanwhile.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T = "cmcs_core/train/trainer.py"
HG = "cmcs_core/model/hypergrad.py"
MUTATIONS = {
    "M1 select on test acc": (T, '        key = self.cfg.train.select_on\n', '        key = self.cfg.train.select_on\n        row = {**row, key: row["test_acc"]}\n'),
    "M2 select the last epoch": (T, 'if improves(key, row[key], self.best):', 'if True:'),
    "M2b last epoch's model kept (no reload of best)": (T, '        load_trainable_state(self.model, self.paths["best"])\n', ''),
    "M2c last of tied epochs (>=)": (T, 'return value > best[key] if', 'return value >= best[key] if'),
    "M3 eval mode left after upper step": (T, '        self.phi_opt.step()\n        self.model.train()\n', '        self.phi_opt.step()\n'),
    "M3b upper step not in eval mode": (T, '        self.model.eval()\n        enc_grad', '        enc_grad'),
    "M4 hypergradient clip not applied": (T, 'scale = min(1.0, t.hypergrad_clip / (float(norm) + 1e-12))', 'scale = 1.0'),
    "M5 LR scheduler never stepped": (T, '                self.sched.step()\n', ''),
    "M6 sign flipped in the trainer": (T, 'p.grad = (g * scale).detach()', 'p.grad = (-g * scale).detach()'),
    "M6b sign flipped in implicit_hypergradient": (HG, 'return [-(m if m is not None', 'return [(m if m is not None'),
    "M8 TQDM_DISABLE ignored by the library's bars": ("cmcs_core/progress.py", "disable=not show or bars_disabled_by_env()",
                                                      "disable=not show"),
    "M7 num_threads set for good (old code)": (T, '        with torch_threads(n) if n else contextlib.nullcontext():\n            return self._fit()', '        if n:\n            torch.set_num_threads(n)\n        return self._fit()'),
}
tests = sys.argv[1:] or ["tests/test_core_train_loop.py",
                         "tests/test_core_data.py::test_extraction_bars_honour_the_caller_and_tqdm_disable"]
for name, (path, old, new) in MUTATIONS.items():
    f = ROOT / path
    orig = f.read_text()
    if orig.count(old) != 1:
        print(f"{name}: SKIPPED, the code to mutate is not found once in {path} (update this script)")
        continue
    f.write_text(orig.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                           cwd=ROOT, capture_output=True, text=True)
    finally:
        f.write_text(orig)
    failed = sorted(set(re.findall(r"FAILED (\S+?)(?: - |\n|$)", r.stdout)))
    errors = sorted(set(re.findall(r"ERROR (\S+?)(?: - |\n|$)", r.stdout)))
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]
    print(f"{name}: {tail}" + ("" if failed or errors else "   <- NOT CAUGHT"))
    for x in failed + errors:
        print("    ", x)
    sys.stdout.flush()
subprocess.run(["git", "diff", "--stat", "--", "cmcs_core"], cwd=ROOT)  # empty: every file restored
