"""Many runs at once: `cmcs grid` (a cross product of configs, each run a Ray task) and `cmcs search`
(Ray Tune with Optuna's sampler and ASHA, scored on dev only).

spec.py plans runs from a base config without importing Ray; cluster.py starts an embedded Ray or
joins a cluster; grid.py and search.py drive them. Ray is imported only when something runs.
"""
