"""The user-regime benchmark harness (bench/user_regime.py, bench/ab_revision.py) on one tiny run: each
implementation in its own process, the rounds rotated, the results files complete. Structure only: no
timing is judged here (timings live in bench/)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(script, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *args], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_user_regime_writes_a_table_and_its_environment(tmp_path):
    run_bench("user_regime.py", "--workloads", "mlp-b32", "--impls", "tinylazy", "tinylazy-captured", "numpy",
              "--rounds", "1", "--steps", "3", "--warmup", "1", "--no-check", "--out", str(tmp_path))
    md = next(tmp_path.glob("user-regime-*-mlp-b32.md"))
    doc = json.loads(md.with_suffix(".json").read_text())
    text = md.read_text()

    assert doc["kind"] == "user-regime" and doc["settings"]["rounds"] == 1
    assert {"cpu", "logical_cores", "usable_cores", "system"} <= set(doc["machine"])
    assert len(doc["load"]["start"]) == 3 and doc["env_set_for_all"] == {}
    res = doc["workloads"]["mlp-b32"]
    assert res["steps"] == 3 and res["warmup"] == 1
    runs = {r["label"]: r for r in res["runs"]}
    assert set(runs) == {"tinylazy", "numpy"} | ({"tinylazy-captured"} - set(res["skipped"]))
    for r in runs.values():
        assert r["steps"] == 3 and r["round"] == 0 and r["min_s"] <= r["median_s"] <= r["p90_s"]
    # the same first loss in every process: the same weights and batch, the same step
    assert abs(runs["tinylazy"]["first"] - runs["numpy"]["first"]) <= 1e-4 * abs(runs["numpy"]["first"])
    assert "tinylazy/numpy" in res["ratios"] and res["summary"]["tinylazy"]["n"] == 1
    if "tinylazy-captured" in res["skipped"]:                # tl.capture not built yet: a note, no column
        assert "tinylazy-captured: skipped (tl.capture does not exist" in text
    # each process reported what it ran with; numpy's never imported tinylazy
    envs = doc["process_environments"]
    assert "tinylazy" in envs["tinylazy"] and "tinylazy" not in envs["numpy"] and "torch" not in envs["numpy"]
    assert isinstance(envs["numpy"]["threadpools"], (list, str))
    assert "| mlp-b32 |" in text and "## Machine and environment" in text and "Environment found" in text


def test_ab_revision_alternates_sides_with_their_own_environment(tmp_path):
    out_json = tmp_path / "ab.json"
    out = run_bench("ab_revision.py", "--b", "worktree", "--env-b", "TINYLAZY_MALLOC_TUNING=0",
                    "--workloads", "chain20-4x4", "--rounds", "2", "--steps", "3", "--warmup", "1",
                    "--json", str(out_json))
    doc = json.loads(out_json.read_text())
    runs = doc["workloads"]["chain20-4x4"]["runs"]
    a, b = "A: worktree", "B: worktree TINYLAZY_MALLOC_TUNING=0"
    order = [(r["round"], r["position"], r["label"]) for r in runs]
    assert order == [(0, 0, a), (0, 1, b), (1, 0, b), (1, 1, a)]          # A B, then B A
    for r in runs:
        seen = r["env"]["variables"].get("TINYLAZY_MALLOC_TUNING")
        assert seen == ("0" if r["label"] == b else os.environ.get("TINYLAZY_MALLOC_TUNING"))
    assert "A/B:" in out and "same-round ratios" in out
