"""Structured pruning: attention heads and FFN neurons of transformer encoders whose layers follow
the BERT pattern (found from their modules), conv channels of CNNs, chosen by importance on
calibration data, with an optional distillation recovery."""
