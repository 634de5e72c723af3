"""Architecture configs of the neural field (hash grid + MLP heads), kept free of torch so that
``humanref config`` and the stage configs can import them without loading the geometry code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class HashGridConfig:
    """Hash grid hyper-parameters; the defaults are the released HumanRef config (method.md §3)."""

    n_levels: int = field(default=16, metadata={"help": "Number of resolution levels L."})
    n_features: int = field(default=2, metadata={"help": "Features per level F (the encoding has L * F)."})
    log2_table: int = field(default=19, metadata={"help": "log2 of the maximum table entries per level."})
    base_res: int = field(default=16, metadata={"help": "Resolution of the coarsest level."})
    per_level_scale: float = field(
        default=1.447269, metadata={"help": "Resolution growth per level (finest ~4096 for 16 levels)."}
    )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FieldConfig:
    """Architecture of :class:`HumanField`; defaults are the released HumanRef config."""

    grid: HashGridConfig = field(
        default_factory=HashGridConfig,
        metadata={
            "help": "Hash grid encoding (16 levels x 2 features, 2^19 table, base 16, scale 1.447269)."
        },
    )
    sdf_levels: int = field(default=8, metadata={"help": "The SDF head reads only the first N grid levels."})
    hidden: int = field(default=64, metadata={"help": "Hidden width of the SDF and colour MLPs."})
    n_hidden_layers: int = field(default=2, metadata={"help": "Hidden layers of the SDF and colour MLPs."})
    fd_eps: float = field(default=0.01, metadata={"help": "Forward-difference step of the normals."})
    inv_std_init_theta: float = field(
        default=0.3, metadata={"help": "Initial theta of inv_std = exp(10 theta) (0.3 -> ~20, beta ~0.05)."}
    )
    bound: float = field(default=1.0, metadata={"help": "Half size of the scene box [-b, b]^3."})
    backend: str = field(
        default="auto",
        metadata={
            "help": "Hash grid backend: auto | torch | tcnn (same field either way).",
            "semantic": False,
        },
    )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FieldConfig:
        d = dict(d)
        d["grid"] = HashGridConfig(**d.get("grid", {}))
        return cls(**d)
