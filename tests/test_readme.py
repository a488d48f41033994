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


def test_configuration_reference_lists_every_setting() -> None:
    """A new field of Settings must be documented; nothing to keep in step by hand."""
    from proxy.config import Settings, env_name

    text = (ROOT / "README.md").read_text()
    reference = text[text.index("## Configuration reference") :]
    missing = [env_name(n) for n in Settings.model_fields if f"`{env_name(n)}`" not in reference]
    assert missing == []


def test_no_file_cites_a_document_the_repository_lacks() -> None:
    """Shipped files once cited the design notes and API facts kept outside the repository."""
    import re

    tracked = subprocess.run(
        ["git", "ls-files"],  # noqa: S607 (git from PATH)
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    documents = {Path(name).name for name in tracked if name.endswith(".md")}
    cited = re.compile(r"\b([\w-]+\.md)\b")
    missing = {
        f"{name}: {found}"
        for name in tracked
        if not name.endswith(".jsonl") and (ROOT / name).is_file()
        for found in cited.findall((ROOT / name).read_text(errors="ignore"))
        if found not in documents and found != "README-dashboards-deploy.md"
    }
    assert missing == set()
