"""Every ```python block of README.md and docs/viz.md runs as written: each alone, in a fresh
process, in an empty temporary folder, without network (torch.hub points at an empty cache and
sockets are refused). A block preceded by ``<!-- docs-test: needs cuda -->`` runs only with CUDA."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/viz.md")
BLOCK = re.compile(r"(<!-- docs-test: needs cuda -->\n)?```python\n(.*?)```", re.S)
TIMEOUT_S = 600
#: Run before each block: any attempt to open a network connection fails at once.
NO_NETWORK = (
    "import socket\n"
    "def _refused(*args, **kwargs):\n"
    "    raise OSError('docs test: no network')\n"
    "socket.socket.connect = _refused\n"
    "socket.create_connection = _refused\n"
)


def blocks() -> list:
    found = []
    for doc in DOCS:
        text = (REPO / doc).read_text()
        for number, match in enumerate(BLOCK.finditer(text), 1):
            line = text.count("\n", 0, match.start(2)) + 1
            marks = [pytest.mark.skipif(not _cuda(), reason="needs CUDA")] if match.group(1) else []
            found.append(pytest.param(match.group(2), id=f"{doc}:{line}", marks=marks))
    return found


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def test_the_docs_have_code_blocks():
    assert len(blocks()) >= 5


@pytest.mark.parametrize("code", blocks())
def test_code_block_runs(code, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TORCH_HOME": str(tmp_path / "torch-home"), "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", NO_NETWORK + code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
