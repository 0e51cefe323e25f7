"""Layer specs: which teacher layers a student keeps ('odd', 'last:4', [1, 4, 7], the data-driven 'angular'), checked
against a teacher's depth, and the stage id each makes. No torch here: the CLI checks a config's layers before it
imports anything heavy."""

from __future__ import annotations

from distill_lora.config import Config, split_recipe
from distill_lora.errors import UserError
from distill_lora.stage_ids import student_id

LAYER_PRESETS = ("odd", "even", "first", "last", "distilbert", "spaced")
_HELP = (
    "use odd, even, first[:k], last[:k], distilbert[:k], spaced[:k], angular[:k] (chosen from the fine-tuned "
    "teacher on validation), or 1-based layer numbers like 1,4,7"
)


def preset_layers(name: str, depth: int, k: int | None = None) -> list[int]:
    """1-based teacher layers of a named strategy; k = student depth (default half the teacher's).

    odd {1,3,5,…}, even {2,4,6,…}, first {1..k}, last {depth-k+1..depth}, distilbert: every other
    layer from the bottom for half the student and from the top for the rest ({1,3,5,8,10,12} of 12,
    as DistilBERT initialised its student), spaced: k layers evenly spaced ending at the top ({3,6,9,12} for 4 of
    12; at half depth the same as even).
    """
    k = depth // 2 if k is None else k
    if name == "odd":
        return list(range(1, depth + 1, 2))
    if name == "even":
        return list(range(2, depth + 1, 2))
    if name == "first":
        return list(range(1, k + 1))
    if name == "last":
        return list(range(depth - k + 1, depth + 1))
    if name == "spaced":
        return [(depth * (i + 1) + k // 2) // k for i in range(k)]  # depth·(i+1)/k rounded half up
    bottom = [1 + 2 * i for i in range((k + 1) // 2)]
    top = [depth - 2 * i for i in range(k // 2)]
    return sorted(set(bottom + top))


def resolve_layers(spec, depth: int) -> list[int]:
    """A strategy name ('odd', 'last:4', …), '1,4,7' or [1, 4, 7] → 1-based teacher layers, checked."""
    if isinstance(spec, str):
        name, _, k = spec.strip().lower().partition(":")
        if name in LAYER_PRESETS:
            if k and name in ("odd", "even"):
                raise UserError(
                    f"layers '{spec}': odd and even take no depth; ':k' is for first, last, distilbert and spaced"
                )
            if k and (not k.isdigit() or not 1 <= int(k) < depth):
                raise UserError(f"layers '{spec}': the student depth after ':' must be 1..{depth - 1}")
            spec = preset_layers(name, depth, int(k) if k else None)
            if len(spec) != (int(k) if k else len(spec)):  # distilbert's bottom and top halves met
                raise UserError(
                    f"layers '{name}:{k}': distilbert takes every other layer from the bottom "
                    f"and from the top, which for {k} layers needs a teacher of at least {2 * int(k) - 2} "
                    f"layers (this one has {depth}); use a smaller depth, first:{k} or a list of layers"
                )
        elif name == "angular":  # train/layer_choice.py: needs the fine-tuned teacher, so the pipeline resolves it
            raise UserError(
                f"layers '{spec}': angular is chosen from a fine-tuned teacher's hidden states, so only distilled "
                "students (distill.layers, distill --layers) can use it; give this model a preset or a list of layers"
            )
        else:
            try:
                spec = [int(p) for p in spec.replace(" ", "").split(",") if p]
            except ValueError:
                raise UserError(f"layers '{spec}': {_HELP}") from None
    if isinstance(spec, int) and not isinstance(spec, bool):  # `distill.layers: [1, 3]` lists two one-layer students
        raise UserError(
            f"layers {spec}: a student spec is a strategy or a list of layers, and {spec} alone is one "
            "number; for a student of layers 1 and 3 write distill.layers: [[1, 3]] (or --layers 1,3)"
        )
    if (
        not isinstance(spec, (list, tuple))
        or not spec
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in spec)
    ):
        raise UserError(f"layers {spec!r}: {_HELP}")
    layers = list(spec)
    bad = [x for x in layers if not 1 <= x <= depth]
    if bad:
        raise UserError(
            f"layers {layers}: {bad} outside 1..{depth} (the teacher has {depth} layers; numbers are 1-based)"
        )
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise UserError(f"layers {layers}: must be strictly increasing, without repeats")
    if len(layers) == depth:
        raise UserError(f"layers {layers}: keeps all {depth} teacher layers; a student must be shallower")
    return layers


def layers_name(layers: list[int], depth: int) -> str:
    """The strategy's name when the list is a half-depth preset ('odd', 'first', …), else '1-4-7'."""
    for preset in LAYER_PRESETS:
        if layers == preset_layers(preset, depth):
            return preset
    return "-".join(map(str, layers))


PRESET = "angular"


def data_driven_depth(spec, depth: int) -> int | None:
    """k when `spec` asks for the data-driven choice ('angular' = half the teacher, 'angular:k'), else None."""
    if not isinstance(spec, str):
        return None
    name, _, k = spec.strip().lower().partition(":")
    if name != PRESET:
        return None
    if k and (not k.isdigit() or not 1 <= int(k) < depth):
        raise UserError(f"layers '{spec}': the student depth after ':' must be 1..{depth - 1}")
    return int(k) if k else depth // 2


def student_stage(entry, depth: int) -> str:
    """A distill.layers entry ('odd', 'last:4', [1, 4], 'angular', 'odd.ce' with a recipe) → its stage id (checked)."""
    spec, recipe = split_recipe(entry)
    k = data_driven_depth(spec, depth)
    if k:  # chosen from the teacher later: named by the rule, not by its layers
        name = "angular" if k == depth // 2 else f"angular{k}"
    else:
        name = layers_name(resolve_layers(spec, depth), depth)
    return student_id(name + (f".{recipe}" if recipe else ""))


def check_layers(cfg: Config, depth: int, layer_specs: tuple = ()) -> None:
    """Every layer list of the config (and of the command line) against a teacher of `depth` layers; two entries
    making the same stage would train it once and report it twice. `validate` asks the same."""
    made = {}
    for entry in [*cfg.distill.layers, *layer_specs]:
        try:
            stage = student_stage(entry, depth)
        except UserError as e:
            raise UserError(f"distill.layers: {e}") from None
        if stage in made and made[stage] != entry:
            raise UserError(
                f"distill.layers: {made[stage]!r} and {entry!r} make the same student {stage} (the same layers of "
                f"this {depth}-layer teacher, and the same recipe); drop one"
            )
        made[stage] = entry
    try:
        resolve_layers(cfg.lora.student_layers, depth)
    except UserError as e:
        raise UserError(f"lora.student_layers: {e}") from None
