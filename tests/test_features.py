"""Strings and comments in Python and the C family, for the inspect features."""

import pytest

from charlstm.errors import CharlstmError
from charlstm.inspect.features import builtin_features, language_of, strings_and_comments


def marked(text, language):
    strings, comments = strings_and_comments(text, language)
    pick = lambda mask: "".join(ch for ch, m in zip(text, mask, strict=True) if m)  # noqa: E731
    return pick(strings), pick(comments)


@pytest.mark.parametrize(
    "language, code, strings, comments",
    [
        ("python", "x = \"a#b\"  # it's\ny = '''q\"\nz'''\n", "\"a#b\"'''q\"\nz'''", "# it's"),
        ("c", 'char c = \'"\'; /* "x */ s = "a/*b\\"c"; // d\n', '\'"\'"a/*b\\"c"', '/* "x */// d'),
        ("cpp", 'auto s = "//"; // it\'s "quoted"\n', '"//"', '// it\'s "quoted"'),
        (
            "java",
            "String s = \"a\\\\\"; char q = '\\''; /** doc */\n",
            "\"a\\\\\"'\\''",
            "/** doc */",
        ),
        ("javascript", "let t = `a\n${b}`; // c\nlet u = '/*';\n", "`a\n${b}`'/*'", "// c"),
        ("go", 'r := `raw "x"` // go\n', '`raw "x"`', "// go"),
        ("rust", "fn f<'a>(x: &'a str) -> char { 'x' } // r\n", "'x'", "// r"),
    ],
)
def test_strings_and_comments(language, code, strings, comments):
    assert marked(code, language) == (strings, comments)


def test_a_comment_character_is_in_no_string_and_brackets_skip_both():
    code = 'f(a, "(", b) // (\n'
    features = builtin_features(code, "c")
    assert not (features["comment"] * features["string literal"]).any()
    assert features["bracket depth"][code.index("b")] == 1
    assert features["bracket depth"][code.index("//") + 3] == 0


def test_the_language_comes_from_the_extension_or_the_option(tmp_path):
    from pathlib import Path

    assert language_of(Path("x.rs")) == "rust" and language_of(Path("x.hpp")) == "cpp"
    assert language_of(Path("x.txt")) == "python" and language_of(None) == "python"
    assert language_of(Path("x.py"), "go") == "go"
    with pytest.raises(CharlstmError, match="--language must be one of"):
        language_of(None, "cobol")
