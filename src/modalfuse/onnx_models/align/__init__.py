"""Training an image encoder into a frozen text encoder's space (`modalfuse align`).

Export-time code: it needs the `export` extra (torch). The trained tower is exported and
validated by `modalfuse.onnx_models.export` like any other encoder (`--kind image`), and workers
run the result on onnxruntime without torch.
"""
