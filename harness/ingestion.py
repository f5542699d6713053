"""Local ingestion: run a code directory's `Model` under the AutoSpeech protocol (SPEC.md).

The model lives in a child process that the parent drives one call at a time, so the
parent holds the clock: a `train` or `test` call that would overrun the remaining budget
is killed, not trusted to stop. Every prediction is written to disk as it arrives, and
`ingestion.json` is rewritten (atomically) after every event, so a crash, a hang or a kill
of the parent itself never loses what was already delivered.
"""

from __future__ import annotations

import importlib.util
import io
import json
import multiprocessing
import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from harness.dataset import atomic_write_bytes, atomic_write_json, read_meta, resolve_data_dir
from harness.errors import IngestionError

INIT_TIMEOUT_S = 20 * 60
IPC_GRACE_S = 0.5
POLL_S = 0.2
PLATFORM_META_KEYS = ("class_num", "train_num", "test_num", "time_budget", "sample_rate", "file_format")


@dataclass
class IngestionReport:
    """What happened in one run; mirrored to `<out>/ingestion.json` after every event."""

    dataset: str
    code_dir: str
    time_budget: float
    status: str = "running"  # running|done|stopped|timeout|init_timeout|crash|bad_prediction
    error: str | None = None
    init_s: float | None = None
    charged_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    done_training: bool = False
    rounds: list = field(default_factory=list)
    predictions: list = field(default_factory=list)


# --------------------------------------------------------------------------- child side


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _float_or_none(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _forget_shadowed_modules(code_dir: Path) -> None:
    """Drop loaded modules that `code_dir` provides itself, so the model imports its own copies.

    The child serving the model runs this checkout's `harness` (and, through it, parts of the
    runtime); without this, a model from another checkout that imports `harness` or
    `portfolio` would get this checkout's copies from `sys.modules`.
    Functions already imported keep working: they hold references, not names.
    """
    code_dir = code_dir.resolve()
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        provided = (code_dir / top).is_dir() or (code_dir / f"{top}.py").is_file()
        origin = getattr(module, "__file__", None)
        if provided and origin and code_dir not in Path(origin).resolve().parents:
            del sys.modules[name]


def _load_model_class(code_dir: Path):
    """Import `model.py` from `code_dir` the way the platform does: code_dir first on sys.path."""
    _forget_shadowed_modules(code_dir)
    sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location("model", code_dir / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module
    spec.loader.exec_module(module)
    return module.Model


def _child_main(conn, data_dir: str, code_dir: str, metadata: dict, log_path: str, model_env: dict) -> None:
    """Child process: load data, build the model, then serve train/test calls until told to stop."""
    os.setsid()  # own process group, so the parent can kill everything the model spawned
    os.environ.update(model_env)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.stderr = sys.stdout
    try:
        from harness.dataset import read_dataset

        dataset = read_dataset(data_dir, with_solution=False)
        model_class = _load_model_class(Path(code_dir))
        start = time.monotonic()
        model = model_class(metadata)
        conn.send(("ok", time.monotonic() - start, _peak_rss_mb(), bool(getattr(model, "done_training", False)), None))
    except BaseException:
        conn.send(("crash", 0.0, _peak_rss_mb(), False, traceback.format_exc()))
        return
    train_data = (dataset.x_train, dataset.y_train)
    while True:
        command, remaining = conn.recv()
        if command == "stop":
            return
        try:
            start = time.monotonic()
            if command == "train":
                model.train(train_data, remaining_time_budget=remaining)
                payload = None
            else:
                payload = model.test(dataset.x_test, remaining_time_budget=remaining)
            duration = time.monotonic() - start
            if payload is not None:
                # A model may expose the validation score of what it returned: recorded, never trusted.
                payload = (np.asarray(payload, dtype=np.float64), _float_or_none(getattr(model, "validation_score", None)))
            conn.send(("ok", duration, _peak_rss_mb(), bool(getattr(model, "done_training", False)), payload))
        except BaseException:
            conn.send(("crash", time.monotonic() - start, _peak_rss_mb(), False, traceback.format_exc()))
            return


# --------------------------------------------------------------------------- parent side


class _Child:
    """The parent's handle on the model process: send a call, wait with a hard deadline."""

    def __init__(self, data_dir: Path, code_dir: Path, metadata: dict, log_path: Path, model_env: dict):
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_child_main,
            args=(child_conn, str(data_dir), str(code_dir), metadata, str(log_path), model_env),
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        self.peak_rss_mb = 0.0

    def _sample_rss(self) -> None:
        """Peak resident memory of the model process and everything it spawned."""
        try:
            proc = psutil.Process(self.process.pid)
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            return
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)

    def wait(self, timeout_s: float):
        """Return the child's reply, "timeout" if the deadline passes, or "died" if it exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._sample_rss()
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                if self.conn.poll(min(POLL_S, left)):
                    reply = self.conn.recv()
                    self.peak_rss_mb = max(self.peak_rss_mb, reply[2])
                    return reply
            except (EOFError, OSError):
                return "died"
            if not self.process.is_alive() and not self.conn.poll(0):
                return "died"

    def call(self, command: str, remaining_s: float):
        self.conn.send((command, remaining_s))
        return self.wait(remaining_s + IPC_GRACE_S)

    def close(self) -> None:
        """Stop politely if possible, then kill the whole process group."""
        if self.process.is_alive():
            try:
                self.conn.send(("stop", 0.0))
                self.process.join(timeout=2.0)
            except (OSError, BrokenPipeError):
                pass
        if self.process.is_alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.join(timeout=5.0)


def _died_message(process) -> str:
    """Why the model process stopped answering; its pipe can close a moment before it has exited."""
    process.join(timeout=2.0)
    code = process.exitcode
    if code is not None and code < 0 and -code == signal.SIGKILL:
        return f"model process was killed (SIGKILL, exit code {code}; out of memory?)"
    return f"model process exited without a reply (exit code {code})"


def check_prediction(prediction: np.ndarray, test_num: int, class_num: int) -> str | None:
    """Return why a prediction is unusable, or None if it is fine."""
    if prediction.shape != (test_num, class_num):
        return f"prediction must have shape ({test_num}, {class_num}), got {prediction.shape}"
    if not np.all(np.isfinite(prediction)):
        return f"prediction must be finite, got {int(np.sum(~np.isfinite(prediction)))} non-finite values"
    return None


def run_ingestion(
    dataset: str | os.PathLike,
    code_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    time_budget: float | None = None,
    init_timeout_s: float = INIT_TIMEOUT_S,
    model_env: dict | None = None,
) -> IngestionReport:
    """Run `code_dir/model.py` on `dataset` and write predictions + ingestion.json to `out_dir`.

    `time_budget` overrides meta.json's (and is what the model sees in its metadata);
    `model_env` is added to the model process's environment (e.g. a plan to run).
    """
    data_dir = resolve_data_dir(dataset)
    code_dir = Path(code_dir).resolve()
    if not (code_dir / "model.py").is_file():
        raise IngestionError(f"code directory {str(code_dir)!r} must contain model.py")
    # Only the keys the platform gives (SPEC.md); suite extras such as `domain` stay hidden.
    metadata = {k: v for k, v in read_meta(data_dir).items() if k in PLATFORM_META_KEYS}
    if time_budget is not None:
        metadata["time_budget"] = time_budget
    out_dir = Path(out_dir)
    predictions_dir = out_dir / "predictions"
    predictions_dir.mkdir(parents=True, exist_ok=True)
    for stale in predictions_dir.glob("*.npy"):
        stale.unlink()
    report = IngestionReport(data_dir.name[: -len(".data")], str(code_dir), float(metadata["time_budget"]))
    wall_start = time.monotonic()

    def save() -> None:
        report.wall_s = round(time.monotonic() - wall_start, 3)
        report.peak_rss_mb = round(child.peak_rss_mb, 1)
        atomic_write_json(out_dir / "ingestion.json", asdict(report))

    def fail(status: str, error: str) -> None:
        report.status, report.error = status, error

    child = _Child(data_dir, code_dir, metadata, out_dir / "model.log", model_env or {})
    try:
        reply = child.wait(init_timeout_s)
        if reply == "timeout":
            fail("init_timeout", f"Model.__init__ (with data loading) exceeded {init_timeout_s:.0f} s")
        elif reply == "died":
            fail("crash", "during init: " + _died_message(child.process))
        elif reply[0] == "crash":
            fail("crash", "during init:\n" + reply[4])
        else:
            report.init_s = round(reply[1], 3)
            report.done_training = reply[3]
        save()
        while report.status == "running" and not report.done_training:
            prediction = None
            for phase in ("train", "test"):
                remaining = report.time_budget - report.charged_s
                if remaining <= 0:
                    fail("timeout", f"budget of {report.time_budget:.0f} s spent before {phase}")
                    break
                reply = child.call(phase, remaining)
                if reply == "timeout" or (reply != "died" and reply[1] > remaining):
                    report.charged_s = report.time_budget
                    fail("timeout", f"{phase} call overran the remaining budget of {remaining:.2f} s and was killed")
                    break
                if reply == "died":
                    fail("crash", f"during {phase}: " + _died_message(child.process))
                    break
                status, duration, _, done_training, payload = reply
                report.charged_s = round(report.charged_s + duration, 4)
                report.rounds.append({"phase": phase, "duration_s": round(duration, 4)})
                if status == "crash":
                    fail("crash", f"during {phase}:\n{payload}")
                    break
                report.done_training = done_training
                prediction = payload
            if report.status != "running":
                break
            if prediction is None:
                report.status = "stopped"
                report.error = "test returned None"
                break
            prediction, validation_score = prediction
            problem = check_prediction(prediction, metadata["test_num"], metadata["class_num"])
            if problem:
                fail("bad_prediction", problem)
                break
            index = len(report.predictions)
            path = predictions_dir / f"prediction_{index:04d}.npy"
            buffer = io.BytesIO()
            np.save(buffer, prediction)
            atomic_write_bytes(path, buffer.getvalue())
            report.predictions.append(
                {"index": index, "t_s": report.charged_s, "file": f"predictions/{path.name}", "validation_score": validation_score}
            )
            save()
        if report.status == "running":
            report.status = "done"
    finally:
        child.close()
        save()
    return report


def load_predictions(out_dir: str | os.PathLike) -> tuple[dict, list[tuple[float, np.ndarray]]]:
    """Read ingestion.json and the predictions it lists, as (time, array) pairs.

    A torn or hand-edited run folder raises IngestionError naming the file, not a bare
    JSON or key error from deep inside.
    """
    out_dir = Path(out_dir)
    path = out_dir / "ingestion.json"
    if not path.is_file():
        raise IngestionError(f"{path}: missing; run the ingestion first")
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestionError(f"{path}: not readable JSON ({error}); rerun the ingestion") from error
    try:
        listed = [(float(p["t_s"]), p["file"]) for p in report["predictions"]]
    except (KeyError, TypeError, ValueError) as error:
        raise IngestionError(
            f"{path}: must be an ingestion report with predictions of 't_s' and 'file' ({error!r}); "
            "rerun the ingestion"
        ) from error
    predictions = []
    for t_s, file in listed:
        try:
            predictions.append((t_s, np.load(out_dir / file)))
        except (OSError, ValueError) as error:
            raise IngestionError(f"{out_dir / file}: listed in {path} but not a readable .npy ({error})") from error
    return report, predictions
