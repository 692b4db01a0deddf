"""Exporting a trained model: a one-file web page, an ONNX step model."""
