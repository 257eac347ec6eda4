"""Rasa-side extensions loaded by module path from config.yml and endpoints.yml."""
from addons import fixes

fixes.apply()
