"""Warnings said as lines: one "Warning: ..." line each, when it happens."""

import warnings

from perceptreg.core.errors import warnings_as_lines


def test_a_warning_is_said_when_it_happens_not_when_the_block_ends():
    said = []
    with warnings_as_lines(said.append):
        warnings.warn("the data has no test split: 40000 / 10000 taken", UserWarning)
        assert said == ["Warning: the data has no test split: 40000 / 10000 taken"]  # before the work it shapes
        warnings.warn("the decoder has collapsed", RuntimeWarning)
        warnings.warn("the decoder has collapsed", RuntimeWarning)  # said each time: each is an epoch's
    assert said[1:] == ["Warning: the decoder has collapsed"] * 2


def test_warnings_are_python_s_again_after_the_block():
    with warnings_as_lines(lambda line: None):
        pass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("after", UserWarning)
    assert [str(w.message) for w in caught] == ["after"]
