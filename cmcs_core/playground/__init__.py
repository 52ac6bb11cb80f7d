"""Spurious-correlation playground: synthetic TMSC data with known planted shortcuts."""
from cmcs_core.playground.generator import (
    PlaygroundConfig,
    generate_playground,
    measure_spurious_strength,
    read_split,
)

__all__ = ["PlaygroundConfig", "generate_playground", "measure_spurious_strength", "read_split"]
