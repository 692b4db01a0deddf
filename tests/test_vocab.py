import numpy as np
import pytest

from charlstm.data.vocab import Vocab, id_dtype
from charlstm.errors import VocabError

TEXT = "héllo wörld — 你好 🙂\n"


def test_char_round_trip_with_unicode():
    vocab = Vocab.from_code_points(ord(c) for c in TEXT)
    assert vocab.size == len(set(TEXT))
    ids = vocab.encode(TEXT)
    assert ids.dtype == np.uint8
    assert vocab.decode(ids) == TEXT
    assert Vocab.from_dict(vocab.to_dict()) == vocab


def test_byte_mode_reads_and_streams_multibyte_characters_whole():
    vocab = Vocab.bytes()
    ids = vocab.encode(TEXT)
    assert len(ids) == len(TEXT.encode("utf-8"))
    decoder = vocab.stream_decoder()
    pieces = [decoder.feed(int(i)) for i in ids]
    assert "".join(pieces) == TEXT
    # the bytes of 🙂 produce nothing until the last one, then the whole character
    assert "🙂" in pieces and "" in pieces


def test_unknown_characters_are_named_or_skipped_never_remapped():
    vocab = Vocab.from_code_points(ord(c) for c in "abc")
    with pytest.raises(
        VocabError, match=r"2 character\(s\) not in the model's vocabulary: 'x', 'z'"
    ):
        vocab.encode("abxcz")
    assert vocab.decode(vocab.encode("abxcz", unknown="skip")) == "abc"
    assert vocab.id_of("z") is None and vocab.id_of("b") == 1


@pytest.mark.parametrize(
    "size, dtype", [(2, np.uint8), (256, np.uint8), (257, np.int16), (40000, np.int32)]
)
def test_smallest_id_type(size, dtype):
    assert id_dtype(size) == dtype
