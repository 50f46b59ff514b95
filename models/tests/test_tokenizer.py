from nfcot import tokenizer as tk


def test_round_trip_of_programs_and_traces():
    text = "a = 5\nb = a * 3\nc = b // 2\nd = c % 4\nprint(d)"
    ids = tk.encode(text)
    assert tk.UNK not in ids
    assert tk.decode(ids) == text.replace("print(d)", "print ( d )")
    assert tk.encode("x = -7") == [tk.TOKEN_ID["x"], tk.TOKEN_ID["="], tk.TOKEN_ID["-7"]]


def test_prompt_ids_match_the_template_rendering():
    src = "a = 5\nprint(a)"
    rendered = "<s><|user|>\n" + src + "\n<|assistant|><|latent|><bot>"
    assert tk.prompt_ids(src, "latent") == tk.encode(rendered)
    assert tk.prompt_ids(src, "none")[-1] == tk.MODE_TOKEN["none"]


def test_tokenizer_json_is_word_level_with_specials():
    j = tk.tokenizer_json()
    assert j["model"]["type"] == "WordLevel"
    assert len(j["model"]["vocab"]) == len(tk.VOCAB)
    assert {t["content"] for t in j["added_tokens"]} == set(tk.SPECIALS)
