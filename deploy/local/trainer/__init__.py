"""The local trainer: LoRA-tunes small local models on Gemini SFT JSONL and generates with them.

It is the engine behind the local Vertex-compatible tuning server. Entry points:
``models.resolve_model_dir`` (materialise a local base model), ``api.train`` (train in-process),
``worker`` (train in a separate process, the way the server does it) and
``generate.Generator`` (answer Gemini-format contents with a base model or a checkpoint).
Importing this package does not import torch.
"""

from __future__ import annotations
