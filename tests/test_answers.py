import pytest

from rgd.answers import extract_choice

OPTS = ["0.5", "3/4", "1", "2"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is (A). Wait, no. The answer is (C).", "C"),  # last statement wins
        ("so the answer is: D", "D"),
        ("Therefore \\boxed{B}", "B"),
        ("I pick (B) over (A), finally (D)", "D"),
        ("The answer is 0.75.", "B"),  # a value, matched to the option it equals
        ("The answer is \\frac{1}{2}", "A"),
    ],
)
def test_extracts(text, expected):
    assert extract_choice(text, OPTS) == (expected, None)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty output"),
        (None, "empty output"),
        ("I think it is E.", "no option letter"),
        ("The answer is (E)", "no option letter"),
    ],
)
def test_abstains_with_reason(text, reason):
    choice, why = extract_choice(text, OPTS)
    assert choice is None and reason in why
