"""Structured pruning: attention heads and FFN neurons of BERT-family encoders, conv channels of
CNNs, chosen by importance on calibration data, with an optional distillation recovery."""
