"""Fixes to Rasa 3.6.21 internals that cost every turn, applied by `apply()`.

Each module Rasa loads by its path from config.yml, endpoints.yml and credentials.yml
(the NLU components, the tracker store, lock store, event broker and channels) calls
`addons.prepare_rasa()`, which calls `apply()`: every Rasa process that serves this bot
has them, and a process that only imports a helper (ops, bench) does not. `apply()`
is idempotent, and refuses with one line on any Rasa but the one the patches were
written against (RASA_VERSION): they replace private methods whose code they copy.

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
- Matching rules. RulePolicy predicts by filtering every rule it learned against the
  conversation's states, twice per prediction (by text, then by intent), and for
  each rule and state it reads the rule back from its JSON key and compares the
  states dictionary by dictionary: with this bot's ~200 rules about a third of the
  dialogue step. Here each rule key is decoded once, and a rule whose previous action
  or user intent differs from the conversation's is rejected on those two strings
  before Rasa's full comparison runs, which decides every other case as before
  (same predictions: tests/test_fixes.py checks every rule of the trained model).
  The search starts from the rules indexed under the conversation's latest previous
  action and intent (or none), not from all of them.
- Running the model's graph. Rasa runs its predict graph three times a turn (NLU, then
  a policy prediction per action) through dask's local scheduler, whose bookkeeping
  for these short chains of in-process calls costs more than some of the components.
  Here the same nodes are called in dependency order, each once, with the same
  inputs and the same errors (GraphRunError for a RuntimeError, as Rasa does).
  Training graphs still go through dask, which frees intermediate results early.
- BLAS threads. numpy and scipy's OpenBLAS start one worker thread per core, and a
  worker keeps spinning for a while after each small matrix product of a turn: under
  load the Rasa process burnt a second core's worth of CPU (14 ms a turn on a second
  thread, beside 13 ms on the event loop) for no gain in turns/s, taking that core from
  the other Sanic worker, the action server and the generator. BLAS is limited to one
  thread, unless OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS is set
  (then the operator's choice stands). docs/performance.md has the figures.
- Encoding a message. Rasa runs the NLU graph synchronously on its event loop; the
  sentence encoder is its largest single cost. Before the graph runs,
  MessageProcessor.parse_message awaits the `prefetch` of each NLU component that has
  one (addons/nlu/sentence_embeddings.py): the encoding runs on that component's
  worker thread, free of the GIL, while the event loop serves other conversations.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Dict, List, Optional, Text, Tuple

import rasa
from rasa.core.actions.action import RemoteAction
from rasa.core.channels.channel import UserMessage
from rasa.core.processor import MessageProcessor
from rasa.core.policies.rule_policy import RulePolicy
from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.core.constants import PREVIOUS_ACTION, SHOULD_NOT_BE_SET, USER
from rasa.shared.core.events import Event
from rasa.shared.nlu.constants import ACTION_NAME, INTENT

from assistant import config

_resolve_by_type = Event.resolve_by_type
_rasa_is_rule_applicable = RulePolicy._is_rule_applicable
_rasa_get_possible_keys = RulePolicy._get_possible_keys
_dask_run = DaskGraphRunner.run
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


_RuleState = Dict[Text, Dict[Text, Any]]


def _required(state: _RuleState, part: Text, key: Text) -> Optional[Text]:
    """The value a rule state requires for `key` (None: any value passes)."""
    value = state.get(part, {}).get(key)
    return value if isinstance(value, str) and value and value != SHOULD_NOT_BE_SET else None


@functools.lru_cache(maxsize=4096)
def _decoded_rule(rule_key: Text) -> Tuple[List[_RuleState], List[Tuple[Optional[Text], Optional[Text]]]]:
    """A rule's states, latest first, with each state's required previous action and intent."""
    states = list(reversed(json.loads(rule_key)))
    required = [(_required(s, PREVIOUS_ACTION, ACTION_NAME), _required(s, USER, INTENT)) for s in states]
    return states, required


def _is_rule_applicable(self: RulePolicy, rule_key: Text, turn_index: int, conversation_state: _RuleState) -> bool:
    """RulePolicy._is_rule_applicable with the two cheap mismatches checked first."""
    states, required = _decoded_rule(rule_key)
    if turn_index >= len(states):
        return True
    rule_state = states[turn_index]
    rule_previous_action = rule_state.get(PREVIOUS_ACTION)
    current_previous_action = conversation_state.get(PREVIOUS_ACTION)
    if not rule_previous_action and not current_previous_action:
        return True
    if not rule_previous_action or not current_previous_action:
        return False
    action, intent = required[turn_index]
    if action is not None and current_previous_action.get(ACTION_NAME) != action:
        return False
    if intent is not None and conversation_state.get(USER, {}).get(INTENT) != intent:
        return False
    return self._does_rule_match_state(rule_state, conversation_state)


_NO_PREVIOUS_ACTION = ("", "")  # index bucket: rules whose latest state has no previous action
# Rule indexes kept on each policy (they go with it when a hot swap drops the model), by the
# id of the lookup they index; a policy has two lookups, a few more are kept, no more.
_RULE_INDEXES_PER_POLICY = 4


def _rule_index(policy: RulePolicy,
                lookup: Dict[Text, Text]) -> Dict[Tuple[Optional[Text], Optional[Text]], List[Text]]:
    """The lookup's rule keys by the previous action and intent their latest state requires."""
    keys = lookup.keys()
    indexes = policy.__dict__.setdefault("_rule_indexes", {})
    cached = indexes.get(id(lookup))
    if cached is not None and cached[0] == keys:
        return cached[1]
    index: Dict[Tuple[Optional[Text], Optional[Text]], List[Text]] = {}
    for key in keys:
        states, required = _decoded_rule(key)
        bucket = required[0] if states and states[0].get(PREVIOUS_ACTION) else _NO_PREVIOUS_ACTION
        index.setdefault(bucket, []).append(key)
    indexes.pop(id(lookup), None)
    while len(indexes) >= _RULE_INDEXES_PER_POLICY:
        del indexes[next(iter(indexes))]  # the oldest
    indexes[id(lookup)] = (frozenset(keys), index)
    return index


def _get_possible_keys(self: RulePolicy, lookup: Dict[Text, Text], states: List[_RuleState]) -> set:
    """RulePolicy._get_possible_keys, starting from the rules the latest state can match.

    Rasa filters every rule against every state; a rule can only pass the latest state
    if its required previous action and intent are the conversation's or unset, so only
    those buckets of the index are filtered, by the same `_is_rule_applicable`.
    """
    if not states:
        return set(lookup.keys())
    index = _rule_index(self, lookup)
    latest = states[-1]
    previous_action = (latest.get(PREVIOUS_ACTION) or {}).get(ACTION_NAME)
    intent = latest.get(USER, {}).get(INTENT)
    candidates = set(index.get(_NO_PREVIOUS_ACTION, ()))
    for action in {previous_action, None}:
        for user_intent in {intent, None}:
            candidates.update(index.get((action, user_intent), ()))
    possible_keys = candidates
    for i, state in enumerate(reversed(states)):
        possible_keys = {key for key in possible_keys if self._is_rule_applicable(key, i, state)}
    return possible_keys


def _run_graph(self: DaskGraphRunner, inputs: Optional[Dict[Text, Any]] = None,
               targets: Optional[List[Text]] = None) -> Dict[Text, Any]:
    """DaskGraphRunner.run without dask: the needed nodes, in dependency order."""
    run_targets = targets if targets else self._graph_schema.target_names
    schema = self._graph_schema.minimal_graph_schema(run_targets)
    if any(node.fn == "train" for node in schema.nodes.values()):
        return _dask_run(self, inputs, targets)
    graph: Dict[Text, Any] = {
        name: (self._instantiated_nodes[name], *node.needs.values()) for name, node in schema.nodes.items()
    }
    if inputs:
        self._add_inputs_to_graph(inputs, graph)
    done: Dict[Text, Any] = {}

    def result(name: Text) -> Any:
        if name not in done:
            task = graph[name]
            if callable(task[0]):
                node, *needs = task
                # A name that is no node is passed as the string itself, as dask does.
                done[name] = node(*(result(need) if need in graph else need for need in needs))
            else:  # an input: a (name, value) pair, passed on as dask passes it
                done[name] = task
        return done[name]

    try:
        return {target: result(target)[1] for target in run_targets}
    except RuntimeError as e:
        raise GraphRunError("Error running runner.") from e


_parse_message = MessageProcessor.parse_message


def _prefetching(processor: MessageProcessor) -> List[Any]:
    """The processor's NLU components that can encode a message ahead (found once)."""
    found = processor.__dict__.get("_prefetching_components")
    if found is None:
        nodes = getattr(processor.graph_runner, "_instantiated_nodes", {})
        found = [node._component for node in nodes.values() if hasattr(node._component, "prefetch")]
        processor.__dict__["_prefetching_components"] = found
    return found


async def _parse_message_prefetching(self: MessageProcessor, message: UserMessage, *args: Any,
                                     **kwargs: Any) -> Dict[Text, Any]:
    text = message.text
    if not self.http_interpreter and text:  # the graph encodes "/intent" messages too
        for component in _prefetching(self):
            await component.prefetch(text)
    return await _parse_message(self, message, *args, **kwargs)


BLAS_THREAD_VARIABLES = config.BLAS_THREAD_VARIABLES


def limit_blas_threads() -> None:
    """One BLAS thread in this process, unless the environment names a number."""
    if config.blas_threads_set():
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


RASA_VERSION = "3.6.21"
_applied = False


class RasaVersionError(SystemExit):
    """Another Rasa than the patches were written for: the process stops with one line."""


def check_rasa_version(version: Optional[Text] = None) -> None:
    found = version or rasa.__version__
    if found != RASA_VERSION:
        raise RasaVersionError(
            f"addons/fixes.py patches Rasa {RASA_VERSION} internals, but Rasa {found} is installed: "
            f"install rasa=={RASA_VERSION} (requirements/rasa.txt) or review the patches for {found}"
        )


def applied() -> bool:
    return _applied


def apply() -> None:
    """Patch Rasa (once per process), after checking it is the Rasa the patches are for."""
    global _applied
    check_rasa_version()
    if _applied:
        return
    _applied = True
    limit_blas_threads()
    RemoteAction._validate_action_result = _validate_action_result
    Event.resolve_by_type = staticmethod(_remembering_resolve_by_type)
    RulePolicy._is_rule_applicable = _is_rule_applicable
    RulePolicy._get_possible_keys = _get_possible_keys
    DaskGraphRunner.run = _run_graph
    MessageProcessor.parse_message = _parse_message_prefetching

