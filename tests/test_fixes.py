"""addons/fixes.py changes how Rasa computes three things per turn, never the result.

The patches are applied when Rasa loads a module of ours by its path (addons/__init__.py):
this file imports the tracker store module as Rasa does. tests/test_rasa_patches.py checks
that nothing else applies them and that another Rasa version is refused."""
from __future__ import annotations

import itertools
import json
import tarfile
from typing import Any, Dict, List

import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.core.policies.rule_policy import RulePolicy
from rasa.shared.core.constants import SHOULD_NOT_BE_SET
from rasa.shared.core.events import ActionExecuted, Event, SessionStarted, SlotSet, UserUttered

import addons.tracker_store  # noqa: F401  (as Rasa loads it: applies the patches)
from addons import fixes


def _trained_rules(model) -> Dict[str, Dict[str, str]]:
    with tarfile.open(model) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("rule_policy.json"))
        return json.load(archive.extractfile(member))["lookup"]


def _variants(state: Dict[str, Dict[str, Any]]) -> List[Dict[str, Dict[str, Any]]]:
    """The state, and the state with each value unset or replaced by another rule's."""
    out = [state]
    for part, values in state.items():
        for key in values:
            without = {p: {k: v for k, v in vs.items() if (p, k) != (part, key)} for p, vs in state.items()}
            out.append({p: vs for p, vs in without.items() if vs})
            out.append({**state, part: {**values, key: "something_else"}})
    return out


def test_rule_matching_decides_every_trained_rule_as_rasa_does(trained_model):
    lookup = _trained_rules(trained_model)
    keys = set(lookup["rules"]) | set(lookup["rules_for_loop_unhappy_path"])
    rule_states = [state for key in keys for state in json.loads(key)]
    conversation_states = [{}] + [v for state in rule_states for v in _variants(state)]
    # De-duplicate (states are dicts of dicts) and keep the list small enough to run in seconds.
    unique = {json.dumps(s, sort_keys=True): s for s in conversation_states}
    conversation_states = [json.loads(text) for text in unique]
    assert any(SHOULD_NOT_BE_SET in json.dumps(s) for s in rule_states), "no negative rule conditions to check"

    policy = RulePolicy.__new__(RulePolicy)  # the matching methods use no instance state
    outcomes = set()
    for key, state in itertools.product(sorted(keys), conversation_states):
        for turn in range(len(json.loads(key)) + 1):
            fast = fixes._is_rule_applicable(policy, key, turn, state)
            assert fast == fixes._rasa_is_rule_applicable(policy, key, turn, state), (key, turn, state)
            outcomes.add(fast)
    assert outcomes == {True, False}
    assert RulePolicy._is_rule_applicable is fixes._is_rule_applicable  # applied when Rasa loads addons' modules


def test_possible_rules_are_found_as_rasa_finds_them(trained_model):
    """The indexed search gives Rasa's set of matching rules for conversations made of
    the rules' own states: each rule, its latest state varied, after other rules."""
    lookup = _trained_rules(trained_model)
    policy = RulePolicy.__new__(RulePolicy)
    found = 0
    for name in ("rules", "rules_for_loop_unhappy_path"):
        rules = lookup[name]
        keys = sorted(rules)
        conversations = [[]]
        for n, key in enumerate(keys):
            states = json.loads(key)
            before = json.loads(keys[(n * 7) % len(keys)])
            conversations += [states[:-1] + [latest] for latest in _variants(states[-1])]
            conversations.append(before + states)
        for states in conversations:
            fast = fixes._get_possible_keys(policy, rules, states)
            assert fast == fixes._rasa_get_possible_keys(policy, rules, states), states
            found += bool(fast)
    assert found > 100
    assert RulePolicy._get_possible_keys is fixes._get_possible_keys


@pytest.mark.parametrize(
    "response",
    [
        {"events": [{"event": "slot", "name": "x", "value": 1}], "responses": [{"text": "hi"}]},
        {"events": [], "responses": []},
    ],
)
def test_a_valid_action_response_passes(response):
    assert fixes._validate_action_result(RemoteAction("action_x", None), response) is True


def test_an_invalid_action_response_fails_with_rasas_message():
    with pytest.raises(ValidationError, match="Failed to validate Action server response"):
        fixes._validate_action_result(RemoteAction("action_x", None), {"events": [{"no_event_key": 1}]})


def test_event_classes_are_resolved_as_rasa_does():
    for event in (UserUttered("hi"), ActionExecuted("action_listen"), SlotSet("x", 1), SessionStarted()):
        assert Event.resolve_by_type(event.type_name) is type(event)
        assert fixes._resolve_by_type(event.type_name) is type(event)
    assert Event.resolve_by_type("no such event", default=UserUttered) is UserUttered
    assert Event.resolve_by_type("no such event", default=UserUttered) is UserUttered  # not remembered
    with pytest.raises(ValueError, match="Unknown event name"):
        Event.resolve_by_type("no such event")


@pytest.fixture(scope="module")
def action_endpoint(tmp_path_factory):
    """The real action server (a new conversation starts with its action_session_start)."""
    from ops import stack

    port = stack.free_port()
    actions = stack.actions_service(
        port, tmp_path_factory.mktemp("actions"),
        env={"GENERATOR_URL": "http://127.0.0.1:9/v1", "GENERATOR_START_CHECK": "0"},  # no generator: none needed
    )
    with stack.running([actions]):
        yield f"http://127.0.0.1:{port}/webhook"


def test_the_predict_graph_gives_what_dask_gives(trained_model, action_endpoint):
    """The trained model's NLU and policy graph, run by the dependency-order runner and by dask."""
    import asyncio

    from rasa.core.agent import Agent
    from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
    from rasa.engine.runner.dask import DaskGraphRunner
    from rasa.utils.endpoints import EndpointConfig

    async def conversation(runner) -> List[Dict[str, Any]]:
        DaskGraphRunner.run = runner
        try:
            agent = Agent.load(str(trained_model), action_endpoint=EndpointConfig(action_endpoint))
            for text in ("my card still hasn't arrived", "what's the fee for a top-up by card?", "hello"):
                await agent.handle_message(UserMessage(text, CollectingOutputChannel(), sender_id="graph"))
            tracker = await agent.tracker_store.retrieve("graph")
            events = [e.as_dict() for e in tracker.events]
            return [e for e in events if e["event"] in ("user", "action", "bot")]
        finally:
            DaskGraphRunner.run = fixes._run_graph

    fast = asyncio.run(conversation(fixes._run_graph))
    with_dask = asyncio.run(conversation(fixes._dask_run))

    def strip(events):  # what differs between two runs of the same conversation
        out = []
        for event in events:
            if event["event"] == "bot":  # responses with variations: the text is picked at random
                event = {"event": "bot", "utter_action": event.get("metadata", {}).get("utter_action")}
            event = {k: v for k, v in event.items() if k not in ("timestamp", "metadata", "message_id")}
            if "parse_data" in event:
                event["parse_data"] = {k: v for k, v in event["parse_data"].items() if k != "message_id"}
            out.append(event)
        return out

    assert strip(fast) == strip(with_dask)
    assert [e["parse_data"]["intent"]["name"] for e in fast if e["event"] == "user"][:2] == [
        "card_arrival", "top_up_by_card_charge"]
    assert [e.get("name") for e in fast if e["event"] == "action"] == [
        "action_session_start", "action_listen", "action_llm_reply", "action_listen",
        "action_llm_reply", "action_listen", "utter_greet", "action_listen"]


def test_the_message_is_encoded_off_the_event_loop_with_the_same_parse(trained_model):
    """parse_message awaits the sentence encoder's prefetch on its worker thread; the
    NLU graph then takes that vector, and the parse is the one without the prefetch."""
    import asyncio
    import threading

    from rasa.core.agent import Agent
    from rasa.core.channels.channel import UserMessage

    from addons.nlu.sentence_embeddings import SentenceEmbeddingFeaturizer

    async def parses():
        agent = Agent.load(str(trained_model))
        (featurizer,) = [c for c in fixes._prefetching(agent.processor) if isinstance(c, SentenceEmbeddingFeaturizer)]
        threads = []
        encode = featurizer.encoder.encode

        def recording(*args, **kwargs):
            threads.append(threading.get_ident())
            return encode(*args, **kwargs)

        featurizer.encoder.encode = recording
        texts = ["my card still hasn't arrived", "what's the fee for a top-up by card?", "/greet"]
        prefetched = [await agent.processor.parse_message(UserMessage(t, sender_id="p")) for t in texts]
        on_worker = list(threads)
        threads.clear()
        inline = [await fixes._parse_message(agent.processor, UserMessage(t, sender_id="p")) for t in texts]
        return prefetched, on_worker, inline, list(threads), featurizer

    prefetched, on_worker, inline, on_loop, featurizer = asyncio.run(parses())
    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    assert len(on_worker) == 3 and loop_thread not in on_worker
    assert len(on_loop) == 3 and set(on_loop) == {loop_thread}
    assert not featurizer._ready  # every prefetched vector was used
    for a, b in zip(prefetched, inline):
        assert a["intent"]["name"] == b["intent"]["name"]
        assert a["intent"]["confidence"] == pytest.approx(b["intent"]["confidence"], abs=1e-9)
    assert [p["intent"]["name"] for p in prefetched] == ["card_arrival", "top_up_by_card_charge", "greet"]


_BLAS_THREADS = (
    "import json, threadpoolctl; import addons.tracker_store; "
    "print(json.dumps([i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas']))"
)


@pytest.mark.parametrize("env, expected", [({}, 1), ({"OPENBLAS_NUM_THREADS": "2"}, 2)])
def test_rasa_loading_addons_leaves_one_blas_thread_unless_the_environment_says(env, expected):
    """A fresh process on a 2-core machine starts 2 OpenBLAS threads (numpy's and scipy's)."""
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in fixes.BLAS_THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-c", _BLAS_THREADS], env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout
    threads = json.loads(out.strip().splitlines()[-1])
    assert threads and set(threads) == {expected}
