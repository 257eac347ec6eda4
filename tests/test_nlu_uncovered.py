"""The uncovered-questions evaluation set (bench/nlu/uncovered.yml) stays an evaluation set."""
from pathlib import Path

from bench import nlu_uncovered
from ops import settings


def _training_texts():
    from rasa.shared.nlu.training_data.loading import load_data

    files = sorted(settings.NLU_DIR.glob("*.yml")) + [settings.VALIDATION_FILE]
    texts = set()
    for path in files:
        if Path(path).is_file():
            texts |= {m.get("text").lower() for m in load_data(str(path)).intent_examples}
    return texts


def test_set_has_at_least_100_distinct_questions():
    questions = [text for text, _ in nlu_uncovered.load_uncovered()]
    assert len(questions) >= 100
    assert len({q.lower() for q in questions}) == len(questions)


def test_no_question_is_in_the_training_data_or_the_validation_split():
    questions = {text.lower() for text, _ in nlu_uncovered.load_uncovered()}
    assert not questions & _training_texts()
