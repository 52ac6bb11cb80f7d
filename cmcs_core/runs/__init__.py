"""A run folder: how its files are stored (formats), text columns kept by reference to the data
(packed), how a run is described (describe), the one reader of a folder (reader), and the
compaction of folders for committing (compact)."""
