"""The generated NLU data: a fixed, stratified split with no leakage."""
from collections import Counter

from ops import data, settings


def test_split_is_stratified_seeded_and_disjoint():
    banking = data.read_banking77(settings.SHARED_DATA_DIR / "banking77" / "train.csv")
    train, validation = data.stratified_split(banking, 0.10, data.SEED)
    again_train, again_validation = data.stratified_split(banking, 0.10, data.SEED)
    assert (train, validation) == (again_train, again_validation)
    assert len(train) == len(validation) == 77
    for intent, texts in banking.items():
        assert len(validation[intent]) == round(len(texts) * 0.10)
        assert not set(train[intent]) & set(validation[intent])
        assert sorted(train[intent] + validation[intent]) == sorted(texts)


def test_no_text_is_labelled_twice():
    banking = data.read_banking77(settings.SHARED_DATA_DIR / "banking77" / "train.csv")
    counts = Counter(text for texts in banking.values() for text in texts)
    assert max(counts.values()) == 1
    assert sum(counts.values()) > 9900


def test_yaml_round_trips_through_rasa(tmp_path):
    from rasa.shared.nlu.training_data.loading import load_data

    examples = {"card_arrival": ["where is my card?", "it's been 2 weeks: no card"], "greet": ["hi"]}
    path = tmp_path / "nlu.yml"
    path.write_text(data.to_nlu_yaml(examples, "test"))
    loaded = load_data(str(path))
    assert sorted((m.get("intent"), m.get("text")) for m in loaded.intent_examples) == sorted(
        (intent, text) for intent, texts in examples.items() for text in texts
    )
