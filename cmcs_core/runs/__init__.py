"""A run folder: how its files are stored (formats), rows kept by reference (packed), the one
reader of a folder (reader) and the compaction of committed folders (compact)."""
