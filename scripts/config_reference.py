"""Write docs/config.md, the config reference, from the help texts of the config dataclasses.

    python scripts/config_reference.py           # rewrite docs/config.md
    python scripts/config_reference.py --check   # exit 1 if docs/config.md is out of date

The table comes from distill_lora.config.describe(): (key, default, help) for every key.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill_lora.config import describe  # noqa: E402

TARGET = REPO / "docs" / "config.md"
COMMAND = "python scripts/config_reference.py"
SHIPPED = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))  # the names --config takes besides a path

HEADER = f"""# Config reference

Every config key with its default and meaning. Generated from the help texts in
`distill_lora/config.py` by `{COMMAND}`: edit those, not this page.

Defaults live in `distill_lora/config.py`; `configs/*.yaml` (shipped as {", ".join(f"`{n}`" for n in SHIPPED)})
only say what differs. The training commands take `--config PATH|{"|".join(SHIPPED)}` and repeatable
`--set key=value` overrides (dotted keys, values parsed as YAML:
`--set teacher.train.lr=3e-5 --set distill.layers=[odd]`). A stage's `train:` block overrides the
global one for that stage (`teacher.train.lr`, `distill.train.epochs`, …). Unknown keys are errors
naming the closest valid key. Relative paths resolve against the current directory.
`package:PKG/FOLDER` names a folder inside an installed package (found without importing it).

"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    lines = ["| Key | Default | Meaning |", "|---|---|---|"]
    for key, default, help_ in describe():
        lines.append(f"| `{key}` | `{_cell(default)}` | {_cell(help_)} |")
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(REPO)} is out of date: run `{COMMAND}`")
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(REPO)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
