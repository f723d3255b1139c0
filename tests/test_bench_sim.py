"""The simulator benchmarks build their settings from the real configs, and run (one short episode each):
`bench eval` and `bench collect` once loaded a raw env YAML and a moved class, and broke unseen."""

import pytest

pytestmark = pytest.mark.slow


def test_bench_eval_rolls_out_a_lift_episode(monkeypatch):
    import bench.eval as bench_eval

    monkeypatch.setattr(bench_eval, "EPISODES", 1)
    monkeypatch.setattr(bench_eval, "MAX_STEPS", 3)
    env_cfg = bench_eval.lift_config(["agentview"])
    assert env_cfg.cameras == ["agentview"] and "reflections" in env_cfg  # composed: schema keys present
    episodes_per_s, startup = bench_eval.throughput(env_cfg, 0)
    assert episodes_per_s > 0 and startup > 0


def test_bench_collect_records_the_image_quickstart_settings(tmp_path, monkeypatch):
    import bench.collect as bench_collect

    monkeypatch.setattr(bench_collect, "EPISODES", 1)
    seconds, root = bench_collect.collect(False, 1, tmp_path)
    assert seconds > 0 and (root / "meta" / "info.json").is_file()
    assert "64x64_1ep" in root.name  # the quickstart's cameras and size, EPISODES demonstrations
