"""Many runs at once: `cmcs grid` (a cross product of configs, each run a Ray task) and `cmcs search`
(Ray Tune with Optuna's sampler and ASHA, scored on dev only).

commands.py holds the two subcommands; spec.py plans runs from a base config without importing Ray;
cluster.py starts an embedded Ray or joins a cluster; grid.py and search.py drive them (progress_line.py
reports, transfer.py moves run folders between workers and the driver). Ray is imported only when
something runs.
"""
