"""Write the udev rules and the modprobe blacklist from drivers/nfc/devices.py.

Run from anywhere: ``python udev/generate.py``. ``--check`` writes nothing and
exits 1 when a committed file differs from what the table renders.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from drivers.nfc import devices  # noqa: E402 - after the checkout is on sys.path

# The names come from the table's module, where `nyckelfri doctor` finds them too.
RULES_FILE = HERE / devices.UDEV_RULES_NAME
BLACKLIST_FILE = HERE / devices.MODPROBE_BLACKLIST_NAME


def rendered_files() -> dict[Path, str]:
    """Each generated file and the content the reader table renders for it."""
    return {
        RULES_FILE: devices.render_udev_rules(),
        BLACKLIST_FILE: devices.render_modprobe_blacklist(),
    }


def stale_files() -> list[Path]:
    """Generated files whose content on disk differs from the rendering."""
    return [
        path
        for path, text in rendered_files().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path} (run python udev/generate.py)")
        return 1 if stale else 0
    for path, text in rendered_files().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
