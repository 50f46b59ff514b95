from nfcot.serve_eval import compare


def test_compare_table():
    by = lambda x: {"2": {"none": x, "explicit": 1.0, "latent_greedy": x, "latent_sampled": x}}
    b = {"none": 0.5, "explicit": 0.99, "latent_greedy": 0.9, "latent_sampled": 0.8, "by_statements": by(0.25)}
    a = {"none": 0.5, "explicit": 0.99, "latent_greedy": 0.95, "latent_sampled": 0.85, "by_statements": by(0.5)}
    t = compare(b, a).splitlines()
    assert t[0] == "| | all | 2 statements |"
    assert t[4] == "| latent, T_z = 0 | 0.900 -> 0.950 | 0.250 -> 0.500 |"
    assert len(t) == 6
