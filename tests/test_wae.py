"""WAE-MMD: the MMD estimate, the encoder/decoder shapes, the task's objective and the
learning-rate schedule of the WAE paper."""

from __future__ import annotations

import itertools

import pytest
import torch

from experiments.wae import WAE_KERNEL_SCALES, WAEMMD, PiecewiseLR, imq_mmd
from models.wae import WAE


def reference_mmd(x: torch.Tensor, y: torch.Tensor, prior_var: float) -> float:
    """The unbiased MMD² estimate written out pair by pair, in float64."""
    n, dim = x.shape
    total = 0.0
    for scale in WAE_KERNEL_SCALES:
        c = scale * 2 * dim * prior_var

        def k(a, b, c=c):
            return c / (c + float((a - b).square().sum()))

        pairs = [(i, j) for i, j in itertools.product(range(n), repeat=2) if i != j]
        total += sum(k(x[i], x[j]) + k(y[i], y[j]) for i, j in pairs) / (n * (n - 1))
        total -= 2 * sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)
    return total


def test_mmd_matches_the_pairwise_formula():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(6, 3, generator=generator, dtype=torch.float64) + 0.5
    assert float(imq_mmd(x, y, prior_var=2.0)) == pytest.approx(reference_mmd(x, y, 2.0), rel=1e-5)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    generator = torch.Generator().manual_seed(1)
    n, dim = 256, 8
    x = torch.randn(n, dim, generator=generator)
    y = torch.randn(n, dim, generator=generator)
    # Identical samples: the estimate is (2/n)·Σ_s (mean off-diagonal kernel − 1) ≤ 0, O(1/n).
    identical = float(imq_mmd(x, x, prior_var=1.0))
    assert -2 * len(WAE_KERNEL_SCALES) / n <= identical <= 0
    same = float(imq_mmd(x, y, prior_var=1.0))
    shifted = [float(imq_mmd(x + shift, y, prior_var=1.0)) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert abs(same) < 0.01
    assert shifted[0] > 0.01
    assert shifted == sorted(shifted) and shifted[-1] > 10 * shifted[0]


def test_mmd_of_a_single_code_is_zero():
    assert float(imq_mmd(torch.randn(1, 4), torch.randn(1, 4), 1.0)) == 0.0


@pytest.mark.parametrize(
    ("image_size", "channels", "latent_dim", "encoder", "decoder", "kernel"),
    [
        (64, 3, 64, (128, 256, 512, 1024), (1024, 512, 256, 128), 5),  # CelebA, WAE paper
        (28, 1, 8, (128, 256, 512, 1024), (1024, 512, 256), 4),  # MNIST, WAE paper
    ],
)
def test_encoder_and_decoder_shapes(image_size, channels, latent_dim, encoder, decoder, kernel):
    torch.manual_seed(0)
    model = WAE(image_size, channels, latent_dim, encoder, decoder, kernel).eval()
    images = torch.rand(2, channels, image_size, image_size)
    with torch.no_grad():
        reconstructions, codes = model(images)
        # The encoder's last feature map: 4x4 for 64 px and 2x2 for 28 px ("SAME" padding).
        features = model.encoder.features(images)
    assert reconstructions.shape == images.shape
    assert codes.shape == (2, latent_dim)
    assert features.shape[1:] == (1024, -(-image_size // 16), -(-image_size // 16))
    assert float(reconstructions.min()) >= 0 and float(reconstructions.max()) <= 1
    assert model.decoder.base == image_size // 2 ** (len(decoder) - 1)


def test_flat_mnist_images_and_width_divisor():
    model = WAE(28, 1, 8, (128, 256, 512, 1024), (1024, 512, 256), 4, width_divisor=16)
    convolution_widths = [m.out_channels for m in model.modules() if hasattr(m, "out_channels")]
    assert convolution_widths == [8, 16, 32, 64, 32, 16, 1]
    reconstructions, codes = model(torch.rand(3, 28, 28))  # MNIST batches come as (N, 28, 28)
    assert reconstructions.shape == (3, 1, 28, 28) and codes.shape == (3, 8)


def test_decoder_rejects_a_size_it_cannot_reach():
    with pytest.raises(ValueError, match="image_size=30"):
        WAE(30, 1, 8, (8, 16), (16, 8, 4), 4)


def tiny_wae() -> WAE:
    torch.manual_seed(0)
    return WAE(28, 1, 4, (4, 8), (8, 4, 4), 4)


def test_objective_combines_weighted_squared_error_and_mmd():
    model = tiny_wae()
    task = WAEMMD(mmd_weight=10.0, prior_var=1.0, reconstruction_weight=0.05, loss_scale=3.0)
    batch = (torch.rand(16, 1, 28, 28),)
    torch.manual_seed(5)
    squared_errors, mmd, objective = task.parts(model, batch)
    reconstructions, codes = model(batch[0])
    expected_errors = (reconstructions - batch[0]).square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(squared_errors, expected_errors)
    torch.manual_seed(5)
    prior = torch.randn(16, 4)
    torch.testing.assert_close(mmd, imq_mmd(codes, prior, 1.0))
    torch.testing.assert_close(objective, 3.0 * (0.05 * expected_errors.mean() + 10.0 * mmd))


def test_prior_sample_is_drawn_once_per_batch():
    model = tiny_wae()
    task = WAEMMD()
    batch = (torch.rand(8, 1, 28, 28),)
    first, second = task.loss(model, batch), task.loss(model, batch)
    assert torch.equal(first, second)  # LOSSGRAD's two evaluations see the same prior sample
    state = torch.get_rng_state()
    other = (batch[0].clone(),)
    assert not torch.equal(task.loss(model, other), first)  # a new batch draws a new sample
    assert not torch.equal(torch.get_rng_state(), state)  # from torch's global generator


def test_evaluation_reports_loss_and_its_parts():
    from datasets.batches import TensorBatches

    model = tiny_wae().eval()
    task = WAEMMD(mmd_weight=10.0, prior_var=1.0, loss_scale=2.0)
    images = torch.rand(20, 1, 28, 28)
    metrics = task.evaluate(model, TensorBatches((images,), batch_size=20))
    assert set(metrics) == {"loss", "recon", "mmd"}
    with torch.no_grad():
        reconstructions, _ = model(images)
    expected = float((reconstructions - images).square().sum(dim=(1, 2, 3)).mean())
    assert metrics["recon"] == pytest.approx(expected, rel=1e-5)
    assert metrics["loss"] == pytest.approx(
        2.0 * (0.05 * metrics["recon"] + 10.0 * metrics["mmd"]), rel=1e-5
    )


@pytest.mark.parametrize("bad", [{"prior_var": 0.0}, {"mmd_weight": -1.0}, {"kernel_scales": []}])
def test_bad_task_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        WAEMMD(**bad)


def test_wae_paper_schedule():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=1e-3)
    schedule = PiecewiseLR(optimizer, milestones=[30, 50, 100], gamma=[0.5, 0.2, 0.1])
    rates = []
    for _ in range(110):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[29] == pytest.approx(1e-3) and rates[30] == pytest.approx(5e-4)
    assert rates[50] == pytest.approx(1e-4) and rates[100] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="same length"):
        PiecewiseLR(optimizer, milestones=[30, 50], gamma=[0.5])


def _smoke_run(tmp_path, experiment: str):
    from experiments.config import compose
    from experiments.train import train

    cfg = compose(
        [
            f"experiment={experiment}",
            "optimizer=sgd",
            "budget=smoke",
            "progress_bar=false",
            f"data.cache_dir={tmp_path / 'cache'}",
        ]
    )
    run_dir = tmp_path / experiment
    train(cfg, run_dir)
    return run_dir


def test_wae_images_show_reconstructions_and_samples(tmp_path):
    from scripts import wae_images

    run_dir = _smoke_run(tmp_path, "mnist_wae")
    assert wae_images.main([str(run_dir), "--count", "4"]) == 0
    png = run_dir / "wae_images.png"
    assert png.stat().st_size > 1000 and (run_dir / "wae_images.pdf").is_file()
    model, _ = wae_images.load_run(run_dir)
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def test_wae_images_reject_a_run_of_another_model(tmp_path):
    from scripts import wae_images

    run_dir = _smoke_run(tmp_path, "mnist_mlp")
    assert wae_images.main([str(run_dir)]) == 2
    assert wae_images.main([str(tmp_path / "nowhere")]) == 2
