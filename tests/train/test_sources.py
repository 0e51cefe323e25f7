"""train/sources.py: what a stage's reuse key says about its pretrained model."""

import shutil

from distill_lora.train import sources


def fake_hub_cache(root, repo: str, commit: str, files: list) -> None:
    """A Hugging Face cache entry as a download leaves it: refs/main names the commit, its snapshot holds files."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, snapshot / f.name)


def test_a_hub_teacher_keeps_its_key_while_its_weights_download(tiny_bert6, tmp_path, monkeypatch):
    """A Hub id is keyed on the commit it resolves to, not on the files cached so far: the config arrives before
    the weights, and a key that changed between the two made the first `compare` train the teacher twice.

    Mutation caught: keying a Hub id on the cached snapshot's files (the key before the weights arrive differs)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    sources.hub_revision.cache_clear()
    repo, commit = "someone/tiny-bert", "a" * 40
    fake_hub_cache(tmp_path, repo, commit, [tiny_bert6 / "config.json"])  # the download has begun
    before = sources.model_fingerprint(repo)
    fake_hub_cache(tmp_path, repo, commit, sorted(p for p in tiny_bert6.iterdir() if p.is_file()))  # finished
    sources.hub_revision.cache_clear()
    assert sources.model_fingerprint(repo) == before == f"{repo}@{commit}"
    # a new commit of the same id is another teacher
    fake_hub_cache(tmp_path, repo, "b" * 40, [tiny_bert6 / "config.json"])
    sources.hub_revision.cache_clear()
    assert sources.model_fingerprint(repo) == f"{repo}@{'b' * 40}"
    sources.hub_revision.cache_clear()


def test_a_local_folder_is_keyed_on_its_files(tiny_bert6, tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(tiny_bert6, folder)
    before = sources.model_fingerprint(str(folder))
    assert before == sources.model_fingerprint(str(folder))
    (folder / "config.json").write_text((folder / "config.json").read_text().replace("}", ' , "note": 1}', 1))
    assert sources.model_fingerprint(str(folder)) != before
