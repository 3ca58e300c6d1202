"""rramlab train | infer | power | reproduce, run as a user runs them (twin: fast engine)."""

import csv
import re
import json
from pathlib import Path

import numpy as np
import pytest

from rramlab.app.cli import main
from rramlab.app.report import REPORT_FILES

SIM_BENCH = Path(__file__).resolve().parents[1] / "drivers" / "benches" / "sim.toml"


def test_reproduce_holds_the_papers_claims(tmp_path, capsys):
    """The paper's experiment with the default settings: the array follows its ANN within 5 points,
    the 6 is a 6, and QT & PR draws less power than QT on every class. The spiking sweep (accuracy on
    100 images here, 1,000 by default): power falls with the threshold and rises with the spike
    voltage, each power figure is the product of its factors, and QT & PR stays below QT on every class
    at every sweep point (issue 20's must-hold, the sweep's power on its accuracy images)."""
    out, report = tmp_path / "r.json", tmp_path / "report"
    assert main(["reproduce", "--json", str(out), "--report", str(report), "--split-images", "100"]) == 0
    text = capsys.readouterr().out
    assert "wall time" in text and "average power QT & PR" in text and "paper" in text
    r = json.loads(out.read_text())
    for k in ("qt", "qtpr"):
        f = r["power_factors"][k]
        assert f["power_w"] == pytest.approx(r["power_w"][k], rel=1e-9)
        assert f["power_w"] == pytest.approx(f["active_wordlines_per_step"] * f["conductance_per_active_wordline_s"]
                                             * f["spike_v"] ** 2 * f["waveform_factor"], rel=1e-9)
        assert f["paper_active_wordlines_per_step"] * f["conductance_per_active_wordline_s"] == \
            pytest.approx(r["paper"][f"power.{k}_w"], rel=1e-9)
        assert f"{f['power_w'] * 1e9:.0f} nW = {f['active_wordlines_per_step']:.2f} active wordlines/step" in text
        points = r["spiking_sweep"][k]
        th = [p["power_w"] for p in points if p["parameter"] == "threshold"]
        sv = [p["power_w"] for p in points if p["parameter"] == "spike_v"]
        assert [p["value"] for p in points if p["parameter"] == "threshold"] == [1, 2, 3, 4, 5]
        assert [p["value"] for p in points if p["parameter"] == "spike_v"] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
        assert all(b <= a for a, b in zip(th, th[1:])) and th[-1] < th[0] / 3
        assert all(b >= a for a, b in zip(sv, sv[1:]))
        shapes = {(p["spike_shape"], p["spike_duty"]): p for p in points if p["parameter"] == "waveform"}
        assert shapes[("rect", 0.5)]["power_w"] == pytest.approx(shapes[("rect", 1.0)]["power_w"] / 2)
        assert shapes[("tri", 1.0)]["power_w"] < shapes[("rect", 1.0)]["power_w"] / 3  # the device's I(V)
        assert all(p["images"] == 100 and p["standard_error"] > 0 for p in points)
        assert r["split_accuracy"][k]["images"] == 100
    assert r["spiking_sweep_checks"]["qt_power_non_increasing_in_threshold"] is True
    # the must-hold as written: QT & PR below QT on every class at every sweep point (the
    # sweep's power is taken on its accuracy images, 10 per digit here, 100 by default)
    assert r["spiking_sweep_checks"]["qtpr_below_qt_every_class_every_point"] is True
    assert r["spiking_sweep_checks"]["qtpr_not_below_qt"] == []
    assert r["spiking_sweep_power_images"] == "split"
    for q, p in zip(r["spiking_sweep"]["qt"], r["spiking_sweep"]["qtpr"]):
        assert (q["parameter"], q["value"]) == (p["parameter"], p["value"])
        assert q["power_images"] == p["power_images"] == q["images"] == 100
        assert p["power_w"] < q["power_w"]
        assert all(b < a for a, b in zip(q["power_per_class_w"], p["power_per_class_w"])), (q["parameter"], q["value"])
        # QT & PR's cells draw less per spike at every point
        assert p["factors"]["conductance_per_active_wordline_s"] < q["factors"]["conductance_per_active_wordline_s"]
    assert r["paper_power_settings"] and r["paper_power_settings"][0]["spike_shape"] == "rect"
    for k in ("qt", "qtpr"):
        assert r["images"][k] == 200
        assert abs(r["array_accuracy"][k] - r["ann_accuracy_same_images"][k]) <= 0.05
        assert r["six"][k]["prediction"] == 6 and int(np.argmax(r["six"][k]["totals_a"])) == 6
        assert r["transfer"][k]["within_2ns"] > 0.85
    for k in ("fp32", "qt", "qtpr"):
        assert r["ann_accuracy"][k] >= 0.88
    assert r["qtpr_below_qt_every_class"] is True
    assert all(p < q for p, q in zip(r["power_per_class_w"]["qtpr"], r["power_per_class_w"]["qt"]))
    assert r["power_reduction"] > 0 and r["paper"]["power.qt_w"] == 243e-9
    assert [s["prune_ratio"] for s in r["sweep"]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    for s in r["sweep"]:     # a pruned weight is a pair with no target
        assert s["programmed_cells"] <= round((1 - s["prune_ratio"]) * 240)
    assert r["sweep"][-1]["power_w"] < r["sweep"][0]["power_w"]
    assert r["wall_time_s"] > 0
    # every layer went in by the transfer protocol, each transfer a finished run in reproduce's own
    # store next to --json; the user's store is left alone
    import os

    from rramlab.protocols.store import RunStore

    assert r["store"] == str(tmp_path / "r.runs.sqlite") and f"run store {r['store']}" in text
    assert not Path(os.environ["RRAMLAB_STORE"]).exists()
    with RunStore(r["store"]) as store:
        runs = store.runs()
        assert [x.protocol for x in runs] == ["transfer"] * (2 + len(r["sweep"]))
        assert all(x.status == "finished" for x in runs)
        for k in ("qt", "qtpr"):
            info = store.run(r["transfer"][k]["run_id"])
            assert info.settings["transfer"]["scheme"] == r["transfer"][k]["scheme"] == "fast"
            assert info.settings["level_spacing_s"] == pytest.approx(10e-9)
            assert np.count_nonzero(info.settings["levels"]) == r["transfer"][k]["cells"]
    for name in REPORT_FILES:
        if name.endswith(".png"):
            assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    rows = list(csv.DictReader(open(report / "spiking_tradeoff.csv")))
    assert len(rows) == 2 * len(r["spiking_sweep"]["qt"])
    assert float(rows[0]["power_w"]) == pytest.approx(r["spiking_sweep"]["qt"][0]["power_w"], rel=1e-5)


def test_train_then_infer_then_reuse_the_chip(tmp_path, capsys):
    net, chip = tmp_path / "net.npz", tmp_path / "chip.npz"
    assert main(["train", "--out", str(net), "--epochs", "5"]) == 0
    text = capsys.readouterr().out
    assert "QT & PR  ANN test accuracy" in text
    assert (tmp_path / "net.qt.weights.npz").exists() and (tmp_path / "net.qtpr.weights.npz").exists()
    assert main(["infer", "--network", str(net), "--images", "20", "--save-chip", str(chip)]) == 0
    first = capsys.readouterr().out
    assert "wrote the QT second layer" in first and "array accuracy" in first and "confusion matrix" in first
    assert "by the transfer (fast)" in first and "run 1 in" in first
    # the saved chip already holds the weights: no second write, the same answers
    assert main(["infer", "--network", str(net), "--images", "20", "--chip", str(chip)]) == 0
    second = capsys.readouterr().out
    assert "wrote" not in second
    line = lambda t: next(x for x in t.splitlines() if "array accuracy" in x)  # noqa: E731
    assert line(first) == line(second)


def test_infer_one_image_of_a_six_with_a_plot(tmp_path, capsys):
    png, table = tmp_path / "six.png", tmp_path / "six.csv"
    assert main(["infer", "--image", "6", "--plot", str(png), "--csv", str(table), "--variant", "qtpr"]) == 0
    text = capsys.readouterr().out
    assert "label 6: prediction 6 (right)" in text
    assert png.read_bytes()[:4] == b"\x89PNG"
    lines = open(table).read().splitlines()
    comments = [x for x in lines if x.startswith("#")]
    assert lines[:len(comments)] == comments  # the provenance comes first
    assert any(x.startswith("# command: rramlab infer --image 6") for x in comments)
    assert any(x.startswith("# backend: ") and '"seed": 0' in x for x in comments)
    assert '# variant: "qtpr"' in comments
    rows = list(csv.reader(lines[len(comments):]))
    assert rows[0][:4] == ["image", "label", "prediction", "step"] and len(rows) == 1 + 25
    totals = np.sum([[float(x) for x in r[4:]] for r in rows[1:]], axis=0)
    assert int(np.argmax(totals)) == 6 and rows[1][1:3] == ["6", "6"]


def test_power_per_class(capsys):
    assert main(["power", "--per-class", "2"]) == 0
    text = capsys.readouterr().out
    assert text.count(" nW") >= 20 + 10 and "average P_avg,array" in text and "per class: 0:" in text
    assert "active wordlines/step x" in text and "the paper's 243 nW needs" in text
    # a higher threshold and a triangular spike: fewer spikes, less power per spike
    assert main(["power", "--per-class", "2", "--threshold-scale", "4", "--spike-v", "0.6", "--spike-shape", "tri"]) == 0
    low = capsys.readouterr().out
    average = lambda t: float(next(x for x in t.splitlines() if "average P_avg" in x).split()[-2])  # noqa: E731
    assert average(low) < average(text) / 10
    assert "tri 0.6 V spikes" in low and "(tri 0.6 V waveform)" in low


def test_infer_on_a_bench_that_does_not_hold_the_network_is_refused_and_ends_safely(tmp_path, capsys):
    """The pyvisa-sim bench answers every read with the same canned current: it holds no network, so
    inference is refused in one line naming --program, after one read of the cells and no spike."""
    log = tmp_path / "visa.log"
    assert main(["infer", "--bench", str(SIM_BENCH), "--images", "2", "--visa-log", str(log)]) == 1
    out, err = capsys.readouterr()
    assert "on the probe-station" not in out and "wrote" not in out  # a bench is not written without --program
    assert "does not hold the QT network" in err and "add --program" in err and "Traceback" not in err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln]  # not the bar
    assert len(lines) == 1
    lines = log.read_text().splitlines()
    # the network's cells were read once: spot reads (TI?) or a wordline's bitlines together (RMD?)
    assert sum(("TI?" in x or "RMD?" in x) for x in lines if "write" in x) >= 24
    tail = [x for x in lines if "write" in x][-8:]
    assert any("'CL'" in x for x in tail) and any(":ROUT:OPEN:CARD" in x for x in tail)
    tail = [x for x in lines if "write" in x][-8:]
    assert any("'CL'" in x for x in tail) and any(":ROUT:OPEN:CARD" in x for x in tail)
    assert all("DV" not in x or ",0," in x or ",0.0," in x for x in tail)


@pytest.mark.parametrize("argv, message", [
    (["infer", "--images", "0"], "ask for at least one"),
    (["infer", "--network", "missing.npz"], "rramlab train --out missing.npz"),
    (["infer", "--mnist", "/nonexistent/mnist"], "no such folder"),
    (["infer", "--spike-v", "2.0"], "read limit"),
    (["infer", "--set-max", "4.5"], "set limit"),
    (["infer", "--mapping", "interleaved"], "the blocked mapping"),
    (["infer", "--bench", str(SIM_BENCH), "--program", "--width", "2e-3"], "--scheme half-bias"),
    (["power", "--bench", str(SIM_BENCH), "--program", "--scheme", "half-bias"], "--width"),
    (["infer", "--index", "1000"], "outside the test set"),
    (["power", "--per-class", "0"], "at least one image per digit"),
    (["train", "--out", "x.npz", "--bits", "5"], "--bits"),
    (["infer", "--threshold-scale", "0"], "--threshold-scale (threshold_scale) = 0 is out of range"),
    (["power", "--threshold-scale", "nan"], "--threshold-scale (threshold_scale) must be a finite number"),
    (["reproduce", "--spike-v", "2"], "--spike-v (spike_v) = 2 V is beyond the read limit"),
    (["reproduce", "--spike-v", "nan"], "--spike-v (spike_v) must be a finite number"),
    (["infer", "--spike-duty", "1.5"], "--spike-duty (spike_duty) = 1.5 is out of range"),
    (["power", "--max-rate", "0"], "--max-rate (max_rate) = 0 is out of range"),
    (["infer", "--threshold", "-1"], "--threshold (threshold) = -1 is out of range"),
    (["infer", "--threshold", "2", "--threshold-scale", "3"], "give one of them"),
    (["reproduce", "--threshold-scale", "0"], "--threshold-scale (threshold_scale) = 0 is out of range"),
    (["reproduce", "--spike-v-sweep-min", "0.9", "--spike-v-sweep-max", "0.6"], "swap them"),
    (["reproduce", "--spike-v-sweep-max", "1.6"], "read limit"),
])
def test_bad_input_is_a_clear_error(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    from rramlab.protocols import mnist

    if "--mnist" not in argv and "--index" not in argv:  # refused before any data is read (so before training)
        monkeypatch.setattr(mnist, "load", lambda *a, **k: pytest.fail("data read before the refusal"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()


def test_ctrl_c_during_inference_returns_the_array_to_0_v(monkeypatch, capsys):
    from rramlab.sim.virtual_array import VirtualArray

    resets = []

    def interrupted(self, wordline_v, bitlines):
        raise KeyboardInterrupt

    monkeypatch.setattr(VirtualArray, "_vmm", interrupted)
    monkeypatch.setattr(VirtualArray, "_reset_outputs", lambda self: resets.append(1))
    assert main(["infer", "--images", "10"]) == 130
    assert "interrupted after 0 of 10 images; outputs are at 0 V" in capsys.readouterr().err
    assert resets


def test_train_reads_idx_files_given_with_mnist(tmp_path, capsys):
    from test_network import _idx_dir

    _idx_dir(tmp_path, n_train=40, n_test=10)
    out = tmp_path / "idx_net.npz"
    assert main(["train", "--mnist", str(tmp_path), "--out", str(out), "--epochs", "1", "--finetune-epochs", "0"]) == 0
    assert f"MNIST IDX files in {tmp_path}: 40 training, 10 test images" in capsys.readouterr().out
    from rramlab.protocols.network import load_network

    assert load_network(out).train_images == 40


def test_infer_on_a_chip_without_the_network_names_program_and_runs_with_it(tmp_path, capsys):
    from rramlab.sim.virtual_array import VirtualArray

    chip = tmp_path / "fresh.npz"
    with VirtualArray(seed=0, engine="fast") as va:
        va.save_chip(chip)
    assert main(["infer", "--images", "2", "--chip", str(chip)]) == 1
    out, err = capsys.readouterr()
    assert "does not hold the QT network" in err and "add --program" in err and "array accuracy" not in out
    assert main(["infer", "--images", "2", "--chip", str(chip), "--program"]) == 0
    assert "array accuracy" in capsys.readouterr().out


def test_reproduce_without_the_sweep_keeps_its_runs_in_a_temporary_store(tmp_path, capsys):
    """--no-sweep skips the pruning sweep; without --json or --store the transfers go to a store
    that is removed at the end (said so), never into the user's run store."""
    import os

    small = ["--images-per-class", "2", "--power-per-class", "1", "--epochs", "2", "--finetune-epochs", "1",
             "--hidden", "4", "--ispp-cycles", "1", "--no-progress"]
    assert main(["reproduce", "--no-sweep", *small]) == 0
    captured = capsys.readouterr()
    assert "temporary run store, deleted now" in captured.out and "pruning sweep" not in captured.err
    assert "QT & PR: transfer" in captured.err  # --no-progress: the stages as lines
    assert not Path(os.environ["RRAMLAB_STORE"]).exists()
    mine = tmp_path / "mine.sqlite"
    out = tmp_path / "r.json"
    assert main(["reproduce", "--no-sweep", *small, "--store", str(mine), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["sweep"] == [] and r["store"] == str(mine) and not (tmp_path / "r.runs.sqlite").exists()
    assert main(["reproduce", "--no-sweep", *small, "--json", str(out)]) == 1  # it exists: --force
    assert "already exists" in capsys.readouterr().err


def test_train_shows_a_progress_bar_per_epoch_with_the_time_left(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "n.npz"), "--epochs", "3", "--finetune-epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert "training FP32, then fine-tuning QT & PR" in err and "4/4" in err and "epoch" in err and "<" in err
    assert main(["train", "--out", str(tmp_path / "m.npz"), "--epochs", "1", "--finetune-epochs", "0",
                 "--no-progress"]) == 0
    assert "epoch" not in capsys.readouterr().err


def test_distinct_steps_give_the_twins_own_currents_for_every_step():
    """reproduce's DistinctSteps solves each distinct wordline pattern once and hands its currents to
    every step that applied it: the same currents as the twin's own vmm of every step."""
    from rramlab.protocols.reproduce import DistinctSteps, distinct_rows
    from rramlab.sim.virtual_array import VirtualArray

    rng = np.random.default_rng(3)
    spikes = (rng.random((300, 24)) < 0.1) * 1.0
    for v in (spikes * 0.7, np.vstack([spikes[:150] * 0.7, spikes[150:] * 0.3])):
        first, where = distinct_rows(v)
        assert np.array_equal(v[first][where], v) and first.size < v.shape[0]
    mixed = spikes * rng.choice([0.5, 1.0], size=spikes.shape)      # rows with two voltages: the general path
    first, where = distinct_rows(mixed)
    assert np.array_equal(mixed[first][where], mixed)
    with VirtualArray(seed=2, engine="fast") as va:
        from rramlab.protocols import transfer

        transfer.write_levels(va, rng.integers(-8, 9, size=(24, 10)))
        v = np.vstack([spikes, spikes[:100]]) * 0.8
        assert np.allclose(DistinctSteps(va).vmm(v, list(range(20))), va.vmm(v, list(range(20))), rtol=1e-12, atol=0)


def test_reproduce_plans_are_the_plans_inference_makes():
    """reproduce's Plans keeps the rate-coded drive of a variant's images between plans: the plans
    it hands back (other thresholds, other spikes, a plan met again) are inference.plan's own, and it
    refuses what inference.plan refuses."""
    from dataclasses import replace

    from rramlab.drivers.interface import RramlabError
    from rramlab.protocols import inference
    from rramlab.protocols.mnist import Dataset
    from rramlab.protocols.network import Variant
    from rramlab.protocols.reproduce import Plans
    from rramlab.sim.virtual_array import VirtualArray

    rng = np.random.default_rng(4)
    data = Dataset(rng.random((60, 784)), rng.integers(0, 10, 60), "random")
    variant = Variant("qt", rng.normal(0, 0.05, (784, 24)), rng.normal(0, 0.1, 24), rng.normal(0, 1, (24, 10)), 1.5)
    other = replace(variant, w1=variant.w1[:, ::-1].copy())
    plans = Plans()
    base = inference.InferenceSettings()
    idx = np.array([5, 40, 3, 17, 59, 0, 22])
    with VirtualArray(engine="fast") as va:
        for v, s, images in [(variant, base, idx), (variant, replace(base, threshold_scale=2.5), idx),
                             (variant, replace(base, spike_v=0.6, spike_shape="tri"), idx),
                             (variant, base, idx[:4]), (other, base, idx), (variant, replace(base, spike_seed=3), idx),
                             (variant, replace(base, threshold_scale=2.5), idx)]:
            got, want = plans(s, v, data, images, va), inference.plan(s, v, data, images, va)
            assert got.settings == want.settings and got.variant is v and got.threshold == want.threshold
            for name in ("images", "labels", "indices", "hidden_spikes"):
                assert np.array_equal(getattr(got, name), getattr(want, name)), name
            assert got.wordlines == want.wordlines and got.bitlines == want.bitlines
        assert plans(replace(base, threshold_scale=2.5), variant, data, idx, va) is \
            plans(replace(base, threshold_scale=2.5), variant, data, idx, va)
        for s, bad in ((base, np.array([3, 60])), (base, np.array([], dtype=int)), (replace(base, spike_v=9.0), idx)):
            with pytest.raises(RramlabError) as want:
                inference.plan(s, variant, data, bad, va)
            with pytest.raises(type(want.value), match=re.escape(str(want.value))):
                plans(s, variant, data, bad, va)
