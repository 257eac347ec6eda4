"""Fixes to Rasa 3.6 internals that cost every turn, applied when `addons` is imported.

Rasa imports this package from endpoints.yml (the tracker store, lock store and event
broker classes) and config.yml, so every Rasa process that serves this bot has them.

- Checking an action server's answer. Rasa validates every custom action's response
  with `jsonschema.validate(result, schema)`, which first checks the schema itself
  against its meta-schema: about 50 ms of CPU per custom action call with jsonschema
  4.17, far more than the call. The schema is Rasa's constant, so it is checked once
  here and every response is validated against the same compiled validator, with the
  same errors (docs/performance.md has the profile).
- Reading a conversation. Every stored event is turned back into its class by
  `Event.resolve_by_type`, which walks the whole tree of Event subclasses (about 30
  classes, with an `inspect.isabstract` each) for every event: about 2 ms of a turn
  whose tracker holds 25 events. The class found for a type name is remembered;
  a name not found yet still takes Rasa's own path (and its error).
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Text

from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import Event

_resolve_by_type = Event.resolve_by_type
_event_classes: Dict[Text, Any] = {}


def _remembering_resolve_by_type(type_name: Text, default: Optional[Any] = None) -> Optional[Any]:
    cls = _event_classes.get(type_name)
    if cls is None:
        cls = _resolve_by_type(type_name, default)
        if cls is not None and cls is not default:
            _event_classes[type_name] = cls
    return cls


@functools.lru_cache(maxsize=1)
def _response_validator() -> Any:
    from jsonschema.validators import validator_for

    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate_action_result(self: RemoteAction, result: Dict[Text, Any]) -> bool:
    from jsonschema import ValidationError

    try:
        _response_validator().validate(result)
        return True
    except ValidationError as e:
        e.message += (
            ". Failed to validate Action server response from API, make sure your "
            "response from the Action endpoint is valid."
        )
        raise e


def apply() -> None:
    RemoteAction._validate_action_result = _validate_action_result
    Event.resolve_by_type = staticmethod(_remembering_resolve_by_type)
