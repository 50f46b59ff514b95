"""nfcot.rl's pure parts: answer tokens read back from the server, the chosen-update rule."""
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


def test_a_chosen_update_keeps_the_held_modes_at_the_starts_accuracy():
    from nfcot.rl import holds_modes
    start = {"latent_greedy": 0.948, "explicit": 0.988, "none": 0.590}
    # The reported release-2 run: update 75 beat the start in latent but lost 2 of 500 in explicit.
    u75 = {"latent_greedy": 0.964, "explicit": 0.984, "none": 0.600}
    u25 = {"latent_greedy": 0.954, "explicit": 0.988, "none": 0.600}
    assert not holds_modes(u75, start, ["explicit", "none"])
    assert holds_modes(u25, start, ["explicit", "none"])
    assert holds_modes(u75, start, ["none"]) and holds_modes(u75, start, [])
    assert holds_modes(start, start, ["explicit", "none"])
