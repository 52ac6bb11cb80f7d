"""CMCS: cross-modal causal scheduling for target-oriented multimodal sentiment classification."""
