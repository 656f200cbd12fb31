"""Compiling ONNX to TVM shared libraries: fixed-shape import, target, build (with optional tuning)."""
