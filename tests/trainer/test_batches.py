"""Device-side batches: order, balancing, flip, translation, normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.batches import (
    batches_per_epoch,
    epoch_generator,
    epoch_order,
    eval_batches,
    normalize,
    random_flip,
    random_translate,
    train_batches,
    translate,
)
from trainer.config import TrainConfig


def _images(n: int = 16, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=_gen(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _all_batches(x, y, config, epoch):
    return list(train_batches(x, y, config, epoch, mean=0.5, std=0.25))


def test_epoch_generator_depends_on_seed_and_epoch_only():
    def draw(seed: int, epoch: int) -> torch.Tensor:
        return torch.rand(4, generator=epoch_generator(seed, epoch))

    assert torch.equal(draw(0, 1), draw(0, 1))
    assert not torch.equal(draw(0, 1), draw(0, 2))
    assert not torch.equal(draw(0, 1), draw(1, 1))


def test_plain_order_is_a_permutation():
    labels = torch.arange(100) % 4
    order = epoch_order(labels, _gen(0))
    assert torch.equal(order.sort().values, torch.arange(100))


def test_balanced_order_draws_classes_about_equally():
    # 70 % / 20 % / 8 % / 2 % of the images
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate((1400, 400, 160, 40))])
    order = epoch_order(labels, _gen(0), balanced=True)
    assert order.numel() == labels.numel()
    shares = torch.bincount(labels[order], minlength=4).double() / order.numel()
    assert torch.all((shares - 0.25).abs() < 0.03), shares


@pytest.mark.parametrize(("n", "batch_size", "expected"), [(100, 32, 3), (96, 32, 3), (10, 32, 1)])
def test_batches_per_epoch_drops_only_the_short_last_batch(n, batch_size, expected):
    assert batches_per_epoch(n, batch_size) == expected


def test_train_batches_shapes_dtype_and_count():
    x, y = _images(100), torch.arange(100) % 4
    config = TrainConfig(batch_size=32, crop_padding=2)
    batches = _all_batches(x, y, config, epoch=1)
    assert len(batches) == 3
    for images, labels in batches:
        assert images.shape == (32, 1, 8, 8)
        assert images.dtype == torch.float32
        assert labels.dtype == torch.int64


def test_train_batches_repeat_for_the_same_epoch_whatever_happened_before():
    x, y = _images(64), torch.arange(64) % 4
    config = TrainConfig(batch_size=16, crop_padding=2, seed=7)
    first = _all_batches(x, y, config, epoch=3)
    _all_batches(x, y, config, epoch=1)
    torch.manual_seed(12345)  # the global generator plays no part
    again = _all_batches(x, y, config, epoch=3)
    for (a, la), (b, lb) in zip(first, again, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(la, lb)
    other_epoch = _all_batches(x, y, config, epoch=4)
    assert not torch.equal(first[0][1], other_epoch[0][1])


def test_train_batches_without_augmentation_are_the_normalised_images():
    x, y = _images(32), torch.arange(32)
    config = TrainConfig(batch_size=8, flip=False, crop_padding=0)
    for images, labels in _all_batches(x, y, config, epoch=1):
        assert torch.allclose(images, normalize(x[labels], 0.5, 0.25))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_flip_keeps_shape_dtype_and_flips_some(dtype):
    x = _images(64).to(dtype)
    out = random_flip(x, _gen(0))
    assert out.shape == x.shape and out.dtype == dtype
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert torch.all(flipped | kept)  # each image is itself or its mirror
    assert 10 < int(flipped.sum()) < 54
    assert torch.equal(out, random_flip(x, _gen(0)))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_translate_equals_reflect_pad_then_crop(dtype):
    x, p = _images(12, size=9).to(dtype), 3
    shifts = torch.randint(-p, p + 1, (2, 12), generator=_gen(1))
    padded = F.pad(x.float(), (p, p, p, p), mode="reflect")
    expected = torch.stack(
        [
            padded[i, :, p + dy : p + dy + 9, p + dx : p + dx + 9]
            for i, (dy, dx) in enumerate(shifts.T.tolist())
        ]
    ).to(dtype)
    assert torch.equal(translate(x, shifts), expected)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_translate_keeps_shape_dtype_and_is_seeded(dtype):
    x = _images(32, size=10).to(dtype)
    out = random_translate(x, 2, _gen(3))
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(out, random_translate(x, 2, _gen(3)))
    assert not torch.equal(out, random_translate(x, 2, _gen(4)))
    assert not torch.equal(out, x)
    assert random_translate(x, 0, _gen(3)) is x


def test_random_translate_rejects_padding_as_large_as_the_image():
    with pytest.raises(ValueError, match="padding=8"):
        random_translate(_images(2, size=8), 8, _gen(0))


@pytest.mark.parametrize("channels_last", [False, True])
def test_normalize(channels_last):
    x = _images(4)
    out = normalize(x, 0.4, 0.2, channels_last=channels_last)
    assert torch.allclose(out, (x.float() / 255 - 0.4) / 0.2, atol=1e-5)
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)


def test_eval_batches_are_sequential_and_complete():
    x = _images(10)
    batches = list(eval_batches(x, 4, mean=0.5, std=0.25))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat(batches), normalize(x, 0.5, 0.25))
