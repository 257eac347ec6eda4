"""Rasa-side extensions loaded by module path from config.yml and endpoints.yml."""
from addons import fixes, logs

fixes.apply()
logs.install()
