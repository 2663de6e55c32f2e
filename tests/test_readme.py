"""The README's Python example runs as written."""

import re

from tests.conftest import REPO


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## In Python\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "{'attn': 1.0, 'ffn': 1.0, 'final': 1.0}" in out and "tensor([[" in out
    assert (tmp_path / "my-dyt" / "model.safetensors").exists()
