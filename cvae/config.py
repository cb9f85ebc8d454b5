"""One flat configuration for model, loss and training: what a search varies and finalize retrains.

Configuration is pydantic models built on `Model`: unknown keys are refused, types and ranges are
declared on the fields, and a bad value raises the model's `UserError` as one line that names the
key path, e.g. ``lr: must be > 0, got 0``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import UserError
from .functions import OFFICIAL_FUNCTIONS, FunctionPair


class ConfigError(UserError):
    """A configuration value or key that cannot be used."""


class At(ConfigError):
    """A validator's error about a key below the value it checks: `At("low", ...)` is reported at `<here>.low`
    (a ValueError, as pydantic wants of a validator; a ConfigError, should it reach a user unwrapped)."""

    def __init__(self, loc, message: str):
        super().__init__(message)
        self.loc = loc if isinstance(loc, tuple) else (loc,)


# pydantic's error types -> the words of the one line (ctx values fill the braces; ", got <input>" follows)
MESSAGES = {
    "missing": "missing",
    "too_short": "must not be empty",
    "greater_than": "must be > {gt:g}",
    "greater_than_equal": "must be >= {ge:g}",
    "finite_number": "expected a finite number",
    "string_type": "expected text",
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "expected a mapping"),
    **dict.fromkeys(("list_type", "tuple_type"), "expected a list"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "expected true or false"),
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "expected an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "expected a number"),
}


def key_path(loc) -> str:
    """('start_points', 0, 'lr') -> 'start_points[0].lr'; a key that is no plain word is quoted ('a b' -> "'a b'")."""
    text = ""
    for part in loc:
        if not isinstance(part, int) and not str(part).replace("_", "a").replace("-", "a").isalnum():
            part = repr(str(part))
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def first_error(err: ValidationError, raw) -> tuple[tuple, str]:
    """The first error of `err` as (key path, message); `raw`, the input, tells a tagged union's tag from a key."""
    error = err.errors(include_url=False)[0]
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    loc, node = [], raw
    for part in error["loc"]:
        if part == "[key]" or (isinstance(node, dict) and part not in node and node.get("type") == part):
            continue  # a dict's key, or the tag pydantic names a tagged union's member by: space.lr.loguniform.low
        loc.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    if isinstance(ctx.get("error"), Exception):  # raised by a validator: its own text
        return (*loc, *getattr(ctx["error"], "loc", ())), str(ctx["error"])
    if kind == "literal_error":  # expected: "'a', 'b' or 'c'"
        return tuple(loc), f"{value!r} is not one of {ctx['expected'].replace(' or ', ', ').replace(chr(39), '')}"
    if kind.startswith("union_tag"):  # a tagged union's `type:` is missing or unknown
        tags = ctx.get("expected_tags", "").replace("'", "")
        return (*loc, "type"), f"{ctx['tag']!r} is not one of {tags}" if "tag" in ctx else "missing"
    message = MESSAGES[kind].format(**ctx) if kind in MESSAGES else error["msg"]
    return tuple(loc), message if kind == "missing" else f"{message}, got {value!r}"


def one_line(err: ValidationError, raw, where: tuple = ()) -> str:
    loc, message = first_error(err, raw)
    path = key_path((*where, *loc))
    return f"{path}: {message}" if path else message


class Model(BaseModel):
    """A configuration section: unknown keys are refused; an error raises `error` as one line naming the key."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    error: ClassVar[type[UserError]] = ConfigError

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise type(self).error(one_line(err, values)) from None

    # pydantic's own mark of its __init__: validation (model_validate, nested sections) skips this wrapper,
    # so a nested model's error keeps its whole key path and is converted once, at the top
    __init__.__pydantic_base_init__ = True

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, values):
        """extra="forbid", with the allowed keys named."""
        for key in values if isinstance(values, dict) else ():
            if key not in cls.model_fields:
                raise At(key, f"unknown key; allowed are {', '.join(cls.model_fields)}")
        return values

    @classmethod
    def from_dict(cls, values: dict | None = None, where: tuple = ()):
        """Validate a plain dict (YAML, a search trial); errors name their key below `where`."""
        try:
            return cls.model_validate({} if values is None else values)
        except ValidationError as err:
            raise cls.error(one_line(err, values, where)) from None

    def replace(self, **changes):
        """A copy with `changes`, validated (pydantic's model_copy(update=...) would not validate them)."""
        return type(self)(**{**self.model_dump(), **changes})


def validated(model: type[Model], values: dict, *where):
    """`model` built from `values` inside another model's validator: an error is an `At` the path below `where`."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        loc, message = first_error(err, values)
        raise At((*where, *loc), message) from None


def _not_bool(value):
    if isinstance(value, bool):  # pydantic reads True as 1; a flag where a number goes is a mistake
        raise ValueError(f"expected a number, got {value!r}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]


def _function_pair(texts: tuple) -> tuple:
    pair = FunctionPair(texts)  # a FunctionSyntaxError names the bad token
    if pair.continuum():  # training would run, but its validation (branches, coverage) cannot
        raise ValueError(f"{pair.continuum()}; use two functions whose arguments are independent")
    return pair.texts


Functions = Annotated[tuple[str, ...], AfterValidator(_function_pair)]


class Config(Model):
    functions: Functions = OFFICIAL_FUNCTIONS
    # latent: a Gaussian z (the original), or a component c of `components` with a learned prior p(c | y)
    latent: Literal["gaussian", "categorical"] = "gaussian"
    components: Int = Field(48, gt=0)  # categorical: line pairs the decoder proposes per condition
    sigma: Float = Field(0.01, gt=0)  # categorical: std of each component's Gaussian in endpoint space
    sigma_start: Float = Field(0.0, ge=0)  # categorical: > sigma anneals geometrically from this to sigma ...
    sigma_anneal: Int = Field(0, ge=0)  # ... over this many epochs (wide early, so every component finds a solution)
    wv: Float = Field(0.0, ge=0)  # categorical: weight of the cross-entropy pulling p(c | y) to components that fit y
    # categorical precision phase: over the last `precision_epochs` epochs sigma falls on to `sigma_final` (0: off)
    sigma_final: Float = Field(0.0, ge=0)
    precision_epochs: Int = Field(0, ge=0)
    prior_temperature: Float = Field(1.0, gt=0)  # categorical: c ~ p(c | y)^(1/T) when sampling; < 1 sharpens
    prior_sampling: Literal["independent", "systematic"] = "independent"  # categorical: how S draws of c are made
    # what the network sees of the condition: y itself, or y and arccos(y) (cvae/model.py, condition_inputs)
    condition_features: Literal["y", "y_arccos"] = "y"
    # model (categorical: always an MLP on y with a lines head)
    model: Literal["conv", "mlp"] = "conv"  # the original conv encoder/decoder, or an MLP
    head: Literal["points", "lines"] = "points"  # 50x2 points as the original, or 4 monotone line endpoints
    latent_dim: Int = Field(8, gt=0)
    hidden: Int = Field(128, gt=0)  # width of the fully connected layers
    depth: Int = Field(2, gt=0)  # hidden layers of the MLP encoder and decoder
    encoder_sees_y: bool = False  # the original encoder saw x alone
    # loss: beta*KLD + wx*recon(x) + wy*mse(f(x_hat), y)
    beta: Float = Field(1.0, ge=0)
    wx: Float = Field(1.0, ge=0)
    wy: Float = Field(1.0, ge=0)
    recon: Literal["huber", "l1", "mse"] = "huber"
    free_bits: Float = Field(0.0, ge=0)  # per-latent-dimension KLD floor against posterior collapse
    beta_warmup: Int = Field(0, ge=0)  # epochs over which beta ramps up linearly from 0
    wy_delay: Int = Field(0, ge=0)  # epochs trained without the y-term (and wv) before they apply
    # optimisation
    optimizer: Literal["Adam", "RMSprop", "SGD"] = "Adam"
    lr: Float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 over `epochs`, for precision
    weight_decay: Float = Field(0.0, ge=0)
    batch_size: Int = Field(256, gt=0)
    epochs: Int = Field(20, gt=0)
    seed: Int = 0
    # sampling used for validation
    noise: Literal["prior", "encoder"] = "prior"  # z ~ N(0, I), or noise through the encoder as the original did
    val_samples: Int = Field(30, gt=0)
    val_refine_steps: Int = Field(0, ge=0)  # > 0: also score the samples after this many LM refinement steps

    @field_validator("*", mode="before")
    @classmethod
    def _any_case(cls, value, info):
        """A choice matches in any case: rmsprop is RMSprop."""
        annotation = cls.model_fields[info.field_name].annotation
        if get_origin(annotation) is Literal:
            return next((a for a in get_args(annotation) if str(value).lower() == a.lower()), value)
        return value

    @model_validator(mode="after")
    def _categorical_family(self):
        if self.latent == "categorical":
            self.model, self.head = "mlp", "lines"  # what the categorical family is built of
        return self

    def to_dict(self) -> dict:
        """Plain Python values only, so checkpoints load with weights_only=True."""
        return {**self.model_dump(), "functions": list(self.functions)}
