"""The run configuration: one YAML with sections ``space``, ``strategy``, ``data``, ``search``, ``train``.

Every key has a default (so ``archgraph search`` runs with no file at all); a YAML file overrides
some; ``--set section.key=value`` overrides any (values parsed as YAML: ``data.crop=[96,128]``).
Numbers are read as people write them, in files and in ``--set`` alike: ``4e-5``, ``1E-3`` and ``.5``
are numbers wherever a number is expected (:func:`archgraph.configtools.parse_float`).
The ``space`` and ``strategy`` sections are checked against the parameters of the space or strategy
they name, so ``space.layer=3`` fails with "did you mean 'space.layers'?" before anything runs.
Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from archgraph.io import load_yaml_file, load_yaml_text
from archgraph.configtools import bounded, dataclass_from_dict, one_of, to_plain, unknown_key_error
from archgraph.errors import ConfigError


MAX_EPOCHS = 100_000  # search.epochs / train.epochs: papers use hundreds; 10^9 is a typo, not a plan


@dataclass
class DataConfig:
    name: str = "synthetic"  # camvid | cityscapes | voc | ade20k | pascal_context | synthetic
    root: str | None = None  # dataset folder (not needed for synthetic)
    crop: tuple[int, int] = bounded((64, 64), 1)  # training crop (H, W); synthetic image size
    scale: float = bounded(1.0, 0, 8, lo_open=True)  # resize every image by this factor first (0.5 = the low-resolution proxy)
    batch_size: int = bounded(4, 1)
    num_samples: int = bounded(256, 1)  # synthetic: samples per split
    num_classes: int = bounded(0, 0)  # synthetic / pascal_context variant; 0 = the dataset's default
    train_split: str = "train"
    val_split: str = "val"
    val_limit: int = bounded(0, 0)  # evaluate on the first N validation images only (0 = all)
    # DataLoader worker processes decoding and augmenting (persistent for a run; the same batches and results as 0; docs/gpu.md)
    workers: int = bounded(0, 0, 64, why="each worker is a process holding a copy of the dataset; 2-8 keep one GPU fed")
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific loader options (docs/datasets.md)


@dataclass
class SearchConfig:
    epochs: int = bounded(6, 1, MAX_EPOCHS, why="a bound on what can finish; a long run prints its expected length after its first epoch")
    warmup_epochs: int = bounded(2, 0)  # weight-only epochs before architecture updates
    split_ratio: float = bounded(0.5, 0, 1, lo_open=True, hi_open=True)  # fraction of the training set used as trainA (weights); the rest is trainB
    # The selection split: what every decision that picks an architecture scores on (SPOS's evolution,
    # selectors), carved from the TRAINING data, never data.val (which only reports): trainB's images
    # (without augmentation) | holdout (a seeded holdout_fraction of the training images, removed from trainA/trainB)
    select_split: str = one_of("trainB", "holdout")
    holdout_fraction: float = bounded(0.1, 0, 1, lo_open=True, hi_open=True)
    # official: each paper's ratios | equal-steps: the same weight and architecture steps for every strategy |
    # equal-time: the same wall clock of search steps (time_budget_s), epochs planned by a calibration (docs/strategies.md)
    budget: str = one_of("official", "equal-steps", "equal-time")
    time_budget_s: float = bounded(0.0, 0)  # equal-time: seconds of search steps per search (required there)
    calibration_steps: int = bounded(3, 1)  # equal-time: timed steps of the calibration that plans the epochs
    # the selection stage after the search (docs/strategies.md "Selection"): null = the strategy's own rule
    # (the decoder's argmax; SPOS's evolution; rsws's topk:N:uniform) | argmax | topk[:K][:uniform] | perturb[:tune=N] | proxy:NAME[:K]
    select: str | None = None
    w_lr: float = bounded(0.05, 0, lo_open=True)  # SGD for weights
    w_lr_min: float = bounded(0.001, 0)  # cosine annealing floor
    w_momentum: float = bounded(0.9, 0, 1, hi_open=True)
    w_weight_decay: float = bounded(3e-4, 0)
    grad_clip: float = bounded(5.0, 0)
    # Adam on alpha/beta. null = the strategy's own default (dcnas, darts: lr 0.01, no decay; see
    # docs/strategies.md); pc_darts, p_darts and proxylessnas read strategy.arch_* instead.
    arch_lr: float | None = bounded(None, 0, lo_open=True)
    arch_betas: tuple[float, float] = bounded((0.5, 0.999), 0, 1, hi_open=True)
    arch_weight_decay: float | None = bounded(None, 0)  # Adam's coupled L2 on alpha/beta (before: 1e-3)
    # BatchNorm inside candidate ops and input-choice branches of the supernet keeps gamma/beta.
    # null = the strategy's official code (false: DARTS family, DCNAS, SPOS; true: ProxylessNAS).
    # Stand-alone training of a derived architecture always uses affine BatchNorm.
    affine_bn: bool | None = None
    flops_weight: float = bounded(0.0, 0)  # weight of the expected-FLOPs regulariser (0 = off)
    entropy_weight: float = bounded(0.0, 0)  # weight of the entropy regulariser on alpha and beta (0 = off)
    # A cost budget every strategy honours (docs/costs.md, "Budgets"): latency=33ms@512x1024 | flops=1.5G | params=2M
    # (null = none). Differentiable strategies: a hinge on the expected cost; proxylessnas: its hardware loss's
    # target; spos, rsws, random baselines, topk/proxy selection: candidates over it are rejected before scoring.
    cost_limit: str | None = None
    cost_table: str | None = None  # a latency table file from `archgraph latency` (null = measured at the start of the search)
    cost_weight: float = bounded(1.0, 0)  # weight of the budget hinge on the relative excess E[cost]/limit - 1 (doubled each epoch the result misses)
    bn_recalib_batches: int = bounded(4, 1)  # training batches to re-estimate BN statistics for S-mIoU (at least one: the statistics are reset first)
    steps_per_epoch: int = bounded(0, 0)  # cap on steps per epoch (0 = a full pass over trainA)
    eval_every: int = bounded(1, 0)  # S-mIoU every N epochs (and at the end)
    deterministic: bool = True  # torch.use_deterministic_algorithms on CPU
    checkpoint_every: int = bounded(0, 0)  # also checkpoint every N steps inside an epoch (0 = after each epoch only)
    on_nonfinite: str = one_of("stop", "skip")  # a NaN/Inf loss: stop (keep the last good checkpoint) | skip (drop the batch)
    amp: str = one_of("auto", "bf16", "fp32")  # bf16 autocast of the forward passes: auto = on for a CUDA device, off on CPU
    channels_last: str = one_of("auto", "channels_last", "contiguous")  # channels-last memory format: auto = on for a CUDA device, off on CPU
    sync_bn: bool = True  # under torchrun: BatchNorm statistics over the global batch (all processes)
    tensorboard: bool = False  # TensorBoard event files in the run folder (needs `pip install "archgraph[tensorboard]"`)
    # hooks by name around the loop's steps (archgraph.engine.hooks, docs/plugins.md "Hooks"), e.g. [early_stopping:metric=s_miou:patience=2]
    hooks: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    epochs: int = bounded(20, 1, MAX_EPOCHS, why="a bound on what can finish; a long run prints its expected length after its first epoch")
    lr: float = bounded(0.05, 0, lo_open=True)
    momentum: float = bounded(0.9, 0, 1, hi_open=True)
    weight_decay: float = bounded(4e-5, 0)
    poly_power: float = bounded(0.9, 0)
    eval_every: int = bounded(1, 0)
    steps_per_epoch: int = bounded(0, 0)  # cap (0 = a full pass)
    multi_scale_eval: list[float] = field(default_factory=lambda: [1.0])  # e.g. [0.75, 1.0, 1.25]
    flip_eval: bool = False
    deterministic: bool = False
    amp: str = one_of("auto", "bf16", "fp32")  # bf16 autocast of the training forward passes: auto = on for a CUDA device
    channels_last: str = one_of("auto", "channels_last", "contiguous")  # channels-last memory format: auto = on for a CUDA device
    sync_bn: bool = True  # under torchrun: BatchNorm statistics over the global batch (all processes)
    compile: bool = False  # torch.compile the network for the training steps (evaluation stays eager; checkpoints hold the plain module's weights)
    init_from: str | None = None  # a training run folder or checkpoint: start from its weights (same name and shape; a head for other classes starts fresh)
    tensorboard: bool = False  # TensorBoard event files in the run folder (needs `pip install "archgraph[tensorboard]"`)
    # hooks by name around the loop's steps (archgraph.engine.hooks), e.g. [early_stopping:patience=3] (stops on val mIoU)
    hooks: list[str] = field(default_factory=list)


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | cuda:N
    space: dict[str, Any] = field(default_factory=lambda: {"name": "dcss"})
    strategy: dict[str, Any] = field(default_factory=lambda: {"name": "dcnas"})
    data: DataConfig = field(default_factory=DataConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def space_name(self) -> str:
        return str(self.space.get("name", "dcss"))

    @property
    def space_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.space.items() if k != "name"}

    @property
    def strategy_name(self) -> str:
        return str(self.strategy.get("name", "dcnas"))

    @property
    def strategy_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.strategy.items() if k != "name"}

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTIONS = {"data": DataConfig, "search": SearchConfig, "train": TrainConfig}
_TOP = ("seed", "device")


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> nested dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set space.layers=6")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml_text(raw, f"--set {raw[:40]}") if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML; quote strings with spaces") from None
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is set both as a value and as a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def given_keys(path: str | Path | None, overrides: Iterable[str], section: str) -> set[str]:
    """The keys of ``section`` that the YAML file or ``--set`` name explicitly (not the defaults a
    loaded config is filled with): what a user asked to change."""
    keys: set[str] = set()
    if path is not None and Path(path).is_file():
        try:
            loaded = load_yaml_file(Path(path)) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            loaded = {}
        if isinstance(loaded, dict) and isinstance(loaded.get(section), dict):
            keys |= set(loaded[section])
    given = parse_overrides(overrides).get(section)
    return keys | (set(given) if isinstance(given, dict) else set())


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), base: dict[str, Any] | None = None) -> Config:
    """Defaults <- ``base`` (e.g. a resumed run's config) <- YAML file <- ``--set`` overrides."""
    raw: dict[str, Any] = dict(base or {})
    if path is not None:
        path = Path(path)
        if path.is_dir():
            inside = path / "config.yaml"
            hint = f"pass {inside}, the config its run saved" if inside.is_file() else "pass a YAML file"
            raise ConfigError(f"config file {path} is a folder; {hint}, or leave it out to use the defaults")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file or leave it out to use the defaults")
        try:
            loaded = load_yaml_file(path) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is a binary file, not a YAML config; pass a config YAML (`archgraph config > config.yaml` writes one)") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config is a mapping of sections (space, strategy, data, search, train)")
        raw = _merge(raw, loaded)
    raw = _merge(raw, parse_overrides(overrides))
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"a config is a mapping of sections (space, strategy, data, search, train), got {raw!r}")
    known = [f.name for f in dataclasses.fields(Config)]
    for key in raw:
        if not isinstance(key, str) or key not in known:
            raise unknown_key_error(str(key), known, "")
    kwargs: dict[str, Any] = {}
    for key in _TOP:
        if key in raw:
            kwargs[key] = dataclass_from_dict(_Top, {key: raw[key]}).__dict__[key]
    for key, cls in _SECTIONS.items():
        section = raw.get(key)
        section = {} if section is None else section
        if not isinstance(section, dict):
            raise ConfigError(f"config section {key!r} must be a mapping, got {section!r}")
        kwargs[key] = dataclass_from_dict(cls, section, key)
    for key, default in (("space", "dcss"), ("strategy", "dcnas")):
        section = raw.get(key)
        section = {} if section is None else section
        if not isinstance(section, dict):
            raise ConfigError(f"config section {key!r} must be a mapping, got {section!r}")
        section = dict(section)
        section.setdefault("name", default)
        if not isinstance(section["name"], str):
            raise ConfigError(f"{key}.name must be a name (see `archgraph {key if key == 'strategy' else 'space'}s`), got {section['name']!r}")
        kwargs[key] = section
    cfg = Config(**kwargs)
    _check_plugin_sections(cfg)
    _check_cost_limit(cfg.search)
    return cfg


def _check_cost_limit(search: SearchConfig) -> None:
    """A wrong ``search.cost_limit`` is named when the config is read, before any data is."""
    if search.cost_limit is None:
        if search.cost_table is not None:
            raise ConfigError("search.cost_table is set but search.cost_limit is not; name a budget, e.g. --set search.cost_limit=latency=33ms@512x1024")
        return
    if not isinstance(search.cost_limit, str):
        raise ConfigError(f"search.cost_limit must be text such as latency=33ms@512x1024, flops=1.5G or params=2M, got {search.cost_limit!r}")
    from archgraph.core.costmodel import parse_cost_limit

    parse_cost_limit(search.cost_limit)


@dataclass
class _Top:
    seed: int = 0
    device: str = "cpu"


def _check_plugin_sections(cfg: Config) -> None:
    """Validate the space and strategy sections against the named plug-in's parameter dataclass."""
    from archgraph.core.registry import get_space, get_strategy

    space = get_space(cfg.space_name)
    cfg.space = {"name": cfg.space_name, **to_plain(dataclass_from_dict(space.params, cfg.space_params, "space"))}
    strategy = get_strategy(cfg.strategy_name)
    cfg.strategy = {"name": cfg.strategy_name, **to_plain(dataclass_from_dict(strategy.params, cfg.strategy_params, "strategy"))}


def default_config_yaml() -> str:
    return config_from_dict({}).to_yaml()
