"""The assistant's core: what the Rasa server, the action server, the operator tooling
and the benchmarks share, with neither Rasa nor rasa-sdk imported (tests/test_core.py).

- bank/: the demo bank's database (schema, repository, handoff queue, demo seed).
"""
