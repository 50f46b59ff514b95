"""The trainer reads a choice's answer tokens back from the server's logprobs strings."""
import pytest

from nfcot import tokenizer as tk
from nfcot.rl import LogProbMismatch, answer_ids


def test_words_after_the_first_carry_the_decoders_space():
    # What the server returns for the content "7 -19": each token's part of the text.
    toks = [{"token": "7", "logprob": -0.1}, {"token": " -19", "logprob": -2.3}]
    assert answer_ids(toks) == [tk.TOKEN_ID["7"], tk.TOKEN_ID["-19"]]
    assert tk.decode(answer_ids(toks)) == "7 -19"


def test_a_string_outside_the_vocabulary_stops_the_run():
    with pytest.raises(LogProbMismatch, match="'  7'"):
        answer_ids([{"token": "  7", "logprob": -1.0}])
    with pytest.raises(LogProbMismatch, match="'seven'"):
        answer_ids([{"token": "seven", "logprob": -1.0}])
