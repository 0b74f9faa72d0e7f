"""The demo's command line where a new user meets it (issue 15, item 8): one-line errors with exit status 2
before any work, resuming continues the epoch count and checks the model, and the test footer counts the
skips per reason."""
import os
import subprocess
import sys

import pytest

import tinylazy as tl
from tinylazy import datasets, demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model", "mlp", "--batch-size", "500"]          # 4 batches an epoch on the bundled subset


def fails(capsys, *argv):
    """Run the demo expecting a one-line error and exit status 2 with nothing done; return the line."""
    with pytest.raises(SystemExit) as info:
        demo.main(list(argv))
    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert out == ""                                       # nothing built or printed first
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m tinylazy.demo: error: ")
    return lines[0]


def test_cuda_without_a_gpu_says_so_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(tl.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tl.cuda, "device_count", lambda: 0)
    line = fails(capsys, "--device", "cuda")
    assert "--device cuda: no GPU or no CuPy here; use --device cpu" in line


def test_a_missing_gpu_index_and_unknown_devices(capsys, monkeypatch):
    monkeypatch.setattr(tl.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tl.cuda, "device_count", lambda: 1)
    assert "--device cuda:1: 1 GPU(s) found" in fails(capsys, "--device", "cuda:1")
    assert "unknown device 'tpu'" in fails(capsys, "--device", "tpu")
    assert "--device meta" in fails(capsys, "--device", "meta")


def test_full_without_the_data_set_says_how_to_get_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "DEBIAN_DIR", tmp_path / "not-installed")
    monkeypatch.delenv("TINYLAZY_DATA", raising=False)
    line = fails(capsys, "--full")
    assert "--full: the full Fashion-MNIST is not installed" in line
    assert "apt-get install dataset-fashion-mnist" in line and "$TINYLAZY_DATA" in line


def test_help_describes_full_and_resume(capsys):
    with pytest.raises(SystemExit) as info:
        demo.parse_args(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "says how to get it and stops" in text and "apt-get install dataset-fashion-mnist" in text
    assert "numbered on from the checkpoint's" in text


def test_resume_continues_the_epoch_count_and_stores_it(capsys, tmp_path):
    first, second = str(tmp_path / "a.tl"), str(tmp_path / "b.tl")
    demo.main(TINY + ["--epochs", "1", "--save", first])
    out = capsys.readouterr().out
    assert "epoch 1/1 [" in out
    saved = tl.load(first)
    assert saved["epoch"] == 1 and saved["model_name"] == "mlp"
    demo.main(TINY + ["--epochs", "2", "--resume", first, "--save", second])
    out = capsys.readouterr().out
    assert f"resumed from {first} (epoch 1)" in out
    assert "epoch 2/3 [" in out and "epoch 3/3 [" in out and "epoch 1/" not in out
    assert tl.load(second)["epoch"] == 3
    assert out.strip().splitlines()[-1].startswith("test accuracy: 0.")


def test_resume_with_another_model_names_the_checkpoints_model(capsys, tmp_path):
    path = str(tmp_path / "mlp.tl")
    demo.main(TINY + ["--epochs", "1", "--save", path])
    capsys.readouterr()
    line = fails(capsys, "--model", "lenet", "--resume", path)
    assert "the checkpoint holds a 'mlp' model, but --model is 'lenet'; add --model mlp" in line
    state = tl.load(path)                                  # a checkpoint from before the model name was stored
    del state["model_name"]
    tl.save(state, path)
    with pytest.raises(SystemExit) as info:
        demo.main(["--model", "lenet", "--epochs", "1", "--resume", path])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1
    assert "do not fit --model lenet (was it saved with another --model?)" in err[0]


def test_resume_from_a_missing_or_foreign_file(capsys, tmp_path):
    assert "--resume" in fails(capsys, "--resume", str(tmp_path / "missing.tl"))
    tl.save({"weights": tl.ones(2)}, tmp_path / "other.tl")
    assert "not a checkpoint written by --save" in fails(capsys, "--resume", str(tmp_path / "other.tl"))


def test_the_test_footer_counts_skips_per_reason():
    # without torch, the skips must be blamed on torch, not on CUDA
    code = ("import sys; sys.modules['torch'] = None; import pytest; "
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/test_keyword_input.py']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env=dict(os.environ, PYTHONPATH=ROOT, TINYLAZY_TEST_DEVICE="cpu"))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    torch_lines = [ln for ln in lines if "skipped: could not import 'torch'" in ln]
    assert len(torch_lines) == 1 and torch_lines[0].split()[0].isdigit() and int(torch_lines[0].split()[0]) > 0
    assert not any("skipped: cuda" in ln for ln in lines)               # cpu only here: no cuda skips to blame
    assert any(ln.startswith("tinylazy devices tested:") for ln in lines)


def test_the_readme_example_runs(capsys):
    import re
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks
    exec(compile(blocks[0], "README.md", "exec"), {})     # the headline example (later blocks need mpiexec)
    assert "Linear(in_features=None, out_features=256, bias=True)" in capsys.readouterr().out
