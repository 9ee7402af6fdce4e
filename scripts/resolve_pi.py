"""Prove that the field agent installs on a Raspberry Pi without a compiler.

Runs pip's resolver (``pip install --dry-run --only-binary=:all:``) for the agent's
dependencies of pyproject.toml, as Raspberry Pi OS Bookworm's Python 3.11 would see
them, once per platform:

* ``aarch64`` (64-bit Raspberry Pi OS): manylinux wheels from PyPI;
* ``armv7l`` (32-bit): PyPI, plus piwheels (https://www.piwheels.org/simple), the
  index Raspberry Pi OS configures in /etc/pip.conf and that builds armv7l wheels of
  what PyPI only has as source (cffi for cryptography, dbus-fast for bleak). ``--index URL``
  points at a mirror; without piwheels reachable the armv7l check names what PyPI
  lacks instead of claiming success.

``--only-binary=:all:`` makes pip refuse any sdist: a resolution that succeeds needs no
compiler. One exception, checked apart: nfcpy needs pyDes, published only as a source
archive; the script downloads it and checks that it is pure Python (no C sources, no
extension modules), so building its wheel needs no compiler either.

Prints one line per platform and the packages it would install; exits 1 when a platform
cannot resolve. Usage: ``python scripts/resolve_pi.py [--platform aarch64]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIWHEELS = "https://www.piwheels.org/simple"
# Bookworm: glibc 2.36. pip takes the first --platform as the best match.
PLATFORMS = {
    "aarch64": ["manylinux_2_36_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64",
                "manylinux2014_aarch64", "linux_aarch64"],
    "armv7l": ["manylinux_2_36_armv7l", "manylinux_2_31_armv7l", "manylinux_2_17_armv7l",
               "manylinux2014_armv7l", "linux_armv7l"],
}


# Published as source only, and pure Python: resolved apart (see pure_python_sdist).
PURE_SDISTS = {"pydes": "pyDes==2.0.1"}
# nfcpy's own requirements, minus those sdists (nfcpy itself is a py3-none-any wheel).
NFCPY_DEPS = ["libusb1", "pyserial", "ndeflib"]


def agent_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def pure_python_sdist(requirement: str) -> tuple[bool, str]:
    """Download the sdist and look inside: pure Python when it has no C/C++/Cython
    sources and its setup script declares no extension modules."""
    import tarfile

    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "--dest", tmp, requirement], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return False, (done.stderr or done.stdout).strip()
        [archive] = list(Path(tmp).iterdir())
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            compiled = [n for n in names if n.endswith((".c", ".cpp", ".pyx", ".h"))]
            setup = next((n for n in names if n.endswith("setup.py")), None)
            text = tar.extractfile(setup).read().decode() if setup else ""  # type: ignore[union-attr]
        if compiled or "Extension(" in text or "ext_modules" in text:
            return False, f"{archive.name} compiles: {compiled or 'ext_modules in setup.py'}"
        return True, archive.name


def resolve(arch: str, extra_index: str | None) -> tuple[bool, list[str], str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
               "--quiet", "--only-binary=:all:", "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
               "--retries", "0", "--timeout", "15",
               "--target", str(Path(tmp) / "target"), "--report", str(report)]
        for tag in PLATFORMS[arch]:
            cmd += ["--platform", tag]
        if extra_index:
            cmd += ["--extra-index-url", extra_index]
        wanted = [r for r in agent_requirements() if not r.startswith("nfcpy")]
        wanted += ["nfcpy==1.0.4", *NFCPY_DEPS]
        # nfcpy with --no-deps would hide the rest; instead resolve nfcpy's requirements
        # by hand (NFCPY_DEPS) and ignore its pyDes, checked by pure_python_sdist.
        done = subprocess.run([*cmd, "--no-deps", "nfcpy==1.0.4"], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            return False, [], (done.stderr or done.stdout).strip()
        wanted.remove("nfcpy==1.0.4")
        done = subprocess.run(cmd + wanted, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return False, [], (done.stderr or done.stdout).strip()
        items = json.loads(report.read_text())["install"]
        return True, sorted(f"{i['metadata']['name']}=={i['metadata']['version']} "
                            f"({Path(i['download_info']['url']).name.split('-')[-1]})"
                            for i in items), ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=sorted(PLATFORMS), action="append")
    parser.add_argument("--index", default=PIWHEELS,
                        help="extra index for armv7l (piwheels or a mirror of it)")
    args = parser.parse_args()
    failed = False
    for requirement in PURE_SDISTS.values():
        ok, what = pure_python_sdist(requirement)
        print(f"{requirement}: {'pure-Python source, no compiler' if ok else 'NEEDS A COMPILER'}"
              f" ({what})")
        failed |= not ok
    for arch in args.platform or sorted(PLATFORMS):
        extra = args.index if arch == "armv7l" else None
        ok, wheels, error = resolve(arch, extra)
        print(f"{arch}: {'resolves with wheels only' if ok else 'DOES NOT resolve'}"
              f"{' (with ' + extra + ')' if extra else ''}")
        for wheel in wheels:
            print(f"  {wheel}")
        if not ok:
            failed = True
            print("  " + error.replace("\n", "\n  "))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
