"""A local, Vertex AI-compatible tuning server that trains for real.

google-genai reaches it through ``HttpOptions(base_url=...)``, so sftpilot's
:class:`shared.adapters.vertex.VertexTuningBackend` cannot tell it from Vertex AI. It serves
tuningJobs create/get/list/cancel, generateContent on endpoints, tuned models and base models,
endpoint undeploy/delete and model get/delete; training runs LoRA supervised fine-tuning of a
small local model (SmolLM2-135M-Instruct by default) in a worker process per job.

Run it with ``python -m deploy.local.tuning_server --port 8090 --state-dir DIR``; see
:mod:`.app` for the routes and :mod:`.runner` for job states and the restart policy.
"""
