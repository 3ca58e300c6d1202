"""``rramlab run``: an experiment recipe (TOML, ``protocols/recipe.py``) as one session.

    rramlab run examples/day.toml --chip-id W3-D12 --operator kim          # the twin
    rramlab run day.toml --bench lab.toml --chip-id W3-D12 --operator kim  # a probe station
    rramlab run day.toml --bench lab.toml --resume 4                        # continue session 4

The whole recipe is planned and checked before anything is connected (every step's plan against
the bench file's or the twin's limits and wiring, weight files, CSV files); a bad step is one line
naming its line in the file and nothing is sent. Then the bench-clock estimate, the session number,
and every step as a run of the session. Ctrl-C, SIGTERM or SIGHUP stop the step at a safe point
(outputs at 0 V, matrix open); ``--resume SESSION`` continues at the first unfinished step. Ctrl-Z
(or ``rramlab runs pause RUN`` with any of the session's runs) pauses at the step's next checkpoint,
as for every recording command (``app/pause.py``).
"""

from __future__ import annotations

import time


def register(subparsers) -> None:
    from rramlab.app.cli import COMMANDS, _add_backend_options, add_force_flag
    from rramlab.protocols.store import add_store_flag

    p = subparsers.add_parser(
        "run", help=COMMANDS["run"][1],
        description="Run an experiment recipe: [[step]] tables of a protocol (ispp, iv, map, ispva, endurance, "
                    "disturb, retention, transfer) with its settings over a cell, cells or a region, loops "
                    "(repeat, for) and waits; see examples/day.toml. Every step is planned and checked before "
                    "the first instrument command; the recipe runs as one session of the run store, each step "
                    "a run; --resume SESSION continues a stopped session at its first unfinished step.")
    p.add_argument("recipe", metavar="RECIPE.toml", help="the recipe file (TOML)")
    p.add_argument("--resume", type=int, metavar="SESSION", default=None,
                   help="continue session SESSION of this recipe (the number `rramlab run` printed): its finished "
                        "steps are skipped")
    p.add_argument("--check", action="store_true",
                   help="plan and check the recipe, print its steps and estimate, and stop (nothing is connected)")
    add_force_flag(p)
    add_store_flag(p)
    _add_backend_options(p)
    p.set_defaults(handler=cmd_run)


def _finished_csvs(store_path, session_id, recipe):
    """CSV files of the steps session ``session_id`` finished (written before: no --force needed)."""
    from rramlab.protocols.store import RunStore

    with RunStore(store_path) as st:
        done = st.finished_steps(session_id)
        st.session(session_id)  # a session that is not there: one line now, before anything else
    return [s.csv for s in recipe.steps if s.index in done and s.csv is not None]


def cmd_run(args) -> int:
    from rramlab.app.cli import (EXIT_ERROR, EXIT_OK, Stopped, check_backend_flags, interrupt_exit_code,
                                 open_backend_for_run, safe_state_text, say)
    from rramlab.app.outputs import OutputPath, chip_output, check_output_paths
    from rramlab.drivers.interface import RequestChecker, RramlabError
    from rramlab.protocols.recipe import load_recipe, plan_recipe, run_recipe
    from rramlab.protocols.store import RunStore

    recipe = load_recipe(args.recipe)  # a bad file or step: one line, before anything else
    check_backend_flags(args, True)
    check_output_paths([chip_output(args), OutputPath("--visa-log", args.visa_log, append=True)], force=args.force)
    if args.bench:
        from rramlab.drivers.probe_station import load_bench

        checker = load_bench(args.bench).checker()  # its limits and pin map: a bad step never connects
    else:
        checker = RequestChecker()
        if args.chip:
            from rramlab.sim.virtual_array import VirtualArray

            checker = VirtualArray.load_chip(args.chip)
    resume_files = _finished_csvs(args.store, args.resume, recipe) if args.resume is not None else []
    planned = plan_recipe(recipe, checker, force=args.force, resume_files=resume_files)
    print(f"{args.recipe}: {planned.summary()}", flush=True)
    if args.check:
        for ps in planned.steps:
            from rramlab.app.cmd_stress import format_duration

            print(f"  {ps.step.index + 1:3d}. {ps.step.label}: about {format_duration(ps.estimate_s)}")
        return EXIT_OK
    if not args.bench and args.engine is None and any(s.protocol == "transfer" for s in recipe.steps):
        args.engine = "fast"  # as `rramlab transfer` on the twin
    store = RunStore(args.store)
    claimed = None
    if args.resume is not None:
        from rramlab.protocols.recipe import claim_resume

        try:  # before the bench opens: a second resume of a live session, or a finished one, sends nothing
            claimed = claim_resume(store, args.resume, recipe)
        except BaseException:
            store.close()
            raise
    try:
        instrument, stopped = open_backend_for_run(args, True, store)
    except BaseException:
        if claimed is not None:  # the session is as it was: a later --resume continues it
            with RunStore(args.store) as again:
                again.release_session(claimed)
        raise
    if instrument is None:
        if claimed is not None:
            with RunStore(args.store) as again:
                again.release_session(claimed)
        return stopped
    state = {"step": None, "records": 0}
    session = {"id": args.resume}

    def started(session_id: int) -> None:
        session["id"] = session_id
        say(f"session {session_id} in {store.path} (a stopped session continues with "
            f"`rramlab run {args.recipe} --resume {session_id}`)")

    def on_record(step, record):
        state["step"], state["records"] = step, state["records"] + 1

    start = time.perf_counter()
    from rramlab.app.pause import cli_control

    try:
        # Ctrl-Z / `rramlab runs pause RUN` pause at the next checkpoint of the step (0 V, matrix open)
        with instrument, cli_control(instrument, "recipe") as control:
            done = run_recipe(planned, instrument, store, resume=args.resume, say=say, on_record=on_record,
                              save_chip=args.save_chip, command=["rramlab", *args.argv],
                              on_session=started, should_stop=control)
    except KeyboardInterrupt as exc:
        by = f" by {exc}" if isinstance(exc, Stopped) else ""
        where = f" in {state['step'].label}" if state["step"] is not None else ""
        sid = session["id"]
        kept = ""
        if sid is not None:
            finished = len(store.finished_steps(sid))
            kept = (f"; session {sid}: {finished} of {len(recipe.steps)} steps finished, every record kept; "
                    f"continue with: rramlab run {args.recipe} --resume {sid}")
        say(f"\ninterrupted{by}{where}; {safe_state_text(instrument, args)}{kept}")
        store.close()
        return interrupt_exit_code(exc)
    except (RramlabError, OSError, ValueError) as exc:
        from rramlab.app.outputs import describe_os_error

        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        sid = session["id"]
        say(f"rramlab run: error: {message}\n  {safe_state_text(instrument, args)}"
            + (f"; session {sid} stopped: fix the cause and continue with rramlab run {args.recipe} --resume {sid}"
               if sid is not None else ""))
        store.close()
        return EXIT_ERROR
    wall = time.perf_counter() - start
    runs = {r.run_id: r for r in store.session_runs(done.session_id)}
    store.close()
    skipped = f", {len(done.skipped)} finished before and skipped" if done.skipped else ""
    from rramlab.app.outputs import plural

    print(f"session {done.session_id} finished on the {instrument.backend_name}: {plural(len(recipe.steps), 'step')}"
          f"{skipped}, {wall:.1f} s of wall time; runs in {store.path}")
    for ps in planned.steps:
        run_id = done.runs.get(ps.step.index)
        if run_id is not None:
            r = runs[run_id]
            print(f"  {ps.step.label}: run {run_id}, {r.records} records"
                  + (f", {ps.step.csv}" if ps.step.csv else ""))
    return EXIT_OK
