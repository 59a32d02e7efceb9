"""GANTrainerBase: shared latents and state, exact resume from mid-pass checkpoints, batch-size guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset

from monai_synth.augment import PairedAugmentPipe
from monai_synth.engines import GANTrainerBase, PairedGANTrainer, StyleGAN2Trainer, resumable_loader
from monai_synth.handlers import AdaptiveAugmentHandler, GANCheckpointHandler, GeneratorEMAHandler, make_ema_copy
from monai_synth.networks.nets import (
    PairedDCGANDiscriminator,
    PairedDCGANGenerator,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
)

SIZE = 8


def _items(n: int = 12) -> list[dict]:
    # every item differs, so the data order shows in the weights
    rng = np.random.default_rng(0)
    items = []
    for _ in range(n):
        image = rng.uniform(-1, 1, (1, SIZE, SIZE)).astype(np.float32)
        items.append({"pair": np.concatenate([image, np.where(image > 0, 1.0, -1.0).astype(np.float32)])})
    return items


def _loader(items: list[dict], batch_size: int = 4) -> DataLoader:
    # as the bundles build it: shuffled, order left to the global RNG
    return DataLoader(Dataset(items), batch_size=batch_size, shuffle=True, drop_last=True)


def _paired(items, max_epochs, epoch_length, seed=0, batch_size=4):
    torch.manual_seed(seed)
    g = PairedDCGANGenerator(SIZE, 2, 4, channels=(8,))
    d = PairedDCGANDiscriminator(SIZE, 2, channels=(8,))
    g_opt = torch.optim.Adam(g.parameters(), 2e-3, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), 2e-3, betas=(0.5, 0.999))
    trainer = PairedGANTrainer(
        "cpu", max_epochs, _loader(items, batch_size), g, g_opt, d, d_opt, 4, epoch_length=epoch_length, seed=seed
    )
    return trainer, {"generator": g, "discriminator": d, "g_optimizer": g_opt, "d_optimizer": d_opt}


def _stylegan(items, max_epochs, epoch_length, seed=0, batch_size=4):
    torch.manual_seed(seed)
    kw = {"image_channels": 1, "mask_channels": 1, "mode": "paired", "channel_base": 32, "channel_max": 8}
    g = StyleGAN2Generator(SIZE, z_dim=8, w_dim=8, mapping_layers=1, **kw)
    d = StyleGAN2Discriminator(SIZE, **kw)
    ema = make_ema_copy(g)
    aug = PairedAugmentPipe(image_channels=1, p=0.3)  # draws from the global RNG every iteration
    g_opt = torch.optim.Adam(g.parameters(), 2e-3, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(d.parameters(), 2e-3, betas=(0.0, 0.99))
    ada = AdaptiveAugmentHandler(aug, batch_size=batch_size, interval=2, speed_kimg=0.1)
    trainer = StyleGAN2Trainer(
        "cpu",
        max_epochs,
        _loader(items, batch_size),
        g,
        g_opt,
        d,
        d_opt,
        epoch_length=epoch_length,
        augment=aug,
        r1_gamma=1.0,
        r1_interval=2,
        pl_interval=2,
        train_handlers=[GeneratorEMAHandler(g, ema, batch_size=batch_size, ema_kimg=0.01), ada],
        seed=seed,
    )
    objects = {"generator": g, "discriminator": d, "generator_ema": ema, "augment": aug, "ada": ada}
    return trainer, dict(objects, g_optimizer=g_opt, d_optimizer=d_opt)


class _Killed(RuntimeError):
    pass


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("build", [_paired, _stylegan], ids=["paired_dcgan", "stylegan2"])
@pytest.mark.parametrize("epoch_length", [3, 2], ids=["epoch_is_a_pass", "epoch_shorter_than_a_pass"])
def test_resume_from_a_mid_pass_checkpoint_ends_with_the_uninterrupted_weights(build, epoch_length, tmp_path):
    # 12 items, batch 4: a pass is 3 batches; checkpoints every 2 iterations, killed at 5, resumed from 4
    items, total = _items(), 9
    max_epochs = total // epoch_length + (total % epoch_length > 0)
    torch.manual_seed(0)
    reference, ref = build(items, max_epochs, epoch_length)
    reference.run()

    torch.manual_seed(0)
    first, o1 = build(items, max_epochs, epoch_length)
    GANCheckpointHandler(tmp_path, dict(o1), config={"a": 1}, save_interval=2).attach(first)
    first.add_event_handler(Events.ITERATION_COMPLETED(once=5), lambda e: (_ for _ in ()).throw(_Killed()))
    with pytest.raises(_Killed):
        first.run()

    torch.manual_seed(123)  # the global RNG, the init and the trainer seed all differ: everything is restored
    second, o2 = build(items, max_epochs, epoch_length, seed=0)
    torch.nn.init.normal_(next(o2["generator"].parameters()))
    handler = GANCheckpointHandler(tmp_path, dict(o2), config={"a": 1}, save_interval=2)
    handler.attach(second)
    second.run()
    assert handler.resumed_from == 4 and second.state.iteration == reference.state.iteration
    for name in ("generator", "discriminator"):
        assert _max_diff(ref[name], o2[name]) < 1e-5, name


def test_data_order_is_a_function_of_seed_and_pass():
    items = _items()
    orders = []
    for _ in range(2):
        trainer, _ = _paired(items, max_epochs=2, epoch_length=3)
        seen = []
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda e, seen=seen: seen.append(tuple(e.state.batch["pair"][:, 0, 0, 0].tolist())),
        )
        torch.manual_seed(len(orders))  # the global RNG no longer decides the order
        trainer.run()
        orders.append(seen)
    assert orders[0] == orders[1]
    firsts = sorted(v for batch in orders[0][:3] for v in batch)
    assert firsts == sorted(float(it["pair"][0, 0, 0]) for it in items)  # one pass sees every item once
    assert orders[0][:3] != orders[0][3:]  # each pass has its own order


def test_resume_with_another_batch_size_is_refused_naming_both(tmp_path):
    items = _items()
    first, o1 = _paired(items, max_epochs=1, epoch_length=2)
    GANCheckpointHandler(tmp_path, dict(o1), save_interval=2).attach(first)
    first.run()
    second, o2 = _paired(items, max_epochs=2, epoch_length=2, batch_size=2)
    GANCheckpointHandler(tmp_path, dict(o2), save_interval=2).attach(second)
    with pytest.raises(ValueError, match=r"batch_size is 2 now.*batch_size 4.*another output_dir") as info:
        second.run()
    assert str(tmp_path / "checkpoint_last.pt") in str(info.value)


def test_latents_state_and_finite_check_are_shared():
    trainer, _ = _paired(_items(), max_epochs=1, epoch_length=1)
    assert isinstance(trainer, GANTrainerBase)
    trainer.state.device = torch.device("cpu")
    state = trainer.state_dict()
    z = trainer.draw_latents(3)
    assert z.shape == (3, 4) and z.min() >= -1 and z.max() <= 1
    trainer.load_state_dict(state)
    torch.testing.assert_close(trainer.draw_latents(3), z)  # the latent RNG is part of the state
    assert state["batch_size"] == 4
    with pytest.raises(FloatingPointError, match="Generator loss is nan at iteration 0"):
        trainer.check_finite("Generator loss", torch.tensor(float("nan")))


def test_loaders_that_cannot_be_made_resumable_are_kept():
    data = [{"pair": torch.zeros(2, SIZE, SIZE)}] * 4
    assert resumable_loader(data, 0) == (data, None)
    loader = DataLoader(Dataset(data), batch_size=2, sampler=torch.utils.data.RandomSampler(data, replacement=True))
    assert resumable_loader(loader, 0) == (loader, None)
