"""OpenAI-compatible generator service: chat completions and embeddings on CPU.

Run it with ``python -m generator``; convert the chat model ahead of time with
``python -m generator.convert``. Importing this package is cheap on purpose.
"""
