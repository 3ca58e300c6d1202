"""PNG figures of the network experiment (matplotlib, no display needed).

Each function takes plain numbers or protocol records and writes one PNG; ``write_report`` writes the
whole set of ``rramlab reproduce --report DIR``. Currents are shown in nA, conductances in nS, power in nW.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, also without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rramlab.protocols.network import VARIANT_TITLES, differential_conductance  # noqa: E402

CLASS_TICKS = list(range(10))


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def image_currents(record, path, title: str = "") -> Path:
    """One image: I+ - I- of each class at each step (left) and summed over the steps (right)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, record.class_currents.shape[0] + 1)
    for c in range(record.class_currents.shape[1]):
        a.plot(steps, record.class_currents[:, c] * 1e9, marker=".", lw=1.5 if c == record.prediction else 0.8,
               label=str(c))
    a.set_xlabel("time step")
    a.set_ylabel("I+ - I- (nA)")
    a.legend(title="class", ncol=2, fontsize=7)
    a.set_title("output current per step")
    colors = ["tab:red" if c == record.prediction else "tab:gray" for c in CLASS_TICKS]
    b.bar(CLASS_TICKS, record.totals * 1e9, color=colors)
    b.set_xticks(CLASS_TICKS)
    b.set_xlabel("output node (class)")
    b.set_ylabel("sum over steps of I+ - I- (nA)")
    b.set_title(f"label {record.label}, prediction {record.prediction}")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def confusion(matrices: dict, path) -> Path:
    """Confusion matrices side by side: {title: (10, 10) counts (rows true, columns predicted)}."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(5 * len(matrices), 4.5), squeeze=False)
    for ax, (title, m) in zip(axes[0], matrices.items()):
        ax.imshow(m, cmap="Blues")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > m.max() / 2 else "black")
        acc = np.trace(m) / max(1, m.sum())
        ax.set_title(f"{title}: {acc:.1%} of {m.sum()}")
        ax.set_xlabel("prediction")
        ax.set_ylabel("true digit")
        ax.set_xticks(CLASS_TICKS)
        ax.set_yticks(CLASS_TICKS)
    return _save(fig, path)


def ispp_trace(records, path) -> Path:
    """Read current after every ISPP pulse, set and reset phases coloured."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    n = np.arange(len(records))
    i = np.array([r.read_a for r in records]) * 1e9
    for phase, color in (("set", "tab:blue"), ("reset", "tab:orange")):
        sel = np.array([r.phase == phase for r in records])
        ax.plot(n[sel], i[sel], ".", color=color, label=phase)
    ax.set_xlabel("pulse number")
    ax.set_ylabel("read current at 1 V (nA)")
    ax.set_title("ISPP of one device (twin)")
    ax.legend()
    return _save(fig, path)


def tuned_states_cdf(levels_by_variant: dict, path) -> Path:
    """Cumulative distribution of the tuned conductances, one curve per target level.
    ``levels_by_variant``: {variant: the transfer report's ``levels`` (target_s, conductances_s)}."""
    fig, axes = plt.subplots(1, len(levels_by_variant), figsize=(5.5 * len(levels_by_variant), 4), squeeze=False)
    for ax, (name, levels) in zip(axes[0], levels_by_variant.items()):
        for lv in levels:
            t = lv["target_s"]
            g = np.sort(lv["conductances_s"]) * 1e9
            if g.size == 0:
                continue
            ax.step(g, np.arange(1, g.size + 1) / g.size, where="post", label=f"{t * 1e9:.0f} nS ({g.size})")
        ax.set_xlabel("tuned conductance at 1 V (nS)")
        ax.set_ylabel("cumulative fraction")
        ax.set_title(f"{VARIANT_TITLES.get(name, name)}: tuned states")
        ax.legend(fontsize=7)
    return _save(fig, path)


def weight_maps(maps: dict, path) -> Path:
    """G+ - G- maps (hidden x class, nS): {title: (hidden, 20) conductances in S}."""
    n = len(maps)
    cols = 2
    rows = (n + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(8, 4.2 * rows), squeeze=False)
    lim = max(float(np.nanmax(np.abs(differential_conductance(g)))) for g in maps.values()) * 1e9
    for ax, (title, g) in zip(axes.ravel(), maps.items()):
        im = ax.imshow(differential_conductance(g) * 1e9, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(title)
        ax.set_xlabel("class")
        ax.set_ylabel("wordline (hidden unit)")
        ax.set_xticks(CLASS_TICKS)
        fig.colorbar(im, ax=ax, label="G+ - G- (nS)")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return _save(fig, path)


def power_per_class(per_class_w: dict, path, paper_w: dict | None = None) -> Path:
    """Average array power per class, one bar per variant; the paper's averages as dashed lines."""
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(per_class_w)
    for k, (name, values) in enumerate(per_class_w.items()):
        x = np.arange(10) + (k - (len(per_class_w) - 1) / 2) * width
        ax.bar(x, np.asarray(values) * 1e9, width, label=f"{VARIANT_TITLES.get(name, name)} (ours), "
                                                         f"mean {np.nanmean(values) * 1e9:.0f} nW")
    for name, w in (paper_w or {}).items():
        ax.axhline(w * 1e9, ls="--", lw=1, color="k" if name == "qt" else "tab:gray",
                   label=f"paper {VARIANT_TITLES.get(name, name)}: {w * 1e9:.0f} nW")
    ax.set_xticks(CLASS_TICKS)
    ax.set_xlabel("class")
    ax.set_ylabel("P_avg,array (nW)")
    ax.set_title("average power during inference, per class")
    ax.legend(fontsize=7)
    return _save(fig, path)


def pruning_tradeoff(sweep: list[dict], path) -> Path:
    """Accuracy (ANN and array) and average power against the pruning ratio."""
    r = np.array([s["prune_ratio"] for s in sweep]) * 100
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(r, [s["ann_accuracy"] * 100 for s in sweep], "o-", label="ANN accuracy (test set)")
    ax.plot(r, [s["array_accuracy"] * 100 for s in sweep], "s-", label="array accuracy (twin)")
    ax.set_xlabel("pruning ratio (%)")
    ax.set_ylabel("accuracy (%)")
    ax2 = ax.twinx()
    ax2.plot(r, [s["power_w"] * 1e9 for s in sweep], "^--", color="tab:red", label="average power")
    ax2.set_ylabel("P_avg,array (nW)", color="tab:red")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="lower left")
    ax.set_title("accuracy against power over the pruning ratio")
    return _save(fig, path)


def spiking_tradeoff(spiking: dict, path, paper_w: dict | None = None) -> Path:
    """Accuracy (with its binomial standard error) and average power against the firing threshold,
    the spike voltage and the waveform, one panel each; {variant: reproduce.spiking_sweep points};
    the paper's power figures as dashed lines."""
    panels = (("threshold", "threshold (x the activation percentile)"), ("spike_v", "spike voltage (V)"),
              ("waveform", "spike waveform"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    markers = {"qt": "o", "qtpr": "s"}
    for ax, (parameter, xlabel) in zip(axes, panels):
        ax2 = ax.twinx()
        for name, points in spiking.items():
            pts = [p for p in points if p["parameter"] == parameter]
            if parameter == "waveform":
                x = np.arange(len(pts))
                ax.set_xticks(x, [f"{p['spike_shape']}, duty {p['spike_duty']:g}" for p in pts])
            else:
                x = np.array([p["value"] for p in pts], dtype=float)
            title = VARIANT_TITLES.get(name, name)
            ax.errorbar(x, [p["accuracy"] * 100 for p in pts], yerr=[p["standard_error"] * 100 for p in pts],
                        marker=markers.get(name, "o"), capsize=3, label=f"accuracy {title}",
                        color="tab:blue" if name == "qt" else "tab:green")
            ax2.plot(x, [p["power_w"] * 1e9 for p in pts], marker=markers.get(name, "o"), ls="--", color="tab:red"
                     if name == "qt" else "tab:orange", label=f"power {title}")
        for name, w in (paper_w or {}).items():
            ax2.axhline(w * 1e9, ls=":", lw=1.2, color="k" if name == "qt" else "tab:gray",
                        label=f"paper {VARIANT_TITLES.get(name, name)}: {w * 1e9:.0f} nW")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("array accuracy (%)")
        ax2.set_ylabel("P_avg,array (nW)", color="tab:red")
        ax2.set_ylim(bottom=0)
        if parameter == "threshold":
            lines = ax.get_legend_handles_labels()
            lines2 = ax2.get_legend_handles_labels()
            ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="center right")
    n = next(iter(spiking.values()))[0]["images"] if spiking else 0
    fig.suptitle(f"accuracy ({n} test images, +- binomial standard error) and power, one spiking choice at a time")
    return _save(fig, path)


SPIKING_CSV_HEADER = ("variant", "parameter", "threshold_multiple", "threshold", "spike_v", "spike_shape",
                      "spike_duty", "accuracy", "standard_error", "images", "power_w", "active_wordlines_per_step",
                      "conductance_per_active_wordline_s", "waveform_factor")


def spiking_tradeoff_csv(spiking: dict, path) -> Path:
    """The numbers of ``spiking_tradeoff``: one row per variant and sweep point (SI units)."""
    import csv

    path = Path(path)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SPIKING_CSV_HEADER)
        for name, points in spiking.items():
            for p in points:
                f = p["factors"]
                w.writerow([name, p["parameter"], f"{p['threshold_multiple']:.6g}", f"{p['threshold']:.6g}",
                            f"{p['spike_v']:g}", p["spike_shape"], f"{p['spike_duty']:g}", f"{p['accuracy']:.6g}",
                            f"{p['standard_error']:.6g}", p["images"], f"{p['power_w']:.6e}",
                            f"{f['active_wordlines_per_step']:.6g}", f"{f['conductance_per_active_wordline_s']:.6e}",
                            f"{f['waveform_factor']:.6g}"])
    return path


REPORT_FILES = ("ispp_trace.png", "tuned_states_cdf.png", "weight_maps.png", "confusion_matrices.png",
                "six_currents.png", "power_per_class.png", "pruning_tradeoff.png", "spiking_tradeoff.png",
                "spiking_tradeoff.csv")


def write_report(result, directory) -> list[Path]:
    """Every figure of a ReproduceResult into ``directory``; returns the paths written."""
    from rramlab.protocols.inference import confusion_matrix
    from rramlab.protocols.power import per_class
    from rramlab.protocols.reproduce import PAPER
    d = Path(directory)
    out = []
    if result.ispp_records:
        out.append(ispp_trace(result.ispp_records, d / "ispp_trace.png"))
    out.append(tuned_states_cdf({k: r.transfer_report["levels"] for k, r in result.runs.items()},
                                d / "tuned_states_cdf.png"))
    maps = {}
    for k, r in result.runs.items():
        v = result.network.variants[k]
        maps[f"{v.title}: target"] = v.targets_s()
        maps[f"{v.title}: achieved (twin)"] = np.asarray(r.transfer_report["achieved_conductance_map_s"])
    out.append(weight_maps(maps, d / "weight_maps.png"))
    out.append(confusion({result.network.variants[k].title: confusion_matrix([x.label for x in r.records],
                                                                             [x.prediction for x in r.records])
                          for k, r in result.runs.items()}, d / "confusion_matrices.png"))
    six = next((r.six for r in result.runs.values() if r.six is not None), None)
    if six is not None:
        name = next(k for k, r in result.runs.items() if r.six is six)
        out.append(image_currents(six, d / "six_currents.png",
                                  f"{result.network.variants[name].title} on the twin: test image {six.image}"))
    out.append(power_per_class({k: per_class(r.power) for k, r in result.runs.items()}, d / "power_per_class.png",
                               {"qt": PAPER["power.qt_w"], "qtpr": PAPER["power.qtpr_w"]}))
    if result.sweep:
        out.append(pruning_tradeoff(result.sweep, d / "pruning_tradeoff.png"))
    if result.spiking_sweep:
        out.append(spiking_tradeoff(result.spiking_sweep, d / "spiking_tradeoff.png",
                                    {"qt": PAPER["power.qt_w"], "qtpr": PAPER["power.qtpr_w"]}))
        out.append(spiking_tradeoff_csv(result.spiking_sweep, d / "spiking_tradeoff.csv"))
    return out
