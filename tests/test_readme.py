"""README is exactly true: every console block is what its commands print.

Runs ``scripts/readme-examples`` (the fakes, a real ``tokenmeter serve``, every README example in
order). Slow for a test (~30-40 s: some 30 ``tokenmeter`` processes and 120 demo requests), and
worth it: it is the only check that README's outputs are real. On a difference it prints the
diff; ``scripts/readme-examples --write`` rewrites README after an intended change.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_console_blocks_are_what_their_commands_print() -> None:
    done = subprocess.run(  # noqa: S603 (the repository's own script)
        [str(ROOT / "scripts" / "readme-examples")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
