"""IMDb task: the three corpus layouts, Omnigrok's text pipeline, the matmul LSTM, a tiny grid."""
import json

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from landscape import cli
from landscape.data import imdb
from landscape.data.imdb import load_reviews, official_split, omnigrok_split, stratified_split
from landscape.data.text import encode, ragged, vocabulary, words
from landscape.errors import UserError
from landscape.models import LSTM, SentimentLSTM
from landscape.tasks import make_task
from tests.imdb_files import Review, synthetic_reviews, write_all_layouts, write_aclimdb, write_npz


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Review], list[Review]]:
    reviews = synthetic_reviews(60, seed=1, mean_words=25, neutral=300, sentiment=20)
    reviews[3] = Review("Don't WATCH it:<br />awful, 2/10...", 0, 2)  # apostrophe, tag, digits
    return reviews[:30], reviews[30:]


@pytest.fixture
def layouts(tmp_path, corpus):
    return write_all_layouts(tmp_path, *corpus)


def same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("train_x", "train_y", "test_x", "test_y"))


def test_words_follow_omnigrok_cleaning():
    assert words("Don't WATCH it:<br />awful, 2/10... the_end<BR>x9y") == ["dont", "watch", "awful", "the_end", "xy"]


def test_vocabulary_by_count_then_first_appearance_and_left_padding():
    train = ragged([[5, 3, 3], [7, 5, 9], [9]])  # counts: 3 -> 2, 5 -> 2, 9 -> 2, 7 -> 1; 5 appears first
    table = vocabulary(train, size=3, id_space=10)
    assert [table[i] for i in (5, 3, 9, 7)] == [1, 2, 3, 0]
    out = encode(ragged([[3, 7, 5, 9, 3], [], [9, 9]]), table, length=3)
    assert out.tolist() == [[2, 1, 3], [0, 0, 0], [0, 3, 3]]  # OOV dropped, first 3 kept, zeros on the left


def test_stratified_split_sizes_and_proportions():
    labels = np.array([0] * 30 + [1] * 10)
    train, test = stratified_split(labels, 0.25, seed=0)
    assert len(test) == 10 and len(train) == 30 and not set(train) & set(test)
    assert np.bincount(labels[test]).tolist() == [8, 2]  # 7.5 and 2.5 -> the larger remainder first
    assert np.array_equal(stratified_split(labels, 0.25, 0)[1], test)
    assert not np.array_equal(stratified_split(labels, 0.25, 1)[1], test)


@pytest.mark.parametrize("n", [4, 23, 60])
def test_three_layouts_give_the_same_tokens_and_labels(layouts, n):
    reviews = {kind: load_reviews(str(path)) for kind, path in layouts.items()}
    assert {k: r.source.split()[0] for k, r in reviews.items()} == {"aclimdb": "aclImdb", "npz": "Keras", "csv": "Kaggle"}
    encoded = {k: omnigrok_split(r, n, seed=0, vocab=40, length=30) for k, r in reviews.items()}
    assert same(encoded["aclimdb"], encoded["npz"]) and same(encoded["aclimdb"], encoded["csv"])
    e = encoded["csv"]
    assert e.train_x.shape == (n - int(np.ceil(n / 4)), 30) and e.test_x.shape == (int(np.ceil(n / 4)), 30)
    assert e.train_x.max() <= 40 and (e.train_x > 0).any()
    official = [official_split(reviews[k], 20, vocab=40, length=30) for k in ("aclimdb", "npz")]
    assert same(*official) and official[0].test_x.shape == (30, 30)


def test_pool_interleaves_the_classes(layouts):
    labels = load_reviews(str(layouts["aclimdb"])).labels
    assert 0 < labels[:10].sum() < 10  # the folders are sorted by class; the pool is shuffled


def test_npz_without_word_index_uses_ranks_and_keeps_stop_words(tmp_path, corpus):
    rank_of = json.loads((write_npz(tmp_path / "a", *corpus).with_name(imdb.WORD_INDEX)).read_text())
    path = write_npz(tmp_path / "b", *corpus, word_index=False)
    reviews = load_reviews(str(path))  # a direct file path works too
    assert "stop words kept" in reviews.source
    assert rank_of["the"] in reviews.rows.ids  # a rank is a word of its own: "the" stays
    enc = omnigrok_split(reviews, 60, seed=0, vocab=1000, length=400)
    kept = np.unique(enc.train_x[enc.train_x > 0])
    assert len(kept) == len(np.unique(reviews.rows.take(stratified_split(reviews.labels, 0.25, 0)[0]).ids))


def test_cache_is_reused_and_invalidated(layouts, monkeypatch):
    csv = layouts["csv"] / imdb.CSV_NAME
    first = load_reviews(str(csv))

    def boom(path):
        raise AssertionError("re-tokenized although the file is unchanged")

    monkeypatch.setitem(imdb._READERS, "csv", boom)
    assert np.array_equal(load_reviews(str(csv)).rows.ids, first.rows.ids)
    csv.write_text(csv.read_text() + '"one more review, great",positive\n')
    with pytest.raises(AssertionError, match="re-tokenized"):
        load_reviews(str(csv))


@pytest.mark.parametrize("data_dir", [None, "empty"])
def test_missing_data_names_the_three_layouts(tmp_path, data_dir):
    if data_dir:
        (tmp_path / data_dir).mkdir()
    with pytest.raises(UserError) as e:
        make_task("imdb", {}, str(tmp_path / data_dir) if data_dir else None)
    message = str(e.value)
    assert "\n" not in message and "--data-dir" in message and "LANDSCAPE_DATA" in message
    assert all(name in message for name in ("aclImdb", "imdb.npz", "IMDB Dataset.csv"))


def _bad_header(d):
    (d / imdb.CSV_NAME).write_text("text,label\nfine,positive\n")
    return d / imdb.CSV_NAME


def _bad_label(d):
    (d / imdb.CSV_NAME).write_text("review,sentiment\ngood,positive\nmeh,neutral\n")
    return d / imdb.CSV_NAME


def _empty_csv(d):
    (d / imdb.CSV_NAME).write_text("review,sentiment\n")
    return d / imdb.CSV_NAME


def _missing_split(d, corpus):
    write_aclimdb(d, *corpus)
    for f in (d / "aclImdb" / "test" / "pos").iterdir():
        f.unlink()
    (d / "aclImdb" / "test" / "pos").rmdir()
    return d / "aclImdb" / "test" / "pos"


def _misplaced_review(d, corpus):
    write_aclimdb(d, *corpus)
    bad = d / "aclImdb" / "train" / "pos" / "99_2.txt"
    bad.write_text("a negative review in the positive folder")
    return bad


def _unreadable_npz(d):
    (d / imdb.NPZ_NAME).write_bytes(b"not a zip archive")
    return d / imdb.NPZ_NAME


def _npz_missing_key(d):
    np.savez(d / imdb.NPZ_NAME, x_train=np.array([1, 2]))
    return d / imdb.NPZ_NAME


def _npz_bad_label(d, corpus):
    path = write_npz(d, *corpus)
    with np.load(path, allow_pickle=True) as f:
        arrays = dict(f)
    arrays["y_test"] = arrays["y_test"] + 5
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make,needs_corpus", [
    (_bad_header, False), (_bad_label, False), (_empty_csv, False), (_missing_split, True),
    (_misplaced_review, True), (_unreadable_npz, False), (_npz_missing_key, False), (_npz_bad_label, True),
])
def test_corrupt_data_is_one_line_naming_the_file(tmp_path, corpus, make, needs_corpus):
    bad = make(tmp_path, corpus) if needs_corpus else make(tmp_path)
    with pytest.raises(UserError) as e:
        load_reviews(str(tmp_path))
    assert "\n" not in str(e.value) and str(bad.resolve()) in str(e.value)


def test_official_split_needs_a_layout_that_has_it(layouts):
    with pytest.raises(UserError, match="official"):
        make_task("imdb", {"split": "official"}, str(layouts["csv"]))


@pytest.mark.parametrize("options,match", [({"split": "random"}, "split"), ({"hidden": 0}, "hidden"),
                                           ({"lstm": "gru"}, "lstm"), ({"layout": "tsv"}, "layout")])
def test_bad_options(layouts, options, match):
    with pytest.raises(UserError, match=f"task_options.{match}"):
        make_task("imdb", options, str(layouts["csv"]))


def test_lstm_matches_nn_lstm():
    torch.manual_seed(0)
    ours = LSTM(6, 10, num_layers=2)
    torch.manual_seed(0)
    ref = nn.LSTM(6, 10, num_layers=2, batch_first=True)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), ref.parameters()))  # same init draws
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.5)  # weights far from init, so every gate matters
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 7, 6)
    (out, (h, c)), (out_ref, (h_ref, c_ref)) = ours(x), ref(x)
    for a, b in ((out, out_ref), (h, h_ref), (c, c_ref)):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_sentiment_model_runs_under_vmap():
    torch.manual_seed(0)
    models = [SentimentLSTM(20, 4, 8, 2) for _ in range(3)]
    params, _ = stack_module_state(models)
    base = SentimentLSTM(20, 4, 8, 2).to("meta")
    tokens = torch.randint(0, 20, (5, 9), dtype=torch.int32)
    batched = vmap(lambda p: functional_call(base, p, (tokens,)))(params)
    each = torch.stack([m(tokens) for m in models])
    assert batched.shape == (3, 5) and torch.allclose(batched, each, atol=1e-6)


def test_task_data_model_and_sizes(layouts):
    task = make_task("imdb", {"hidden": 8, "vocab": 30, "length": 12}, str(layouts["aclimdb"]))
    assert task.pool_size == 60 and not task.vectorizable and "aclImdb" in task.data_source
    split = task.data(21)
    assert split.train_x.shape == (15, 12) and split.test_x.shape == (6, 12)
    assert split.train_y.dtype == torch.float32 and set(split.train_y.tolist()) <= {0.0, 1.0}
    assert all(task.train_size(n) == len(task.data(n).train_x) for n in (2, 5, 21, 60))
    model = task.build_model()
    assert isinstance(model.lstm, nn.LSTM) and model.embedding.num_embeddings == 31
    p = model(split.train_x)
    assert p.shape == (15,) and bool(((p > 0) & (p < 1)).all())
    assert task.loss(p, split.train_y).dim() == 0
    assert task.errors(torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1.0, 1.0, 0.0])).tolist() == [0.0, 1.0, 1.0]
    matmul = make_task("imdb", {"lstm": "matmul", "split": "official"}, str(layouts["npz"]))
    assert matmul.vectorizable is None and isinstance(matmul.build_model().lstm, LSTM)  # the engine probes it
    assert matmul.pool_size == 30 and matmul.train_size(7) == len(matmul.data(7).train_x) == 7
    with pytest.raises(UserError, match="75/25"):
        task.check_axis([1])


TINY = """
task = "imdb"
[task_options]
hidden = 8
vocab = 30
length = 12
[axes]
alpha = [0.5, 2.0]
N = [20, 40]
[train]
optimizer = "adam"
lr = 1e-3
batch_size = 10
epochs = 2
grad_clip = 5.0
[eval]
every = "epoch"
"""


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("lstm", ["torch", "matmul"])
def test_tiny_grid_end_to_end(tmp_path, layouts, lstm, capsys):
    spec = tmp_path / "imdb.toml"
    spec.write_text(TINY)
    out = tmp_path / "cube.zarr"
    args = ["grid", str(spec), "--out", str(out), "--jobs", "1", "--quiet", "--data-dir", str(layouts["csv"]),
            "--set", f"task_options.lstm={lstm}"]
    assert cli.main(args) == 0
    cube = xr.open_zarr(out)
    assert (cube["status"].values == 1).all() and "Kaggle CSV" in cube.attrs["data_source"]
    assert np.isfinite(cube["test_err"].values).all() and (cube["train_loss"].values > 0).all()
    # 2 epochs of N_train // 10 steps: 15 // 10 = 1 at N = 20, 30 // 10 = 3 at N = 40
    assert cube["steps"].sel(N=20).values.tolist() == [[2], [2]] and cube["steps"].sel(N=40).values.tolist() == [[6], [6]]
    assert bool(cube.attrs["batched"]) == (lstm == "matmul")


def test_grid_without_data_exits_2_and_leaves_no_store(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LANDSCAPE_DATA", raising=False)
    spec = tmp_path / "imdb.toml"
    spec.write_text(TINY)
    assert cli.main(["grid", str(spec), "--out", str(tmp_path / "cube.zarr"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aclImdb" in err
    assert not (tmp_path / "cube.zarr").exists()


@pytest.mark.parametrize("name", ["imdb", "imdb-small", "imdb-grokking", "imdb-grokking-small"])
def test_shipped_specs_resolve(name):
    from landscape.spec import load_spec
    from tests.conftest import ROOT

    spec = load_spec(ROOT / "grids" / f"{name}.toml")
    assert spec.task == "imdb" and spec.train.batch_size == 50 and spec.train.grad_clip == 5.0 and spec.train.epochs > 0
