"""The one training loop shared by every experiment.

``train(cfg, run_dir)`` builds data, model, task, optimizer and scheduler from the composed
config, trains for ``cfg.epochs`` epochs and leaves in ``run_dir``: ``config.yaml`` (the resolved
config), ``metrics.json`` (final figures and the run's status), ``history.csv`` (one row per
epoch), ``steps.csv`` (step size, ratio and loss per step) and ``checkpoint.pt`` (the state after
the last finished epoch, from which ``resume=true`` continues). Every file is replaced
atomically.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from datasets import build_data
from experiments import io
from experiments.tasks import Task
from models.init import initialise

log = logging.getLogger(__name__)

STATUS_COMPLETED, STATUS_DIVERGED, STATUS_FAILED, STATUS_INTERRUPTED = (
    "completed",
    "diverged",
    "failed",
    "interrupted",
)
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
STEP_COLUMNS = ("step", "epoch", "lr", "ratio", "loss")
CHECKPOINT, METRICS, HISTORY, STEPS, CONFIG = (
    "checkpoint.pt",
    "metrics.json",
    "history.csv",
    "steps.csv",
    "config.yaml",
)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Progress:
    """What a checkpoint must hold besides the model and optimizer to continue a run exactly."""

    epoch: int = 0
    step: int = 0
    train_time_s: float = 0.0
    history: list[dict] = field(default_factory=list)


# Configuration checks and construction


def check_config(cfg: DictConfig) -> None:
    """Rejects values that would fail later, naming each one and what would be valid."""
    epochs = cfg.epochs
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}; expected a positive integer")
    for key in ("max_steps", "max_steps_per_epoch"):
        value = cfg.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{key}={value!r}; expected a positive integer or null")
    threads = cfg.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r}; expected a positive integer or null")
    resolve_device(cfg.device)
    if cfg.get("steps_log_every", 1) < 1:
        raise ValueError(f"steps_log_every={cfg.steps_log_every}; expected a positive integer")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision={cfg.precision!r}; valid: {sorted(PRECISIONS)}")
    if cfg.data.batch_size < 1:
        raise ValueError(f"data.batch_size={cfg.data.batch_size}; expected a positive integer")
    # Building the optimizer on a stand-in parameter runs its own argument checks before any
    # data is read.
    try:
        probe = build_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))], model=None)
    except ValueError as error:
        settings = {k: v for k, v in _without_name(cfg.optimizer).items() if k[0] != "_"}
        raise ValueError(
            f"optimizer={cfg.optimizer.name} rejects its settings {settings}: {error}"
        ) from error
    if takes_loss_closure(probe) and cfg.scheduler.get("_target_"):
        raise ValueError(
            f"scheduler={cfg.scheduler.name} cannot drive optimizer={cfg.optimizer.name}, "
            "which sets its own step size; use scheduler=none"
        )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device={name!r}; valid: auto, cpu, cuda, cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but no CUDA device is available; use device=cpu")
    return device


def _without_name(node: DictConfig) -> dict:
    spec = OmegaConf.to_container(node, resolve=True)
    spec.pop("name", None)
    return spec


def takes_loss_closure(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimizers that compute the gradient themselves from a loss closure."""
    return bool(getattr(optimizer, "takes_loss_closure", False))


def build_optimizer(cfg_optimizer: DictConfig, params, model: torch.nn.Module | None):
    """Builds the optimizer; one that accepts ``model`` (LossGrad, for its BatchNorm
    statistics) gets it."""
    factory = instantiate(_without_name(cfg_optimizer))
    target = getattr(factory, "func", factory)
    if model is not None and "model" in inspect.signature(target).parameters:
        return factory(params, model=model)
    return factory(params)


def build_model(cfg_model: DictConfig, **kwargs) -> torch.nn.Module:
    """Builds the model named by ``cfg_model``; ``kwargs`` are what the data set adds (such as
    IMDb's vocabulary size and embedding)."""
    return instantiate(_without_name(cfg_model), **kwargs)


def build_scheduler(cfg_scheduler: DictConfig, optimizer):
    spec = _without_name(cfg_scheduler)
    if not spec.get("_target_"):
        return None
    spec["_partial_"] = True
    return instantiate(spec)(optimizer)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    state["python"] = random.getstate()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# The run


class Run:
    """One training run: everything ``train`` builds, and the loop over epochs."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.shuffle_generator = torch.Generator().manual_seed(cfg.seed)

        self.train_batches, self.test_batches, info = build_data(
            cfg.data, self.device, seed=cfg.seed
        )
        model = build_model(cfg.model, **info.get("model_kwargs", {}))
        init = cfg.model_init
        initialise(model, init.scheme, init.weight_std, init.bias)
        self.model = model.to(self.device)
        parameter_count = sum(p.numel() for p in self.model.parameters())
        log.info("model %s: %s parameters", cfg.model.name, f"{parameter_count:,}")
        self.forward_model = torch.compile(self.model) if cfg.get("compile") else self.model

        self.task: Task = instantiate(cfg.task)
        self.optimizer = build_optimizer(cfg.optimizer, self.model.parameters(), self.model)
        self.closure_driven = takes_loss_closure(self.optimizer)
        self.scheduler = build_scheduler(cfg.scheduler, self.optimizer)
        log.info(
            "optimizer %s %s, scheduler %s",
            cfg.optimizer.name,
            {k: v for k, v in _without_name(cfg.optimizer).items() if not k.startswith("_")},
            cfg.scheduler.name,
        )
        dtype = PRECISIONS[cfg.precision]
        self.autocast = (
            (lambda: torch.autocast(self.device.type, dtype=dtype))
            if dtype is not None
            else contextlib.nullcontext
        )
        self.progress = Progress()
        self.step_rows: list[list] = []

    # Checkpoints

    def save_checkpoint(self) -> None:
        io.torch_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "progress": self.progress,
                "rng": _rng_state(),
                "shuffle_generator": self.shuffle_generator.get_state(),
            },
            self.run_dir / CHECKPOINT,
        )

    def load_checkpoint(self) -> bool:
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.progress = state["progress"]
        _set_rng_state(state["rng"])
        self.shuffle_generator.set_state(state["shuffle_generator"])
        steps_path = self.run_dir / STEPS
        if steps_path.is_file():
            rows = io.read_csv(steps_path)
            self.step_rows = [
                [row[column] for column in STEP_COLUMNS]
                for row in rows
                if int(row["step"]) <= self.progress.step
            ]
        log.info(
            "resuming from %s after epoch %d (step %d)",
            path,
            self.progress.epoch,
            self.progress.step,
        )
        return True

    # Training

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def training_step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step; returns the loss, the step size used and the ratio r_h (NaN for
        optimizers without one), all as tensors, so that nothing waits for the device."""
        if self.closure_driven:

            def closure():
                with self.autocast():
                    return self.task.loss(self.forward_model, batch)

            loss = self.optimizer.step(closure)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                loss = self.task.loss(self.forward_model, batch)
            loss.backward()
            self.optimizer.step()
        diagnostics = getattr(self.optimizer, "diagnostics", None) or {}
        lr = diagnostics.get("lr", self.optimizer.param_groups[0]["lr"])
        ratio = diagnostics.get("ratio", math.nan)
        return loss.detach().float(), torch.as_tensor(lr), torch.as_tensor(ratio)

    def train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        self.model.train()
        limit = len(self.train_batches)
        if cfg.get("max_steps_per_epoch"):
            limit = min(limit, cfg.max_steps_per_epoch)
        if cfg.get("max_steps"):
            limit = min(limit, cfg.max_steps - self.progress.step)
        loss_sum = torch.zeros((), device=self.device)
        logged: list[torch.Tensor] = []
        logged_steps: list[int] = []
        bar = tqdm(
            total=limit,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not sys.stderr.isatty() or not cfg.get("progress_bar", True),
        )
        started = time.perf_counter()
        # Without a progress bar (no terminal, as under a launcher), a log line every
        # progress_log_s seconds, written at the loss checks, which already wait for the device.
        log_every_s = cfg.get("progress_log_s") if bar.disable else None
        last_log = started
        steps_done = 0
        for batch in self.train_batches.epoch(self.shuffle_generator):
            if steps_done >= limit:
                break
            loss, lr, ratio = self.training_step(batch)
            loss_sum += loss
            steps_done += 1
            step = self.progress.step + steps_done
            if step % cfg.steps_log_every == 0:
                logged.append(torch.stack([lr.to(loss), ratio.to(loss), loss]))
                logged_steps.append(step)
            if steps_done % cfg.check_every == 0 or steps_done == limit:
                value, lr_value = float(loss), float(lr)
                if not math.isfinite(value):
                    raise Diverged(f"loss {value} at step {step}")
                bar.set_postfix(loss=f"{value:.4g}", lr=f"{lr_value:.3g}", refresh=False)
                now = time.perf_counter()
                if log_every_s and now - last_log >= log_every_s and steps_done < limit:
                    last_log = now
                    remaining = (now - started) / steps_done * (limit - steps_done)
                    log.info(
                        "epoch %d/%d  step %d/%d  loss %.4g  lr %.3g  (%.0fs, about %.0fs left)",
                        epoch + 1,
                        cfg.epochs,
                        steps_done,
                        limit,
                        value,
                        lr_value,
                        now - started,
                        remaining,
                    )
            bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - started
        self.progress.train_time_s += elapsed
        self.progress.step += steps_done
        values = torch.stack(logged).cpu().tolist() if logged else []
        for step, (lr, ratio, loss) in zip(logged_steps, values, strict=True):
            self.step_rows.append([step, epoch + 1, lr, ratio, loss])
        mean_lr = float(np.mean([row[0] for row in values])) if values else self.current_lr()
        train_loss = float(loss_sum) / max(steps_done, 1)
        if not math.isfinite(train_loss):
            raise Diverged(f"mean training loss {train_loss} in epoch {epoch + 1}")
        return {
            "train_loss": train_loss,
            "mean_lr": mean_lr,
            "steps": steps_done,
            "epoch_time_s": elapsed,
        }

    def evaluate(self, batches) -> dict[str, float]:
        self.model.eval()
        with self.autocast():
            return self.task.evaluate(self.forward_model, batches)

    def fit(self) -> dict:
        cfg = self.cfg
        if cfg.resume:
            self.load_checkpoint()
        while self.progress.epoch < cfg.epochs:
            if cfg.get("max_steps") and self.progress.step >= cfg.max_steps:
                break
            epoch = self.progress.epoch
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            test = self.evaluate(self.test_batches)
            row.update({f"test_{name}": value for name, value in test.items()})
            row["lr"] = self.current_lr()
            row["train_time_s"] = self.progress.train_time_s
            if self.scheduler is not None:
                self.scheduler.step()
            self.progress.epoch += 1
            self.progress.history.append(row)
            self.write_logs()
            self.save_checkpoint()
            log.info(
                "epoch %d/%d  train_loss %.4f  %s  lr %.3g  (%.1fs)",
                epoch + 1,
                cfg.epochs,
                row["train_loss"],
                "  ".join(f"test_{k} {v:.4f}" for k, v in test.items()),
                row["mean_lr"],
                row["epoch_time_s"],
            )
        final = dict(self.progress.history[-1]) if self.progress.history else {}
        if cfg.get("eval_train_at_end", True):
            final["train_loss"] = self.evaluate(self.train_batches)["loss"]
        return final

    def write_logs(self) -> None:
        history = self.progress.history
        columns = list(dict.fromkeys(key for row in history for key in row))
        io.write_csv(
            self.run_dir / HISTORY, columns, [[row.get(c, "") for c in columns] for row in history]
        )
        io.write_csv(self.run_dir / STEPS, STEP_COLUMNS, self.step_rows)


def _base_metrics(cfg: DictConfig, device: str) -> dict:
    return {
        "experiment": cfg.experiment_name,
        "optimizer": cfg.optimizer.name,
        "scheduler": cfg.scheduler.name,
        "budget": cfg.budget.name,
        "seed": cfg.seed,
        "device": device,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "machine": f"{platform.node()} ({platform.machine()}, {torch.get_num_threads()} threads)",
        "command": " ".join(sys.argv),
    }


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Runs the experiment described by ``cfg`` in ``run_dir`` and returns its metrics.

    A run whose ``metrics.json`` already says ``completed`` is not repeated when
    ``skip_completed`` is true. A loss that becomes non-finite ends the run with
    ``status: diverged``; any other error is recorded as ``failed`` and raised again.
    """
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS
    if cfg.skip_completed and metrics_path.is_file():
        previous = io.read_json(metrics_path)
        if previous.get("status") == STATUS_COMPLETED and previous.get("epochs") == cfg.epochs:
            log.info("%s is already completed; skipping (skip_completed=false reruns it)", run_dir)
            return previous
    check_config(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    run_dir.mkdir(parents=True, exist_ok=True)
    io.write_text(run_dir / CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    metrics = _base_metrics(cfg, str(resolve_device(cfg.device)))
    started = time.perf_counter()
    run = None
    try:
        run = Run(cfg, run_dir)
        final = run.fit()
        status = STATUS_COMPLETED
    except Diverged as error:
        log.warning("run diverged: %s", error)
        status, final = STATUS_DIVERGED, {"error": str(error)}
    except BaseException as error:
        status = STATUS_INTERRUPTED if isinstance(error, KeyboardInterrupt) else STATUS_FAILED
        metrics.update(status=status, error=f"{type(error).__name__}: {error}")
        metrics["wall_time_s"] = time.perf_counter() - started
        if run is not None:
            metrics.update(epochs=run.progress.epoch, steps=run.progress.step)
        io.write_json(metrics_path, metrics)
        raise
    if run is not None and status == STATUS_DIVERGED:
        final.update(run.progress.history[-1] if run.progress.history else {})
        run.write_logs()
    metrics["status"] = status
    for key in ("train_loss", "test_loss", "test_acc", "lr", "error"):
        if key in final:
            metrics[key] = final[key]
    metrics["final_lr"] = metrics.pop("lr", None)
    metrics["epochs"] = run.progress.epoch
    metrics["steps"] = run.progress.step
    metrics["train_time_s"] = run.progress.train_time_s
    metrics["wall_time_s"] = time.perf_counter() - started
    io.write_json(metrics_path, metrics)
    log.info(
        "%s: %s",
        status,
        ", ".join(
            f"{k} {metrics[k]:.4g}"
            for k in ("train_loss", "test_loss", "test_acc", "wall_time_s")
            if isinstance(metrics.get(k), float)
        ),
    )
    return metrics
