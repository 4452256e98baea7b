"""Seeded, sharded data loading and per-epoch reseeding for training.

Shuffling (seeded_loader) and the global RNGs (reseeded at every epoch start by EpochSeed)
depend only on (seed, epoch), so a run interrupted and resumed from last.ckpt ends where an
uninterrupted run ends, on CPU. Samplers give each rank an interleaved shard of one (seed,
epoch) order, so N processes with batch B step through the same global batches as one process
with batch N*B.
"""

from __future__ import annotations

import functools
import math
import random

import numpy as np


def process_group() -> tuple[int, int]:
    """(global rank, world size) of this process; (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@functools.cache
def _shard_sampler_class():
    from torch.utils.data import DistributedSampler

    class EpochShuffle(DistributedSampler):
        """This process's shard of one order that depends only on (seed, epoch).

        The order (a seeded permutation, or 0..size-1 without shuffle) is padded by wrapping to a
        multiple of the world size, and rank r takes every world-th index from r on: with N
        processes of batch B, the k-th batches of all ranks together are the k-th batch of B*N
        that one process would draw. A DistributedSampler, so Lightning keeps it as it is and
        calls set_epoch.

        Validation orders are padded too, so up to world - 1 items count twice in an epoch's
        validation means. Unequal shards would score each item once, but Lightning's average
        over the ranks then goes wrong: it averages each rank's batch-weighted sum and its
        integer count of samples, and on gloo truncates the count's average (5 items on 2
        ranks: 2.5 counted as 2), which is off far more than one duplicate.
        """

        def __init__(self, size: int, seed: int, shuffle: bool, rank: int, world: int) -> None:
            super().__init__(range(size), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
            self.size = size
            self.with_epoch = False  # yield index + epoch * size, for EpochItems

        def __iter__(self):
            import torch

            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
                order = torch.randperm(self.size, generator=generator).tolist()
            else:
                order = list(range(self.size))
            if order and len(order) < self.total_size:
                order = (order * math.ceil(self.total_size / len(order)))[: self.total_size]
            shard = order[self.rank : self.total_size : self.num_replicas]
            offset = self.epoch * self.size if self.with_epoch else 0
            return iter([index + offset for index in shard])

    return EpochShuffle


@functools.cache
def _epoch_items_class():
    from torch.utils.data import Dataset, get_worker_info

    class EpochItems(Dataset):
        """A dataset read through keys index + epoch * size (EpochShuffle.with_epoch): in a
        worker process each item is drawn with the global RNGs seeded from (seed, epoch, index),
        so random augmentation does not depend on which worker reads it, nor on how long the
        workers have lived (a resumed run's workers start afresh); in the main process the
        RNGs stay as EpochSeed set them."""

        def __init__(self, dataset, seed: int) -> None:
            self.dataset, self.seed, self.size = dataset, seed, len(dataset)

        def __len__(self) -> int:
            return self.size

        def __getitem__(self, key: int):
            epoch, index = divmod(int(key), self.size)
            if get_worker_info() is not None:
                state = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)
                seed_all(int(state[0]))
            return self.dataset[index]

    return EpochItems


def EpochShuffle(  # noqa: N802 - a factory, so torch loads only when a sampler is made
    size: int, seed: int, shuffle: bool = True, rank: int | None = None, world: int | None = None
):
    """A sampler of one process's shard of a (seed, epoch) order (see _shard_sampler_class);
    rank and world default to this process's place in the process group."""
    if rank is None or world is None:
        rank, world = process_group()
    return _shard_sampler_class()(size, seed, shuffle, rank, world)


def seeded_loader(
    dataset, batch_size: int, seed: int, shuffle: bool, num_workers: int = 0, epoch: int = 0
):
    """DataLoader over this process's shard; the order depends only on (seed, epoch).

    It carries its own generator, so creating its iterator draws nothing from the global RNG.
    With worker processes, each item is read with the RNGs seeded from (seed, epoch, index)
    (EpochItems), so random augmentation depends only on (seed, epoch) there too, whatever the
    worker count. epoch: the epoch the loader's first iterator serves (loader_epoch): Lightning
    starts a multi-process loader's first iterator, which reads ahead, before it sets the epoch,
    so a resumed run's first epoch drew the order of epoch 0. Validation loaders are sharded
    too (padded by wrapping), so metrics logged with sync_dist=True are reduced over every
    sample. A shuffled (training) loader drops a last
    batch of one sample: batch normalisation cannot train on it.
    """
    import torch
    from torch.utils.data import DataLoader

    sampler = EpochShuffle(len(dataset), seed, shuffle)
    sampler.set_epoch(epoch)
    if num_workers > 0:
        sampler.with_epoch = True
        dataset = _epoch_items_class()(dataset, seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=drops_lone_last(len(sampler), batch_size, shuffle),
        generator=torch.Generator().manual_seed(seed),
    )


def drops_lone_last(shard: int, batch_size: int, shuffle: bool) -> bool:
    """seeded_loader's rule: a shuffled loader of shard samples drops a last batch of one."""
    return shuffle and shard > batch_size and shard % batch_size == 1


def shard_batches(items: int, batch_size: int, shuffle: bool, world: int = 1) -> tuple[int, int]:
    """(batches per epoch, samples in the smallest batch) that seeded_loader gives each of world
    processes over items samples (each reads ceil(items / world) of them)."""
    shard = math.ceil(items / world)
    batches = math.ceil(shard / batch_size)
    if drops_lone_last(shard, batch_size, shuffle):
        return batches - 1, batch_size
    return batches, shard - (batches - 1) * batch_size if batches else 0


def split_batches(datamodule, world: int) -> dict[str, tuple[int, int, int, int]]:
    """{"training" | "validation": (items, batch size, batches per epoch, smallest batch)} of a
    data module's seeded loaders on each of world processes, without a Trainer (calls its setup
    first, as Lightning would)."""
    datamodule.setup("fit")
    loaders = {"training": datamodule.train_dataloader(), "validation": datamodule.val_dataloader()}
    sizes = {}
    for split, loader in loaders.items():
        items, batch = len(loader.dataset), loader.batch_size
        shuffle = bool(getattr(loader.sampler, "shuffle", False))
        sizes[split] = (items, batch, *shard_batches(items, batch, shuffle, world))
    return sizes


SPLIT_SETS = (("training", "train"), ("validation", "val"))  # datamodule.train_set, .val_set


def split_record(datamodule, root: str | None) -> dict | None:
    """{"training": items, "validation": items, "sha256": digest of each split's sources in
    order} of a set-up data module whose datasets name their items (sources(): image paths,
    patients), with each file's size: paths are taken relative to the data root, so the same
    set moved elsewhere gives the same record, and another set under the same names almost
    surely does not; None when a dataset names none (a task that draws its own data)."""
    import hashlib
    from pathlib import Path

    splits = {split: getattr(datamodule, f"{key}_set", None) for split, key in SPLIT_SETS}
    if not all(callable(getattr(dataset, "sources", None)) for dataset in splits.values()):
        return None
    base = Path(root).expanduser().absolute() if root else None
    digest = hashlib.sha256()
    for split, dataset in splits.items():
        for source in dataset.sources():
            path = Path(source)
            size = path.stat().st_size if path.is_file() else -1
            for root_as in (base, base.resolve()) if base is not None else ():
                if path.is_absolute() and path.is_relative_to(root_as):  # as given, or linked
                    source = path.relative_to(root_as).as_posix()
                    break
            digest.update(f"{split}\t{source}\t{size}\n".encode())
    record = {split: len(dataset) for split, dataset in splits.items()}
    return {**record, "sha256": digest.hexdigest()}


def loader_epoch(datamodule) -> int:
    """The epoch a data module's training loader is made for, as Lightning will set it on the
    sampler: the fit loop's processed epochs (restored on a resume; current_epoch lags one
    behind when the checkpoint was taken at an epoch's end), else 0."""
    trainer = getattr(datamodule, "trainer", None)
    loop = getattr(trainer, "fit_loop", None)
    return int(loop.epoch_progress.current.processed) if loop is not None else 0


class SplitLoaders:
    """Mixin for a LightningDataModule holding `cfg`, `train_set` and `val_set`: seeded loaders."""

    def train_dataloader(self):
        cfg = self.cfg
        return seeded_loader(
            self.train_set, cfg.batch_size, cfg.seed, True, cfg.num_workers, loader_epoch(self)
        )

    def val_dataloader(self):
        cfg = self.cfg
        return seeded_loader(self.val_set, cfg.batch_size, cfg.seed, False, cfg.num_workers)


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@functools.cache
def _epoch_seed_class():
    import lightning as L

    class EpochSeed(L.Callback):
        """Reseed the global RNGs at each epoch start from (seed, epoch)."""

        def __init__(self, seed: int) -> None:
            self.seed = seed

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            seed_all(self.seed * 1000 + trainer.current_epoch + 7 * trainer.global_rank)

    return EpochSeed


def EpochSeed(seed: int):  # noqa: N802 - factory keeps lightning out of module import
    """A Lightning callback reseeding the global RNGs at each epoch start from (seed, epoch)."""
    return _epoch_seed_class()(seed)
