"""Settings of the steering stage (``[steer]`` in a run configuration) and its conditions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from babelscope.errors import BabelscopeError

# "none" is the dose K = 0; every other condition forces K units for each K of the grid.
CONDITIONS: tuple[str, ...] = ("experts", "none", "random", "other_concept", "other_lang")
CONDITION_LABELS = {
    "experts": "experts forced",
    "none": "no forcing",
    "random": "layer-matched random units",
    "other_concept": "another concept's experts",
    "other_lang": "experts from another language",
}
BASELINES: tuple[str, ...] = ("random", "other_concept", "other_lang")
STATISTICS: tuple[str, ...] = ("pooled", "token", "max")
RESULT_FILE = "steering.parquet"

# The embedded default study (a 2,048-unit model on a 2-core CPU) steers a smaller grid
# so the stage fits its share of the demo's time budget; see docs/results.md for the cost.
# Measured (step 1536 alone, 510 outputs): 97 s of CPU under load, a third of it measuring
# values (since read off the base model only, without the output head).
EMBEDDED_DEFAULTS: dict[str, Any] = {
    "seeds": 30,
    "k": [300, 1000],  # at K <= 100 nothing moved on the embedded model (docs/results.md)
    "checkpoints": 2,
    "max_concepts": 2,
}


class SteerSettings(BaseModel):
    """Settings of the steering stage.

    A **dose-response**: for each K of ``k`` (capped at half the model's units, so that a
    random draw outside the experts exists) the top-K experts of each concept in
    ``source_lang`` are forced, beside the baselines: no forcing (K = 0); K random units
    matched to the experts' layers and shifted by the same amount in units of each unit's
    standard deviation (``random_draws`` draws); the top-K experts of another concept in
    ``source_lang``; the concept's top-K experts found in ``other_lang``.

    Forced values (``statistic``, ``mode``): ``pooled`` is the median of the positives'
    sentence means (how the experts were scored; ``on_p50``), ``token`` the median over the
    tokens of the positive sentences, ``max`` the median of the positives' per-sentence
    maxima. The "off" value is the matching mean over negative sentences. ``set`` writes
    the on value at every position; ``add`` shifts each unit by on - off.

    Default ``pooled``/``set``, chosen by measurement on the embedded series (last
    checkpoint, 2 concepts, 30 seeds, K 30..1000; docs/results.md): it was the only one of
    the six combinations under which the Spanish experts raised Spanish output beyond
    both no forcing and the layer-matched random units (47 % [35, 59] at K = 1000 against
    7 % and 0 %; token/set 22 %, max/set 0 %, the additive modes moved nothing: their
    shifts are about 0.1-0.9 of a unit's spread).
    """

    model_config = ConfigDict(extra="forbid")

    concepts: list[str] | None = Field(
        None, description="Concepts to steer; None: those with the strongest held-out experts"
    )
    max_concepts: int | None = Field(
        4, ge=1, description="With concepts = None: at most this many (strongest first)"
    )
    source_lang: str = Field("spa", description="Language the experts were found in (ISO 639-3)")
    other_lang: str = Field(
        "swa", description="Source language of the other_lang baseline (a low-resource one)"
    )
    k: list[int] = Field(
        default_factory=lambda: [10, 30, 100, 300, 1000],
        description="The K grid: units forced per condition (K = 0 is the 'none' condition)",
    )
    statistic: Literal["pooled", "token", "max"] = Field(
        "pooled", description="Forced value: pooled (on_p50), token or max (see the class doc)"
    )
    mode: Literal["set", "add"] = Field("set", description="set: overwrite; add: shift by on - off")
    conditions: list[Literal["experts", "none", "random", "other_concept", "other_lang"]] = Field(
        default_factory=lambda: list(CONDITIONS)
    )
    random_draws: int = Field(5, ge=1, description="Draws of the random-units baseline")
    random_seeds: Literal["split", "all"] = Field(
        "split",
        description="split: seed s runs under draw s % random_draws (every seed once, paired "
        "with the other conditions); all: every draw runs every seed",
    )
    seeds: int = Field(100, ge=1, description="Seeds 0..seeds-1, one output each")
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.8, ge=0.0, description="0: greedy")
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    prompt: str | None = Field(None, description="None: BOS alone (explicit </s> without BOS)")
    steps: list[int] | None = Field(None, description="Checkpoints to steer; None: see checkpoints")
    checkpoints: int | None = Field(
        3,
        ge=1,
        description="Without steps: steer this many checkpoints spread evenly from the first "
        "to the last (both included); None: every checkpoint.",
    )
    batch_size: int | None = Field(None, ge=1, description="Seeds per batch; None: all at once")
    use_cache: bool = True
    random_seed: int = Field(0, description="Seed of the random-units draws")
    value_sentences: int = Field(
        200, ge=1, description="Negative sentences (per language) for off values and spreads"
    )
    fluency: bool = Field(True, description="Score each output's loss under the unforced model")
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Language-ID confidence below which 'und'"
    )

    @field_validator("statistic", mode="before")
    @classmethod
    def _statistic(cls, v: Any) -> Any:
        return "pooled" if v == "on_p50" else v  # the old name of the pooled median

    @field_validator("k", mode="before")
    @classmethod
    def _k(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("k")
    @classmethod
    def _k_grid(cls, v: list[int]) -> list[int]:
        ks = sorted({int(x) for x in v if int(x) > 0})
        if not ks or any(int(x) < 0 for x in v):
            raise ValueError("the K grid needs whole numbers >= 1 (K = 0 is the 'none' condition)")
        return ks

    @field_validator("source_lang", "other_lang")
    @classmethod
    def _lang(cls, v: str) -> str:
        from babelscope.languages import check_languages

        try:
            return check_languages([v])[0]
        except BabelscopeError as e:
            raise ValueError(str(e)) from None

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"no conditions: choose from {', '.join(CONDITIONS)}")
        return [c for c in CONDITIONS if c in v]

    def resolve_ks(self, total_units: int) -> list[int]:
        """The K grid for a model with ``total_units`` units: capped at half of them."""
        cap = total_units // 2
        if cap < 1:
            raise BabelscopeError(f"the model has {total_units} unit(s): steering needs at least 2")
        return sorted({min(k, cap) for k in self.k})

    def for_embedded(self) -> SteerSettings:
        """These settings with :data:`EMBEDDED_DEFAULTS` for every field not set explicitly."""
        update = {k: v for k, v in EMBEDDED_DEFAULTS.items() if k not in self.model_fields_set}
        return self.model_copy(update=update)
