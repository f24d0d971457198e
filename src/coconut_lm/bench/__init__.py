"""Benchmarks: speed and memory of the multi-pass forward, generation and training steps."""
