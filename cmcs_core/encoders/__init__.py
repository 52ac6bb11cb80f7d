"""Frozen text and image encoders; import the submodules (text, visual) directly."""
