"""The final list's blend weight (twostage.blend) is chosen on validation data only."""

import pytest

from twostage.data import SplitConfig, split


@pytest.mark.slow
def test_blend_weight_is_chosen_on_validation_only(monkeypatch, tmp_path, small_data):
    """The weight must never see the test part: the evaluator its candidates come with (built by
    the retrieval trainer) is checked."""
    from conftest import small_pipeline_config
    from twostage import pipeline
    from twostage.data import HeldOutEvaluator
    from twostage import blend
    from twostage.retrieval import train as retrieval_train

    test_pairs = split(small_data.ratings, SplitConfig())[1].pairs()
    seen = []

    class Spy(HeldOutEvaluator):
        def __init__(self, catalog_ids, train, test, *sample):
            assert not (test.pairs() & test_pairs), "the blend was scored on test ratings"
            assert not (train.pairs() & test_pairs)
            seen.append(len(test))
            super().__init__(catalog_ids, train, test, *sample)

    monkeypatch.setattr(retrieval_train, "HeldOutEvaluator", Spy)
    result = pipeline.train(small_pipeline_config(index="brute-force", epochs=2), str(tmp_path))
    record = result.metadata["blend"]
    assert seen and record["chosen"] in blend.BLEND_WEIGHTS
    # Served on the served scores' spread (the partner's sum, the whole history pooled).
    assert record["score_spread"] > 0
    assert record["weight"] == pytest.approx(record["chosen"] * record["score_spread"])
