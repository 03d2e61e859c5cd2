"""Draw what a trained WAE does: test images beside their reconstructions, and decoded samples
from the prior, from the ``checkpoint.pt`` of a ``mnist_wae`` or ``celeba_wae`` run.

    python -m scripts.wae_images results/runs/paper/mnist_wae/lossgrad/<run>
    python -m scripts.wae_images RUN_DIR --count 12 --out wae.png --seed 1

Writes ``wae_images.png`` and ``wae_images.pdf`` into the run directory (or ``--out``'s stem).
The test images are the first ``--count`` of the test split as the run read it (its
``config.yaml`` names the data); the samples are codes drawn from the run's prior
N(0, ``task.prior_var``·I) with ``--seed``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from datasets import build_data
from experiments.train import CHECKPOINT, CONFIG, build_model
from scripts.figures import plt, save_figure

log = logging.getLogger("scripts.wae_images")


def load_run(run_dir: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuilds the run's model from its ``config.yaml`` and loads the checkpoint's weights."""
    config_path, checkpoint_path = run_dir / CONFIG, run_dir / CHECKPOINT
    for path in (config_path, checkpoint_path):
        if not path.is_file():
            raise ValueError(f"{path} does not exist; expected the folder of a WAE run")
    cfg = OmegaConf.load(config_path)
    if cfg.model.get("_target_") != "models.wae.WAE":
        raise ValueError(
            f"{run_dir} is a run of model {cfg.model.get('name')!r}; expected a WAE run "
            "(experiment=mnist_wae or celeba_wae)"
        )
    model = build_model(cfg.model)
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    return model, cfg


def _as_image(tensor: torch.Tensor):
    """(C, H, W) in [0, 1] -> an array matplotlib shows (grey for one channel)."""
    image = tensor.detach().float().clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def draw(run_dir: Path, count: int, seed: int, out: Path | None) -> list[Path]:
    model, cfg = load_run(run_dir)
    data = OmegaConf.merge(cfg.data, {"train_subset": 1, "test_subset": count})
    _, test_batches, _ = build_data(data, torch.device("cpu"), seed=int(cfg.seed))
    images = next(iter(test_batches))[0][:count].float().reshape(-1, *model.image_shape)
    generator = torch.Generator().manual_seed(seed)
    prior_std = math.sqrt(float(cfg.task.get("prior_var", 1.0)))
    codes = prior_std * torch.randn(count, model.latent_dim, generator=generator)
    with torch.no_grad():
        reconstructions, _ = model(images)
        samples = model.decoder(codes).reshape(-1, *model.image_shape)

    rows = (("test image", images), ("reconstruction", reconstructions), ("sample", samples))
    fig, axes = plt.subplots(
        len(rows), count, figsize=(1.1 * count, 1.25 * len(rows)), squeeze=False
    )
    for (label, batch), line in zip(rows, axes, strict=True):
        for index, ax in enumerate(line):
            ax.imshow(_as_image(batch[index]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        line[0].set_ylabel(label, fontsize=8)
    squared_error = (reconstructions - images).square().flatten(1).sum(1).mean().item()
    fig.suptitle(
        f"{cfg.experiment_name}, {cfg.optimizer.name}, seed {cfg.seed}: mean squared error "
        f"per image {squared_error:.2f} on these {count}",
        fontsize=9,
    )
    stem = out.with_suffix("") if out is not None else run_dir / "wae_images"
    return save_figure(fig, stem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="the folder of a WAE run (with checkpoint.pt)")
    parser.add_argument("--count", type=int, default=10, help="images per row (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior samples")
    parser.add_argument("--out", type=Path, default=None, help="output file (.png and .pdf)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count={args.count}; expected a positive integer")
    try:
        paths = draw(args.run_dir, args.count, args.seed, args.out)
    except ValueError as error:
        log.error("%s", error)
        return 2
    log.info("wrote %s", ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    sys.exit(main())
