"""Prompt styles for answering multiple-choice questions.

An *expert* is a (model, prompt style, answer mode) triple. The styles are deliberately few;
variants of one model under different styles are labelled as variants in every output.

  chat          the model's own chat template; one user turn (paper style, docs/METHOD.md §5.1)
  plain         a completion prompt "Question: ...\nA. ...\nAnswer:" (base models)
  fewshot       `plain` preceded by two worked examples written for rgd (not benchmark items)

Answer modes:
  letter  score the option letters at the next token (one forward pass)
  cot     generate reasoning that ends with "The answer is (X)" (the paper's mode)
"""

from __future__ import annotations

from .records import LETTERS, Question

STYLES = ("chat", "plain", "fewshot")
MODES = ("letter", "cot")

COT_INSTRUCTION = (
    "Think through the problem step by step, then finish with a final line of the form "
    '"The answer is (X)", where X is the letter of the correct option.'
)
LETTER_INSTRUCTION = "Reply with the letter of the correct option only."

# Two neutral worked examples, written for rgd; they are not drawn from any benchmark.
_EXAMPLES = (
    (
        "Which gas do green plants take in from the air to build sugars?",
        ("Oxygen", "Carbon dioxide", "Nitrogen", "Helium"),
        "B",
    ),
    (
        "A train travels 120 km in 2 hours at a constant speed. What is its speed?",
        ("40 km/h", "240 km/h", "60 km/h", "30 km/h"),
        "C",
    ),
)


def options_block(options: tuple[str, ...] | list[str], paren: bool = False) -> str:
    fmt = "({}) {}" if paren else "{}. {}"
    return "\n".join(fmt.format(LETTERS[i], o) for i, o in enumerate(options))


def _plain(question: str, options, answer: str | None = None) -> str:
    tail = f" {answer}" if answer else ""
    return f"Question: {question.strip()}\n{options_block(options)}\nAnswer:{tail}"


def build_prompt(q: Question, style: str, mode: str) -> dict:
    """Return {"messages": [...]} for chat styles or {"text": str} for completion styles."""
    if style not in STYLES or mode not in MODES:
        raise ValueError(f"unknown prompt style/mode {style!r}/{mode!r}")
    if style == "chat":
        instruction = LETTER_INSTRUCTION if mode == "letter" else COT_INSTRUCTION
        user = f"{q.question.strip()}\n\nChoices:\n{options_block(q.options, paren=True)}\n\n{instruction}"
        msgs = [{"role": "user", "content": user}]
        # letter mode: prefill the assistant turn so the very next token is the letter
        return {"messages": msgs, "assistant_prefix": "The answer is (" if mode == "letter" else ""}
    shots = ""
    if style == "fewshot":
        shots = "\n\n".join(_plain(t, o, a) for t, o, a in _EXAMPLES) + "\n\n"
    text = shots + _plain(q.question, q.options)
    if mode == "cot":
        text = f"{COT_INSTRUCTION}\n\n{text} Let's think step by step."
    return {"text": text}
