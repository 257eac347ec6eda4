"""Rasa-side extensions loaded by module path from config.yml, endpoints.yml and credentials.yml.

Importing this package changes nothing in Rasa. Each module Rasa loads by its path (the
NLU components in nlu/, the tracker store, lock store, event broker and channels) calls
`prepare_rasa()` as it is imported, so every Rasa process that serves, trains or tests
this bot has the patches of fixes.py and the logs of logs.py, and no other process does.
"""


def prepare_rasa() -> None:
    """Apply the Rasa patches (fixes.py; refused on another Rasa version) and the logs; idempotent."""
    from addons import fixes, logs

    fixes.apply()
    logs.install()
