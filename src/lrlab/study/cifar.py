"""CIFAR-10 from its python-pickle batches on disk, and a ResNet-20 for it (the seeds' setup).

The dataset is read from the standard "CIFAR-10 python version" directory
(``cifar-10-batches-py``: ``data_batch_1`` ... ``data_batch_5``, ``test_batch``,
``batches.meta``); nothing is downloaded. Those files are Python pickles: this module is the one
place in lrlab that unpickles, because it is the dataset's own format, and it does so with a
**restricted unpickler** that only rebuilds dicts, lists, strings, bytes, numbers and NumPy arrays
(the globals ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode``); any other global in the file raises
``ValueError``, so a tampered batch file cannot run code.

Images are scaled to [0, 1] (as in PyImageSearch's "Keras learning rate schedules and decay",
the seeds' Table 1.1: no augmentation, test set as validation). The model is the CIFAR ResNet-20
of He et al. (2016, section 4.2): a 3x3 conv with 16 filters, three stages of three basic blocks
(16, 32, 64 filters, stride 2 between stages, identity shortcuts with zero-padding: "option A"),
global average pooling and a linear layer: 269,722 parameters. The seeds' ResNet
(PyImageSearch's ``ResNet.build(32, 32, 3, 10, (9, 9, 9), (64, 64, 128, 256))``) is a deeper
bottleneck variant of the same family; ResNet-20 keeps a CPU run of one epoch practical.
Defaults follow the seeds: SGD peak lr 0.1 (momentum 0.9 from the study's optimizer), batch 128,
100 epochs. Use ``--device cuda`` for real runs.

>>> m = ResNet20()
>>> sum(p.numel() for p in m.parameters())
269722
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.study.tasks import Task

__all__ = ["CIFAR10_PEAK_LR", "ResNet20", "cifar10_task", "load_cifar10", "read_batch"]

CIFAR10_PEAK_LR: dict[str, float] = {
    "sgd": 0.1,  # the seeds' (PyImageSearch) initial lr with momentum 0.9
    "adam": 1e-3,
    "rmsprop": 1e-3,
    "adagrad": 1e-2,
    "adadelta": 1.0,
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds only builtin containers/scalars and NumPy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            if module == "_codecs":
                import codecs

                return codecs.encode
            import numpy

            if name == "_reconstruct":
                core = getattr(numpy, "_core", None) or numpy.core
                return core.multiarray._reconstruct
            return getattr(numpy, name)
        raise ValueError(f"CIFAR-10 batch refers to {module}.{name}, which a dataset file never needs; refusing to load it")


def read_batch(path: str | Path) -> dict[str, Any]:
    """One CIFAR-10 python batch: ``{"data": uint8 (N, 3072), "labels": int64 (N,)}`` (keys as str).

    Reads with the restricted unpickler (``encoding="bytes"``, as the files were written by
    Python 2); accepts bytes or str keys and ``labels`` or ``fine_labels``.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"CIFAR-10 batch file {str(p)!r} does not exist")
    with p.open("rb") as f:
        try:
            raw = _RestrictedUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError) as e:
            raise ValueError(f"{str(p)!r} is not a CIFAR-10 python batch: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{str(p)!r} is not a CIFAR-10 python batch (expected a dict, got {type(raw).__name__})")
    d = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}
    if "data" not in d or not ("labels" in d or "fine_labels" in d):
        raise ValueError(f"{str(p)!r} has no 'data'/'labels' entries (keys: {sorted(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ValueError(
            f"{str(p)!r}: expected uint8 data of shape (N, 3072) and N labels, got {data.dtype} "
            f"{data.shape} and {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{str(p)!r}: labels must be in 0..9, got {labels.min()}..{labels.max()}")
    return {"data": data, "labels": labels}


def load_cifar10(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 images ``(N, 3, 32, 32)`` in [0, 1], int64 labels.

    ``data_dir`` is the ``cifar-10-batches-py`` directory, or a directory containing it.
    """
    d = Path(data_dir)
    if (d / "cifar-10-batches-py").is_dir():
        d = d / "cifar-10-batches-py"
    if not d.is_dir():
        raise ValueError(f"CIFAR-10 directory {str(d)!r} does not exist")
    missing = [n for n in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"] if not (d / n).is_file()]
    if missing:
        raise ValueError(
            f"{str(d)!r} is not a CIFAR-10 python directory: missing {', '.join(missing)} "
            "(get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it)"
        )
    train = [read_batch(d / f"data_batch_{i}") for i in range(1, 6)]
    test = read_batch(d / "test_batch")

    def images(a: np.ndarray) -> np.ndarray:
        return (a.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)

    x_train = images(np.concatenate([b["data"] for b in train]))
    y_train = np.concatenate([b["labels"] for b in train])
    return x_train, y_train, images(test["data"]), test["labels"]


class _Block(nn.Module):
    """Basic residual block: conv3x3-BN-ReLU-conv3x3-BN, identity shortcut (zero-padded when widening)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016, 6n+2 layers with n=3, option-A shortcuts)."""

    def __init__(self, num_classes: int = 10, n: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers: list[nn.Module] = []
        cin = 16
        for i, cout in enumerate((16, 32, 64)):
            for j in range(n):
                layers.append(_Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(h.mean(dim=(2, 3)))


def cifar10_task(
    data_dir: str | None = None,
    *,
    batch_size: int = 128,
    epochs: int = 100,
    subset: int | None = None,
    test_subset: int | None = None,
    peak_lr: dict[str, float] | None = None,
) -> Task:
    """CIFAR-10 with ResNet-20: the seeds' setup (SGD 0.1 with momentum 0.9, batch 128, 100 epochs).

    Args:
        data_dir: the ``cifar-10-batches-py`` directory (or its parent). Required.
        batch_size, epochs: training defaults.
        subset, test_subset: keep only the first N train / test images (quick looks, tests).
        peak_lr: overrides of :data:`CIFAR10_PEAK_LR`.
    """
    if not data_dir:
        raise ValueError("the cifar10 task needs the dataset directory: --data DIR (or data_dir=...)")
    for nm, v in (("subset", subset), ("test_subset", test_subset)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{nm} must be a positive int, got {nm}={v!r}")
    x, y, xt, yt = load_cifar10(data_dir)
    if subset is not None:
        x, y = x[:subset], y[:subset]
    if test_subset is not None:
        xt, yt = xt[:test_subset], yt[:test_subset]
    lrs = dict(CIFAR10_PEAK_LR)
    lrs.update(peak_lr or {})
    return Task(
        name="cifar10",
        x_train=torch.from_numpy(np.ascontiguousarray(x)),
        y_train=torch.from_numpy(y),
        x_test=torch.from_numpy(np.ascontiguousarray(xt)),
        y_test=torch.from_numpy(yt),
        model_fn=ResNet20,
        batch_size=batch_size,
        epochs=epochs,
        peak_lr=lrs,
        fleet_model=None,
    )
