"""Synthetic malaria blood-cell images: data, networks, ONNX runtime and metrics."""
