"""Experiment trackers (train.report_to): accelerate's TensorBoard, MLflow and W&B trackers, offline by default.

One tracker run per stage and seed, named <run-name>/seed-S/<stage> (run-name: the run folder's name); one per
sweep trial (<run-name>/sweep/trial-NNNN); and, after compare, <run-name>/report with report.md and the plots.

RUN_DIR/tracking/
  tensorboard/<run-name>/seed-S/<stage>/   TensorBoard event files (`tensorboard --logdir RUN_DIR/tracking`)
  mlflow.db  mlflow-artifacts/             MLflow's local store (unless MLFLOW_TRACKING_URI names another)
  wandb/                                   W&B's offline runs (unless WANDB_MODE / WANDB_DIR say otherwise)

The trackers are accelerate's: the training Accelerator starts them (init_trackers) and logs to them
(accelerator.log); they are finished one by one rather than by accelerator.end_training(), which would also
end the data-parallel process group that the next stage trains in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from accelerate.tracking import GeneralTracker, MLflowTracker, TensorBoardTracker, WandBTracker

from distill_lora.experiment.preflight import check_installed
from distill_lora.files import atomic_write_json, read_json_or_none
from distill_lora.train import distributed
from distill_lora.train.trainer import Interrupted

RESUMABLE = ("mlflow", "wandb")  # trackers whose run a resumed stage continues by id


def tracking_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "tracking"


def flat_params(values: dict, prefix: str = "") -> dict:
    """A nested config as flat hyperparameters {"train.lr": 5e-05, …}; lists, mappings in lists and null as
    JSON text (TensorBoard's hparams and MLflow's params take scalars only)."""
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def flat_numbers(values: dict, prefix: str) -> dict[str, float]:
    """The numbers of a nested metrics dict as {"test/accuracy": …, "test/per_class/toxic/f1": …} (None left out)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


@dataclass
class TrackerRun:
    """One tracker run. trackers: accelerate's tracker objects (not started); start(accelerator) hands them to the
    training Accelerator, whose init_trackers starts them. step: the last optimiser step, where the results go."""

    name: str
    trackers: list[GeneralTracker]
    hparams: dict
    accelerator: object = None
    started: list[GeneralTracker] = field(default_factory=list)
    step: int = 0
    ids_file: Path | None = None  # where the started runs' ids are kept while the stage may still resume

    def start(self, accelerator) -> None:
        """accelerator was made with log_with=self.trackers: start them and store the hyperparameters; note the
        MLflow and W&B run ids, so that a stage resumed from its checkpoint continues these runs."""
        accelerator.init_trackers(self.name, config=self.hparams)
        self.accelerator, self.started = accelerator, list(accelerator.trackers)
        resumable = [t for t in self.started if t.name in RESUMABLE]
        ids = {t.name: t.tracker.info.run_id if t.name == "mlflow" else t.tracker.id for t in resumable}
        if self.ids_file is not None and ids and distributed.is_main():
            atomic_write_json(self.ids_file, ids)

    def log(self, values: dict) -> None:
        """Values at the run's last step (test metrics, a trial's score)."""
        if self.accelerator is not None:
            self.accelerator.log(values, step=self.step)

    def finish(self, error: BaseException | None = None) -> None:
        """End every started tracker. A run ended by an error is marked so, not as finished: MLflow's status
        FAILED (KILLED when interrupted: Ctrl+C or SIGTERM, a stage that resumes), W&B's exit code 1."""
        for tracker in self.started:
            if error is not None and tracker.name == "mlflow":
                import mlflow

                mlflow.end_run(status="KILLED" if isinstance(error, (KeyboardInterrupt, Interrupted)) else "FAILED")
            elif error is not None and tracker.name == "wandb":
                tracker.tracker.finish(exit_code=1)
            else:
                tracker.finish()
        self.accelerator, self.started = None, []


def open_run(report_to: list[str], output_dir: Path, name: str, hparams: dict, ids_file: Path | None = None):
    """A TrackerRun (not started yet) for the trackers named in report_to, stored under RUN_DIR/tracking. ids_file:
    the run ids a stage noted before it was interrupted (continued: one tracker run per stage, however often it
    resumes; TensorBoard continues by writing to the same folder)."""
    folder, project = tracking_dir(output_dir), Path(output_dir).name
    ids = read_json_or_none(ids_file, {}) if ids_file is not None else {}
    trackers = []
    for tracker in report_to:
        if tracker == "tensorboard":
            trackers.append(TensorBoardTracker(name, folder / "tensorboard"))
        elif tracker == "mlflow":
            trackers.append(_mlflow(folder, project, name, ids.get("mlflow")))
        elif tracker == "wandb":
            # offline unless W&B's own environment says otherwise (WANDB_MODE=online after `wandb login`)
            mode = os.environ.get("WANDB_MODE", "offline")
            wandb_dir = os.environ.get("WANDB_DIR", str(folder))
            resume = {"id": ids["wandb"], "resume": "allow"} if "wandb" in ids else {}
            trackers.append(
                WandBTracker(project, name=name, dir=wandb_dir, mode=mode, reinit="finish_previous", **resume)
            )
    return TrackerRun(name, trackers, hparams, ids_file=ids_file)


def _mlflow(folder: Path, project: str, name: str, run_id: str | None = None) -> MLflowTracker:
    """MLflow's tracker: a local SQLite store under the run folder unless MLFLOW_TRACKING_URI names another (MLflow
    3 refuses its old file: store by default; SQLite is the local store it recommends)."""
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if distributed.is_main():
        if not uri:
            folder.mkdir(parents=True, exist_ok=True)
        # set every time: one process may train runs in several folders (and mlflow keeps the last URI it was given)
        mlflow.set_tracking_uri(uri or f"sqlite:///{folder / 'mlflow.db'}")
    artifacts = None if uri else str(folder / "mlflow-artifacts")  # a tracking server keeps its own artefacts
    return MLflowTracker(experiment_name=project, logging_dir=artifacts, run_name=name, run_id=run_id)


def log_files(trackers: list[GeneralTracker], files: list[Path], kind: str) -> None:
    """Files as artefacts where the tracker has artefacts: MLflow (through accelerate's tracker) and W&B (through
    its run object). TensorBoard has no artefacts: it keeps scalars, text and images only."""
    files = [f for f in files if f.is_file()]
    if not files or not distributed.is_main():
        return
    for tracker in trackers:
        if tracker.name == "mlflow":
            for path in files:
                tracker.log_artifact(str(path), artifact_path="plots" if path.parent.name == "plots" else None)
        elif tracker.name == "wandb":
            import wandb

            artifact = wandb.Artifact(name=f"{kind}-{tracker.tracker.id}", type=kind)
            for path in files:
                artifact.add_file(str(path), name=f"plots/{path.name}" if path.parent.name == "plots" else path.name)
            tracker.tracker.log_artifact(artifact)


def log_report(report_to: list[str], output_dir: Path, report: Path) -> None:
    """After compare: a tracker run <run-name>/report holding report.md and the plots (MLflow, W&B)."""
    names = [n for n in report_to if n != "tensorboard"]
    if not names or not distributed.is_main():
        return
    check_installed(names, "train")  # every stage may have been reused: nothing has checked yet
    run = open_run(names, output_dir, f"{Path(output_dir).name}/report", {})
    try:
        for tracker in run.trackers:
            tracker.start()
            run.started.append(tracker)
        files = [report, *sorted((report.parent / "plots").glob("*.png"))]
        log_files(run.started, files, "report")
    finally:
        run.finish()
