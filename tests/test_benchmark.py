"""The throughput benchmark runs and reports every figure (a smoke run on two images)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_benchmark_reports_all_figures(weights_dir, tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--n", "2", "--device", "cpu",
         "--keep-background", "--weights-dir", str(weights_dir), "--json", str(out), "--whole-process", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    for key in ("a_networks_images_per_s", "b_end_to_end_images_per_s", "b_wall_s_including_startup",
                "c_baseline_images_per_s", "c_wall_s_including_startup", "b_peak_rss_mb", "b_over_a", "b_over_c",
                "b_over_c_whole_process"):
        assert figures[key] > 0, key
    assert figures["device"] == "cpu, fp32" and figures["n"] == 2 and figures["repeat"] == 1
    assert len(figures["runs"]["c_images_per_s"]) == 1 and figures["cpu"]
    whole = figures["whole_process"]["1"]
    assert whole["command_wall_s"] > 0 and whole["speed_up"] == whole["script_wall_s"] / whole["command_wall_s"]
    assert len(figures["load_average_before"]) == 3 and figures["b_first_run_wall_s"] > 0
    assert "(b)/(a)" in proc.stdout and "(b)/(c), rates" in proc.stdout and "whole processes" in proc.stdout
