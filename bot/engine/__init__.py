"""The engine: model loading and quantization, batch sampling, the serving thread, the no-repeat guard,
and the tiny offline model."""
