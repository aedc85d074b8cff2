"""Fused sweeps driven from the driver: every member a trial, no process per member.

A fused sweep's members are trials of Tune's own search algorithms and
schedulers (hyperopt TPE, random, grid; asha, hyperband, median,
pareto-asha), but their epochs are trained by cohort workers
(:mod:`regtune.platform.tune.cohorts`). An earlier design ran each member as
a Tune trial actor that only relayed its epochs to its cohort worker: one
Ray worker process per concurrent member (~2 s of CPU each to start, a
Tune import) and Tune's controller handling every relayed result. Measured
on the sweep benchmark (40 trials, 2 CPUs) those relays and the controller
cost about twice the CPU time the members' training did.

:func:`run_fused_sweep` replaces Tune's controller for fused sweeps with
one loop in the driver that does what the controller did for members:

- asks the search algorithm for trials (Tune ``Trial`` objects with Tune's
  storage layout: ``trial_<id>/params.json``, ``result.json``,
  ``checkpoint_NNNNNN/regtune_state/``), at most ``fuse x slots`` running;
- sends each running member to the cohort manager, which forms cohorts and
  places them on workers, and keeps one epoch request per member in flight
  (the worker trains ahead between decision epochs, as before);
- passes each reported epoch to the callbacks (progress, the results store,
  the caller's), the search algorithm and the scheduler, and acts on the
  scheduler's decision: continue, stop (checkpoint, then leave the cohort)
  or pause (checkpoint, leave; HyperBand later chooses it to run again from
  that checkpoint);
- writes checkpoints (``checkpoint.every`` and at the end, newest
  :data:`~regtune.platform.tune.sweep.CHECKPOINTS_KEPT` kept), retries a
  failed member from its newest checkpoint up to ``failure.max_retries``,
  and stops every member when ``budget.time_limit_s`` runs out;
- saves its state (:data:`STATE_FILE`: the trials, their status and newest
  checkpoint; the search algorithm's own state beside it) after every
  change, so ``--resume`` continues a killed or interrupted fused sweep:
  finished trials are kept, the others continue from their newest
  checkpoint, and the scheduler from its saved state
  (:class:`~regtune.platform.tune.scheduler_state.PersistentScheduler`).

The search algorithm's state is a pickle written by Tune's own
``save_to_dir`` (as in an unfused sweep's experiment state): resume only
experiment folders you trust. Checkpoints are safetensors + JSON.
"""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher, SearchGenerator

from regtune.errors import RegtuneError
from regtune.platform.results.files import ResultsLocation
from regtune.platform.results.outcome import json_safe
from regtune.platform.tune.cohorts import REREPORT
from regtune.platform.tune.fused import STATE_DIR
from regtune.platform.tune.naming import FUSED_STATE_FILE, trial_dir_name
from regtune.platform.tune.ray_private import DONE

__all__ = [
    "SEARCH_DIR",
    "STATE_FILE",
    "ExperimentFiles",
    "FusedController",
    "FusedMemberName",
    "FusedRun",
    "is_fused_experiment",
    "outcome_rows",
    "run_fused_sweep",
]

#: The fused driver's state in the experiment folder (JSON).
STATE_FILE = FUSED_STATE_FILE
#: Folder (in the experiment folder) of the search algorithm's saved state.
SEARCH_DIR = "regtune-fused-search"
_FORMAT = 1
#: Seconds the loop waits for an epoch before it checks the time limit and
#: lets callbacks refresh the display.
_POLL_S = 0.5

#: A join answered as if its membership had left (a manager out of step with
#: the driver): the member fails and is retried like any failure.
JOINED_NOTHING = "trial {tid!r}: the cohort manager placed it nowhere (it took it as gone)"
NOT_TRAINED_BY_TUNE = (
    "a fused member's epochs are trained by its cohort worker; Tune does not run "
    "this trainable (it only names the members' trials)"
)


class FusedMemberName(tune.Trainable):
    """The trainable name a fused sweep's trials carry (never run by Tune)."""

    def step(self) -> dict[str, Any]:
        """Never called: the driver trains members in cohorts."""
        raise RuntimeError(NOT_TRAINED_BY_TUNE)


def _parse_record(rec: Any) -> dict[str, Any]:
    """One trial record of :data:`STATE_FILE`, checked and typed (what
    ``save_state`` writes). Raises KeyError, TypeError, ValueError or
    AttributeError on anything else: the caller refuses the file by name."""
    if not isinstance(rec["trial_id"], str) or not isinstance(rec["config"], dict):
        raise ValueError(f"a trial record needs a trial_id and a config; got {rec!r:.200}")
    last = rec.get("last_result") or {}
    if not isinstance(last, dict):
        raise ValueError(f"trial {rec['trial_id']}: last_result is not an object")
    return {
        "trial_id": rec["trial_id"],
        "config": rec["config"],
        "status": str(rec["status"]),
        "error": None if rec.get("error") is None else str(rec["error"]),
        "last_result": last,
        "checkpoints": [(str(folder), int(epoch)) for folder, epoch in rec.get("checkpoints", [])],
        "ckpt_index": int(rec.get("ckpt_index", 0)),
    }


def is_fused_experiment(exp_path: str) -> bool:
    """Whether ``exp_path`` (a local folder or a URI) holds a fused sweep's saved state."""
    try:
        return ExperimentFiles(exp_path).exists(STATE_FILE)
    except RegtuneError:
        return False


class ExperimentFiles:
    """The fused driver's files under an experiment folder (local or a URI).

    Whole files are written atomically (:class:`~regtune.platform.results.files.
    ResultsLocation`). ``result.json`` grows a line per epoch: appended on a
    local disk; on an object store (no appends) each trial's lines are kept
    and the file rewritten whole by :meth:`flush`, starting from the lines an
    earlier session stored (read on the first append, unless the caller
    knows there are none).
    """

    def __init__(self, exp_path: str) -> None:
        import pyarrow as pa
        import pyarrow.fs as pafs

        from regtune.errors import DataError

        if "://" not in exp_path:
            root = Path(exp_path).expanduser().resolve().as_posix()
            self.loc = ResultsLocation(fs=pafs.LocalFileSystem(), root=root, scheme="")
        else:
            try:
                fs, path = pafs.FileSystem.from_uri(exp_path)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
                raise DataError(
                    f"{exp_path!r} is not a usable experiment location ({exc}); expected a "
                    "local path or a URI such as s3://bucket/runs/name"
                ) from exc
            scheme = exp_path.split("://", 1)[0]
            self.loc = ResultsLocation(fs=fs, root=path.rstrip("/"), scheme=scheme)
        self._lines: dict[str, list[str]] = {}
        self._dirty: set[str] = set()

    def path(self, rel: str) -> str:
        """``rel`` under the experiment folder, on its filesystem."""
        return f"{self.loc.root}/{rel}"

    def exists(self, rel: str) -> bool:
        """Whether a file or folder is at ``rel``."""
        return self.loc.exists(self.path(rel))

    def read(self, rel: str) -> bytes:
        """The whole file at ``rel``."""
        return self.loc.read_bytes(self.path(rel))

    def write(self, rel: str, data: bytes) -> None:
        """Write the whole file at ``rel`` (atomic)."""
        self.loc.write_bytes(self.path(rel), data)

    def append_line(self, rel: str, line: str, *, new: bool = False) -> None:
        """Add a line to the file at ``rel`` (see the class docstring).

        ``new``: nothing is stored at ``rel`` (a file of this session's own),
        so on an object store the first line needs no request to find the
        lines an earlier session stored there.
        """
        if self.loc.is_local:
            folder = Path(self.path(rel)).parent
            folder.mkdir(parents=True, exist_ok=True)
            with open(self.path(rel), "a") as handle:
                handle.write(line + "\n")
            return
        if rel not in self._lines:
            # A resumed sweep: keep what earlier sessions wrote (rewritten whole).
            self._lines[rel] = [] if new else self._stored_lines(rel)
        self._lines[rel].append(line)
        self._dirty.add(rel)

    def _stored_lines(self, rel: str) -> list[str]:
        try:
            return self.read(rel).decode().splitlines()
        except FileNotFoundError:
            return []

    def flush(self) -> None:
        """Rewrite the files :meth:`append_line` added to since the last flush."""
        for rel in sorted(self._dirty):
            self.write(rel, ("\n".join(self._lines[rel]) + "\n").encode())
        self._dirty.clear()

    def write_folder(self, rel: str, files: dict[str, bytes]) -> None:
        """Write every file of ``files`` into the folder ``rel``."""
        for name, data in files.items():
            if Path(name).name != name:
                raise ValueError(f"state file name {name!r} is not a plain file name")
            self.write(f"{rel}/{name}", data)

    def read_folder(self, rel: str) -> dict[str, bytes]:
        """The files directly in the folder ``rel``: name -> bytes."""
        return {name: self.read(f"{rel}/{name}") for name in self.loc.list_files(self.path(rel))}

    def delete_folder(self, rel: str) -> None:
        """Remove the folder ``rel`` and everything in it; already gone is fine."""
        with contextlib.suppress(FileNotFoundError, OSError):
            self.loc.fs.delete_dir(self.path(rel))


class FusedController:
    """What Tune's schedulers ask of a controller, for the fused driver's trials."""

    def __init__(self, stop: Callable[[Trial], None]) -> None:
        self.trials: list[Trial] = []
        self._stop = stop

    def get_trials(self) -> list[Trial]:
        """Every trial of the sweep, in creation order."""
        return list(self.trials)

    def get_live_trials(self) -> list[Trial]:
        """Trials not ended yet."""
        return [t for t in self.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]

    def stop_trial(self, trial: Trial) -> None:
        """A scheduler ends ``trial`` now (see :meth:`_Loop.stop_now`)."""
        self._stop(trial)


class _Member:
    """The driver's view of one running member."""

    def __init__(
        self, trial: Trial, files: dict[str, bytes] | None, start_iter: int, gen: int
    ) -> None:
        self.trial = trial
        #: This membership's generation: the manager tells a late call of an
        #: earlier try of the trial from this one's (calls may run out of order).
        self.gen = gen
        self.files = files
        self.worker: Any = None
        self.iteration = start_iter
        self.restored_at = start_iter
        self.started = time.time()
        #: Training seconds before this start (a restore carries them on).
        self.time_before = float((trial.last_result or {}).get("time_total_s", 0.0) or 0.0)
        self.failures = 0


class FusedRun(NamedTuple):
    """What :func:`run_fused_sweep` returns."""

    #: The sweep's trials as :func:`outcome_rows`.
    rows: list[Any]
    #: Ctrl+C (SIGINT) stopped the loop: the trials it left running are saved
    #: running, and ``--resume`` continues them. False for a sweep that ended by
    #: itself, ``budget.time_limit_s`` included (its cut-off trials wait PENDING).
    interrupted: bool


def run_fused_sweep(
    spec: Any,
    *,
    manager: Any,
    max_concurrent: int,
    exp_path: str,
    name: str,
    root: str,
    resume: bool,
    callbacks: Sequence[Any],
    search_alg: Any,
    scheduler: Any,
    param_space: dict[str, Any],
) -> FusedRun:
    """Run a fused sweep to its end (or to Ctrl+C) and return its trials as
    :func:`outcome_rows`, and whether Ctrl+C stopped it (:class:`FusedRun`).

    ``manager`` is the sweep's cohort manager
    (:func:`~regtune.platform.tune.fused.start_fused`); ``search_alg`` and
    ``scheduler`` are the spec's (``build_search_alg`` / ``build_scheduler``);
    ``callbacks`` get Tune's callback hooks with the members' trials.

    Raises:
        RegtuneError: the saved state of a resumed sweep cannot be read.
    """
    loop = _Loop(
        spec,
        manager=manager,
        max_concurrent=max_concurrent,
        exp_path=exp_path,
        name=name,
        root=root,
        callbacks=callbacks,
        search_alg=search_alg,
        scheduler=scheduler,
    )
    with _ctrl_c_stops(loop.interrupted):
        loop.setup(param_space, resume=resume)
        # On an error or a second Ctrl+C (anywhere, maybe mid-change) the last
        # state saved stands; epochs reported since are written out by end().
        try:
            loop.run()
            if loop.interrupted.is_set():
                # Ctrl+C, like Tune: the state is saved and what is there
                # returned (--resume continues).
                loop.save_state()
        finally:
            loop.end()
    return FusedRun(
        outcome_rows(loop.ctrl.trials, exp_path, loop.errors), loop.interrupted.is_set()
    )


@contextlib.contextmanager
def _ctrl_c_stops(interrupted: threading.Event) -> Iterator[None]:
    """The first Ctrl+C sets ``interrupted`` (the loop stops between two
    events, so no trial is left half-ended); a second one interrupts at once.

    Installed for the whole run: an earlier Tune run in this process (an
    unfused sweep) leaves Tune's own SIGINT handler behind, which sets a flag
    nothing here reads. The previous handler is put back afterwards. (Only
    the main thread can set handlers; elsewhere nothing changes.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        # None: a handler not set from Python; Python's own is the fallback.
        signal.signal(
            signal.SIGINT, previous if previous is not None else signal.default_int_handler
        )


class _Loop:
    """The fused driver's event loop (see the module docstring)."""

    def __init__(
        self,
        spec: Any,
        *,
        manager: Any,
        max_concurrent: int,
        exp_path: str,
        name: str,
        root: str,
        callbacks: Sequence[Any],
        search_alg: Any,
        scheduler: Any,
    ) -> None:
        self.spec = spec
        self.manager = manager
        self.max_concurrent = max(1, max_concurrent)
        self.exp_path = exp_path
        self.files = ExperimentFiles(exp_path)
        self.name = name
        self.root = root
        self.callbacks = list(callbacks)
        # Tune drives a Searcher (hyperopt) through a SearchGenerator, as here.
        wrap = isinstance(search_alg, Searcher)
        self.search = SearchGenerator(search_alg) if wrap else search_alg
        self.scheduler = scheduler
        self.ctrl = FusedController(self.stop_now)
        #: Error text of trials that failed for good (kept across a resume).
        self.errors: dict[str, str] = {}
        #: Set by Ctrl+C: the loop stops between two events and saves its state.
        self.interrupted = threading.Event()
        #: ``budget.time_limit_s`` ran out (see :meth:`_time_limit`).
        self.out_of_time = False
        #: The search algorithm's saved state: ``SEARCH_DIR/<version>``.
        self.search_version = 0
        self._storage: Any = None
        #: Trials this session's search algorithm made (none of them restored):
        #: nothing can be stored in their folders yet (see :meth:`_admit`).
        self._new: set[str] = set()
        #: Trials whose ``params.json`` is known stored (written or found).
        self._params: set[str] = set()
        self.running: dict[str, _Member] = {}
        #: In-flight calls: object ref -> (kind, the member that made it). A
        #: member is matched by identity: a retried trial is a new member, and
        #: an answer to the old one's call is dropped.
        self.pending: dict[Any, tuple[str, _Member]] = {}
        #: Per trial: newest checkpoints (folder, epoch), oldest first; index counter.
        self.checkpoints: dict[str, list[tuple[str, int]]] = {}
        self.ckpt_index: dict[str, int] = {}
        self.max_t = int(spec.budget.max_epochs)
        self.every = int(spec.checkpoint.every)
        self.max_retries = int(spec.failure.max_retries)
        self.failures: dict[str, int] = {}
        self.deadline = (
            None
            if spec.budget.time_limit_s is None
            else time.monotonic() + float(spec.budget.time_limit_s)
        )
        self.iteration = 0
        #: Memberships started so far (each member's generation).
        self.generations = 0
        self.max_pending = _max_pending(self.search)
        first = spec.objectives[0]
        self.metric, self.mode = first.metric, first.mode

    # -- set-up and state -------------------------------------------------------------

    def setup(self, param_space: dict[str, Any], *, resume: bool) -> None:
        """Search algorithm, scheduler and callbacks ready; a resumed sweep's trials back."""
        from regtune.platform.tune.sweep import CHECKPOINTS_KEPT

        self.keep = CHECKPOINTS_KEPT
        self.search.set_search_properties(self.metric, self.mode, param_space)
        self.scheduler.set_search_properties(self.metric, self.mode)
        experiment = tune.Experiment(
            self.name,
            FusedMemberName,
            config=param_space,
            num_samples=self.spec.budget.samples,
            storage_path=self.root,
            trial_name_creator=trial_dir_name,
            trial_dirname_creator=trial_dir_name,
        )
        self.search.add_configurations([experiment])
        for cb in self.callbacks:
            cb.setup(stop=None, num_samples=self.spec.budget.samples)
        if resume:
            self._restore()

    def _restore(self) -> None:
        where = self.files.loc.display(self.files.path(STATE_FILE))
        try:
            state = json.loads(self.files.read(STATE_FILE))
            if state.get("format") != _FORMAT:
                raise ValueError(f"format {state.get('format')!r}, expected {_FORMAT}")
            records = [_parse_record(rec) for rec in state["trials"]]
            self.search_version = int(state["search"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegtuneError(
                f"cannot resume the fused sweep: {where} is unreadable ({exc}); nothing was changed"
            ) from exc
        search_dir = f"{SEARCH_DIR}/{self.search_version}"
        if self.search_version and not self.files.exists(search_dir):
            raise RegtuneError(
                f"cannot resume the fused sweep: {where} names the search state "
                f"{self.files.loc.display(self.files.path(search_dir))}, which is missing; "
                "nothing was changed"
            )
        if self.search_version:
            with tempfile.TemporaryDirectory(prefix="regtune-search-") as tmp:
                for name, data in self.files.read_folder(search_dir).items():
                    Path(tmp, name).write_bytes(data)
                self.search.restore_from_dir(tmp)
        for rec in records:
            trial = self._make_trial(rec["trial_id"], rec["config"])
            # Ended and paused trials stay so (HyperBand resumes a paused one when
            # its bracket says); a running one waits to continue from its checkpoint.
            status = rec["status"]
            trial.set_status(status if status in (*_ENDED, Trial.PAUSED) else Trial.PENDING)
            if rec["error"]:
                self.errors[trial.trial_id] = rec["error"]
            if rec["last_result"]:
                trial.update_last_result(rec["last_result"])
            self.checkpoints[trial.trial_id] = rec["checkpoints"]
            self.ckpt_index[trial.trial_id] = rec["ckpt_index"]
            self._register(trial)
            self.ctrl.trials.append(trial)
            self.scheduler.on_trial_add(self.ctrl, trial)
        for trial in self.ctrl.trials:
            # Ended trials' ends again (no-ops where the saved scheduler and
            # searcher already had them): a kill may have come between the
            # driver's state and theirs.
            if trial.status == Trial.TERMINATED:
                self.scheduler.on_trial_complete(self.ctrl, trial, dict(trial.last_result))
                self.search.on_trial_complete(trial.trial_id, result=dict(trial.last_result))
            elif trial.status == Trial.ERROR:
                self.scheduler.on_trial_error(self.ctrl, trial)
                self.search.on_trial_complete(trial.trial_id, result=None, error=True)

    def _make_trial(self, trial_id: str, config: dict[str, Any]) -> Trial:
        from regtune.platform.tune.ray_private import experiment_storage

        if self._storage is None:
            # One storage context (its filesystem checked once); Trial copies it.
            self._storage = experiment_storage(self.root, self.name)
        trial = Trial(
            "FusedMemberName", config=config, trial_id=trial_id, stub=True, storage=self._storage
        )
        assert trial.storage is not None  # given above
        trial.storage.trial_dir_name = trial_dir_name(trial)
        return trial

    def save_state(self) -> None:
        """Write :data:`STATE_FILE` and the search algorithm's state (atomic replace)."""
        records = []
        for t in self.ctrl.trials:
            records.append(
                {
                    "trial_id": t.trial_id,
                    "config": json_safe(t.config),
                    "status": t.status,
                    "last_result": json_safe(
                        {k: v for k, v in (t.last_result or {}).items() if k != "config"}
                    ),
                    "checkpoints": self.checkpoints.get(t.trial_id, []),
                    "ckpt_index": self.ckpt_index.get(t.trial_id, 0),
                    "error": self.errors.get(t.trial_id),
                }
            )
        # The search algorithm's state goes to a new folder each time, named in
        # the state file: killed between the two writes, a resume reads the pair
        # that was saved together.
        version = self.search_version + 1
        with tempfile.TemporaryDirectory(prefix="regtune-search-") as tmp:
            self.search.save_to_dir(tmp, session_str="fused")
            self.files.write_folder(
                f"{SEARCH_DIR}/{version}",
                {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()},
            )
        # Every epoch a resumed sweep will not rerun is stored before the state says so.
        for cb in self.callbacks:
            cb.get_state()
        self.files.flush()
        state = {"format": _FORMAT, "search": version, "trials": records}
        self.files.write(STATE_FILE, json.dumps(state).encode())
        if self.search_version:
            self.files.delete_folder(f"{SEARCH_DIR}/{self.search_version}")
        self.search_version = version

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Until every trial ended and the search algorithm has no more."""
        while not self.interrupted.is_set():
            self._fill()
            if not self.pending:
                if self._nothing_left():
                    break
                continue
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=_POLL_S)
            for ref in ready:
                if ref not in self.pending:
                    continue  # its member left while this one was handled
                kind, member = self.pending.pop(ref)
                if self.running.get(member.trial.trial_id) is not member:
                    continue
                if kind == "join":
                    self._joined(member, ref)
                else:
                    self._stepped(member, ref)
            self._time_limit()
            self.iteration += 1
            for cb in self.callbacks:
                cb.on_step_end(iteration=self.iteration, trials=self.ctrl.trials)

    def _nothing_left(self) -> bool:
        if self.search.is_finished() and not any(
            t.status in (Trial.PENDING, Trial.PAUSED) for t in self.ctrl.trials
        ):
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return True
        # Nothing running and nothing the scheduler would run: waiting would spin.
        self._admit()
        return not self.running and self.scheduler.choose_trial_to_run(self.ctrl) is None

    def _admit(self) -> None:
        """Take new trials from the search algorithm while fewer than
        ``max_pending`` wait (Tune's rule: a scheduler such as HyperBand
        places every pending trial in a bracket before any of them runs)."""
        added = False
        while not self.search.is_finished() and self._pending_count() < self.max_pending:
            new = self.search.next_trial()
            if new is None:
                break
            trial = self._make_trial(new.trial_id, new.config)
            trial.set_status(Trial.PENDING)
            if not any(t.trial_id == new.trial_id for t in self.ctrl.trials):
                # A new id (Tune's are unique): the experiment was new, or the
                # state file lists every trial that ever had a folder (saved
                # below, before the trial starts).
                self._new.add(new.trial_id)
            self.ctrl.trials.append(trial)
            self.scheduler.on_trial_add(self.ctrl, trial)
            added = True
        if added:
            self.save_state()

    def _pending_count(self) -> int:
        return sum(1 for t in self.ctrl.trials if t.status == Trial.PENDING)

    def _fill(self) -> None:
        """Start trials the scheduler chooses while fewer than ``max_concurrent`` run."""
        self._admit()
        out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
        while len(self.running) < self.max_concurrent and not out_of_time:
            trial = self.scheduler.choose_trial_to_run(self.ctrl)
            if trial is None:
                return
            self._start(trial)
            self._admit()

    def _start(self, trial: Trial, lost: Any = None) -> None:
        """Send ``trial`` to a cohort, from its newest checkpoint when it has one
        (``lost``: the cohort worker its last try found dead)."""
        files, at = None, 0
        newest = self.checkpoints.get(trial.trial_id)
        if newest:
            folder, at = newest[-1]
            files = self.files.read_folder(f"{folder}/{STATE_DIR}")
        trial.set_status(Trial.RUNNING)
        self.generations += 1
        member = _Member(trial, files, at, self.generations)
        member.failures = self.failures.get(trial.trial_id, 0)
        self.running[trial.trial_id] = member
        self._write_params(trial)
        for cb in self.callbacks:
            cb.on_trial_start(iteration=self.iteration, trials=self.ctrl.trials, trial=trial)
        self._join(member, lost)

    def _join(self, member: _Member, lost: Any = None) -> None:
        tid = member.trial.trial_id
        config = dict(member.trial.config)
        ref = self.manager.join.remote(tid, config, member.files, member.gen, lost)
        self.pending[ref] = ("join", member)

    def _joined(self, member: _Member, ref: Any) -> None:
        try:
            (member.worker,) = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._failed(member, exc)
            return
        if member.worker is None:
            # Only a membership that had left is answered so; this one has not.
            self._failed(member, RuntimeError(JOINED_NOTHING.format(tid=member.trial.trial_id)))
            return
        member.files = None
        if self.out_of_time:
            self._shelve(member)
            return
        self._ask(member)

    def _ask(self, member: _Member) -> None:
        self.pending[member.worker.step.remote(member.trial.trial_id)] = ("step", member)

    def _stepped(self, member: _Member, ref: Any) -> None:
        """One epoch of a member: report it, then do what the scheduler decides
        (in the order Tune's controller does: a finished member is not judged;
        a stopped one's result says ``done``; the searcher hears only of
        epochs after which the member goes on)."""
        trial = member.trial
        try:
            row: dict[str, Any] = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._failed(member, exc)
            return
        rereport = bool(row.pop(REREPORT, False))
        if not rereport:
            member.iteration += 1
        done = bool(row.pop(DONE, False)) or member.iteration >= self.max_t
        now = time.time()
        result = {
            **row,
            "training_iteration": member.iteration,
            "iterations_since_restore": member.iteration - member.restored_at,
            "trial_id": trial.trial_id,
            "time_total_s": member.time_before + (now - member.started),
            "timestamp": int(now),
            "done": done,
            # As Tune's own results carry it: the results store's config.*
            # columns (what analysis reads as swept) come from here.
            "config": trial.config,
        }
        trial.update_last_result(result)
        decision = TrialScheduler.STOP
        if not done and not self.out_of_time:
            decision = self.scheduler.on_trial_result(self.ctrl, trial, result)
            if decision == TrialScheduler.STOP:
                result["done"] = True
                trial.update_last_result(result)
            else:
                self.search.on_trial_result(trial.trial_id, result)
        self._append_result(trial, result)
        for cb in self.callbacks:
            cb.on_trial_result(
                iteration=self.iteration, trials=self.ctrl.trials, trial=trial, result=result
            )
        if self.running.get(trial.trial_id) is not member:
            return  # a callback or the scheduler ended it meanwhile
        if decision == TrialScheduler.STOP:
            self._end(member, result)
        elif decision == TrialScheduler.PAUSE:
            failure = self._checkpoint(member)
            if failure is not None:
                # Paused as the scheduler decided, from its older checkpoint.
                self._failed(member, failure, then=Trial.PAUSED)
                return
            self._leave(member)
            trial.set_status(Trial.PAUSED)
            self.save_state()
        else:
            if self.every > 0 and member.iteration % self.every == 0:
                failure = self._checkpoint(member)
                if failure is not None:
                    self._failed(member, failure)
                    return
                self.save_state()
            self._ask(member)

    def _end(self, member: _Member, result: dict[str, Any]) -> None:
        """A member ran out its epochs or a scheduler stopped it: checkpoint,
        leave, report (a failed checkpoint makes it a failure instead)."""
        trial = member.trial
        failure = self._checkpoint(member)
        if failure is not None:
            self._failed(member, failure)
            return
        self._leave(member)
        trial.set_status(Trial.TERMINATED)
        # Saved before the scheduler and searcher hear of it (once: a resumed
        # sweep tells them again, idempotently, so nothing after needs saving).
        self.save_state()
        self.scheduler.on_trial_complete(self.ctrl, trial, result)
        self.search.on_trial_complete(trial.trial_id, result=result)
        for cb in self.callbacks:
            cb.on_trial_complete(iteration=self.iteration, trials=self.ctrl.trials, trial=trial)

    def _leave(self, member: _Member) -> None:
        tid = member.trial.trial_id
        self.running.pop(tid, None)
        for ref, (_, owner) in list(self.pending.items()):
            if owner is member:
                del self.pending[ref]
        self.manager.leave.remote(tid, member.gen)

    def _failed(self, member: _Member, exc: BaseException, *, then: str = Trial.PENDING) -> None:
        """A cohort failed the member (an epoch or its checkpoint raised, or its
        worker died): while retries remain, it goes on from its newest
        checkpoint (at once; with ``then=PAUSED``, when the scheduler chooses
        it again, as a member it had paused); else it ends as failed."""
        trial = member.trial
        tid = trial.trial_id
        dead = None
        if isinstance(exc, ray.exceptions.RayActorError) and member.worker is not None:
            dead = member.worker  # its cohort worker died: the pool replaces it
        retries_left = member.failures < self.max_retries
        retry_now = then == Trial.PENDING and not self.out_of_time and retries_left
        if dead is not None and not retry_now:
            # Told once: a retry starting now tells it in its own join instead
            # (Ray may run that join before a separate report of it).
            self.manager.lost.remote(dead)
        if self.out_of_time:
            # No retry after the time ran out: it waits to be resumed.
            self._shelve(member)
            return
        self._leave(member)
        self.failures[tid] = member.failures + 1
        if retries_left:
            trial.set_status(then)
            for cb in self.callbacks:
                cb.on_trial_recover(iteration=self.iteration, trials=self.ctrl.trials, trial=trial)
            if retry_now:
                self._start(trial, lost=dead)
            else:
                self.save_state()
            return
        trial.set_status(Trial.ERROR)
        self.errors[tid] = f"{type(exc).__name__}: {exc}"
        # Saved first, once: a resumed sweep tells the scheduler again (idempotent).
        self.save_state()
        self.scheduler.on_trial_error(self.ctrl, trial)
        self.search.on_trial_complete(tid, result=None, error=True)
        for cb in self.callbacks:
            cb.on_trial_error(iteration=self.iteration, trials=self.ctrl.trials, trial=trial)

    def stop_now(self, trial: Trial) -> None:
        """Tune's ``stop_trial``, at once (HyperBand ending a bracket's trials;
        :class:`~regtune.platform.tune.scheduler_state.PersistentScheduler`
        stopping again a trial it had stopped before a kill): a running member
        ends at its last reported epoch; a pending or paused one is removed
        from the scheduler, as Tune does."""
        if trial.status in _ENDED:
            return
        member = self.running.get(trial.trial_id)
        if member is not None:
            self._end(member, dict(trial.last_result or {}))
            return
        trial.set_status(Trial.TERMINATED)
        # Saved once, before the scheduler and searcher hear of it (as in
        # _end): a resumed sweep tells them again, idempotently. Saved only
        # after them, a kill in between could leave the trial waiting in the
        # driver's state while the scheduler's saved state has let go of it.
        self.save_state()
        self.scheduler.on_trial_remove(self.ctrl, trial)
        # The searcher keeps what the trial reported (TPE learns from it).
        last = dict(trial.last_result or {})
        self.search.on_trial_complete(trial.trial_id, result=last if self.metric in last else None)
        for cb in self.callbacks:
            cb.on_trial_complete(iteration=self.iteration, trials=self.ctrl.trials, trial=trial)

    def _time_limit(self) -> None:
        """Out of time: no member starts or asks for another epoch; each running
        one ends at the epoch it is training (reported, then checkpointed, so
        its checkpoint is that epoch's state); one still joining waits as it was."""
        if self.out_of_time or self.deadline is None or time.monotonic() < self.deadline:
            return
        self.out_of_time = True
        for member in list(self.running.values()):
            if member.worker is None:
                self._shelve(member)

    def _shelve(self, member: _Member) -> None:
        """Out of time before the member's next epoch here: it leaves, and
        waits to be resumed."""
        self._leave(member)
        # Pending (not paused): every scheduler here runs a pending trial again,
        # and _start continues it from its newest checkpoint.
        member.trial.set_status(Trial.PENDING)
        self.save_state()

    def end(self) -> None:
        """Callbacks' experiment end (the results store merges its parts)."""
        self.files.flush()
        for cb in self.callbacks:
            cb.on_experiment_end(trials=self.ctrl.trials)

    # -- files --------------------------------------------------------------------------

    def _write_params(self, trial: Trial) -> None:
        """Write ``params.json`` once per trial; one stored already is kept."""
        tid = trial.trial_id
        if tid in self._params:
            return
        rel = f"{trial_dir_name(trial)}/params.json"
        if tid in self._new or not self.files.exists(rel):
            self.files.write(rel, json.dumps(json_safe(trial.config), indent=2).encode())
        self._params.add(tid)

    def _append_result(self, trial: Trial, result: dict[str, Any]) -> None:
        line = json.dumps(json_safe(result))
        rel = f"{trial_dir_name(trial)}/result.json"
        self.files.append_line(rel, line, new=trial.trial_id in self._new)

    def _checkpoint(self, member: _Member) -> BaseException | None:
        """Write the member's state as ``checkpoint_NNNNNN/regtune_state`` at
        its last reported epoch (once per epoch); the error when its cohort
        could not give it (the caller handles the failure). A member whose next
        epoch was already handed out (it moved on) keeps its older checkpoint."""
        from ray.train import Checkpoint

        trial, tid = member.trial, member.trial.trial_id
        saved = self.checkpoints.setdefault(tid, [])
        if (saved and saved[-1][1] == member.iteration) or member.worker is None:
            return None
        try:
            files = ray.get(member.worker.state_files.remote(tid, member.iteration))
        except ray.exceptions.RayError as exc:
            return exc
        if files is None:
            return None
        index = self.ckpt_index.get(tid, 0)
        folder = f"{trial_dir_name(trial)}/checkpoint_{index:06d}"
        self.files.write_folder(f"{folder}/{STATE_DIR}", files)
        self.ckpt_index[tid] = index + 1
        saved.append((folder, member.iteration))
        while len(saved) > self.keep:
            old, _ = saved.pop(0)
            self.files.delete_folder(old)
        self._register(trial)
        checkpoint = Checkpoint(self.files.path(folder), filesystem=self.files.loc.fs)
        for cb in self.callbacks:
            cb.on_checkpoint(
                iteration=self.iteration,
                trials=self.ctrl.trials,
                trial=trial,
                checkpoint=checkpoint,
            )
        return None

    def _register(self, trial: Trial) -> None:
        """Make ``trial.checkpoint`` its newest kept checkpoint (Tune's view of it)."""
        from regtune.platform.tune.ray_private import set_registered_checkpoints

        saved = self.checkpoints.get(trial.trial_id, [])
        if saved:
            metrics = dict(trial.last_result or {})
            set_registered_checkpoints(
                trial, [(self.files.path(folder), metrics) for folder, _ in saved]
            )


_ENDED = (Trial.TERMINATED, Trial.ERROR)
#: Pending trials a grid or random search may hold (Tune's own minimum).
_MAX_PENDING_VARIANTS = 200


def _max_pending(search: Any) -> int:
    """Trials created ahead of running, by Tune's rule: a grid or random
    search's all (up to :data:`_MAX_PENDING_VARIANTS`), a searcher behind a
    concurrency limit that limit, any other searcher one at a time."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if isinstance(search, BasicVariantGenerator):
        return _MAX_PENDING_VARIANTS
    inner = getattr(search, "searcher", None)
    while inner is not None:
        if isinstance(inner, ConcurrencyLimiter):
            return max(1, int(inner.max_concurrent))
        inner = getattr(inner, "searcher", None)
    return 1


class _Row:
    """One trial as ``outcome_from_grid`` reads a ``ResultGrid`` entry."""

    def __init__(self, trial: Trial, exp_path: str, errors: dict[str, str]) -> None:
        self.metrics = dict(trial.last_result or {})
        self.config = dict(trial.config)
        self.path = f"{exp_path.rstrip('/')}/trial_{trial.trial_id}"
        self.error = errors.get(trial.trial_id, "failed") if trial.status == Trial.ERROR else None
        self.checkpoint = trial.checkpoint


def outcome_rows(
    trials: Sequence[Trial], exp_path: str, errors: dict[str, str] | None = None
) -> list[Any]:
    """The fused driver's trials as ``ResultGrid``-like rows for
    :func:`~regtune.platform.results.outcome.outcome_from_grid` (``errors``:
    the error text of failed trials)."""
    return [_Row(t, exp_path, errors or {}) for t in trials]
