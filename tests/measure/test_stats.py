import math

import pytest

from harness.stats import difference_is_noise, percentile, summarize


def test_summarize_known_values():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["median"] == 2.5 and s["mean"] == 2.5
    assert s["min"] == 1.0 and s["max"] == 4.0
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))
    assert s["cv"] == pytest.approx(math.sqrt(5 / 3) / 2.5)


def test_summarize_single_and_empty_and_none():
    assert summarize([3.0]) == {"n": 1, "median": 3.0, "mean": 3.0, "min": 3.0, "max": 3.0, "std": 0.0, "cv": 0.0}
    assert summarize([])["n"] == 0 and summarize([None, float("nan")])["median"] is None
    assert summarize([None, 1.0, 3.0])["median"] == 2.0


def test_percentile_linear():
    assert percentile([1, 2, 3, 4, 5], 10) == pytest.approx(1.4)
    assert percentile([1, 2, 3, 4, 5], 90) == pytest.approx(4.6)
    assert percentile([7], 90) == 7


def test_difference_is_noise():
    # medians 10 vs 10.5, spread max(2, 1) = 2 -> noise
    assert difference_is_noise([9, 10, 11], [10, 10.5, 11])
    # medians 10 vs 20, spread 2 -> real
    assert not difference_is_noise([9, 10, 11], [19, 20, 21])
    # a single value on either side is never noise
    assert not difference_is_noise([10.0], [10.0, 10.1])
    assert not difference_is_noise([], [1.0, 2.0])
    # identical constant repeats: zero difference is noise
    assert difference_is_noise([5, 5], [5, 5])
