"""The one `.env` parser (rgd.secrets.parse_env_text): what a step reads as a key is exactly what
the archive's secret scan searches for."""

from __future__ import annotations

import pytest

from rgd import archive as A
from rgd.io import InputError
from rgd.secrets import parse_env_file, parse_env_text, read_key


@pytest.mark.parametrize(
    "line, value",
    [
        # quotes
        ('A="abcdefghijkl"', "abcdefghijkl"),
        ("A='abcdefghijkl'", "abcdefghijkl"),
        ('A="has # hash"', "has # hash"),
        ("A='has # hash'", "has # hash"),
        ('A="say \\"hi\\" \\\\o/"', 'say "hi" \\o/'),
        ("A='no \\\" escapes'", 'no \\" escapes'),
        ('A=it\'s"fine"', 'it\'s"fine"'),  # quotes inside an unquoted value are kept
        # inline comments
        ('A="abcdefghijkl" # note', "abcdefghijkl"),
        ("A='abcdefghijkl'   # note", "abcdefghijkl"),
        ('A="abcdefghijkl"# note', "abcdefghijkl"),
        ("A=abcdefghijkl # note", "abcdefghijkl"),
        ("A=abc#def", "abc#def"),  # a # inside a word is part of the value
        ("A= # only a comment", ""),
        # export
        ("export A=abcdefghijkl", "abcdefghijkl"),
        ("export   A = 'abcdefghijkl'", "abcdefghijkl"),
        ("\texport A=x", "x"),
        # spaces around =
        ("A = abcdefghijkl", "abcdefghijkl"),
        ("  A   =   abcdefghijkl   ", "abcdefghijkl"),
        ("A=  two words  ", "two words"),
        # empty values
        ("A=", ""),
        ('A=""', ""),
        ("A=''", ""),
        ("A=   ", ""),
    ],
)
def test_one_line(line, value):
    assert parse_env_text(line + "\n") == {"A": value}


@pytest.mark.parametrize(
    "line",
    [
        "# A=commented out",
        "   # A=indented comment",
        "",
        "   ",
        "A",  # no =
        "1A=x",  # not a variable name
        "A-B=x",
        'A="unclosed',
        "A='unclosed",
        'A="x" trailing text',  # text after a closing quote: not a value we can be sure of
        "exportA B=x",
    ],
)
def test_lines_that_are_not_assignments_are_skipped(line):
    assert parse_env_text(line + "\n") == {}


def test_a_whole_file():
    text = "\n".join(
        [
            "# keys for the API generators",
            'GEMINI_API_KEY="AIzaFAKEFAKEFAKE" # personal',
            "",
            "export OPENAI_API_KEY = 'sk-fake # not a comment'",
            "EMPTY=",
            "OTHER=plain value # why",
            "OTHER=second wins",
        ]
    )
    assert parse_env_text(text) == {
        "GEMINI_API_KEY": "AIzaFAKEFAKEFAKE",
        "OPENAI_API_KEY": "sk-fake # not a comment",
        "EMPTY": "",
        "OTHER": "second wins",
    }


def test_the_steps_and_the_archive_read_the_same_value(tmp_path, monkeypatch):
    """The case that drifted apart: a quoted value followed by a comment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MY_API_KEY", raising=False)
    env = tmp_path / ".env"
    env.write_text('MY_API_KEY="abcdefghijkl" # note\n')
    assert read_key("MY_API_KEY").value == "abcdefghijkl"
    assert A.secret_values([env], environ={}) == [b"abcdefghijkl"]
    leak = tmp_path / "leak.txt"
    leak.write_text("line one\nthe key is abcdefghijkl\n")
    with pytest.raises(A.ArchiveError, match=r"leak.txt:2: looks like the value of a secret"):
        A.SecretScanner(A.secret_values([env], environ={})).scan(leak)


def test_short_values_are_not_searched_for(tmp_path):
    env = tmp_path / ".env"
    env.write_text("DEBUG=true\nMODE=''\nKEY=abcdefghijkl\n")
    assert A.secret_values([env], environ={}) == [b"abcdefghijkl"]


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    env = tmp_path / ".env"
    env.write_bytes(b"A=\xff\xfe\n")
    with pytest.raises(InputError, match=r"\.env: not UTF-8 \(byte 2\)"):
        parse_env_file(env)
    with pytest.raises(A.ArchiveError, match=r"\.env: not UTF-8 .*cannot keep its values out of the archive"):
        A.secret_values([env], environ={})
