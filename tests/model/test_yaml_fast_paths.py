"""The loader's fast paths must read exactly what PyYAML reads."""

from __future__ import annotations


def test_plain_integers_read_as_pyyaml_reads_them() -> None:
    """yaml_lines reads plain decimals itself (a fast path): every other int form goes to PyYAML."""
    import yaml

    from reconciler.model.yaml_lines import parse_yaml

    for text in ("0", "8080", "007", "010", "1_000", "0x1f", "+5", "-3", "0o17", "65535", "١٢"):
        [doc] = parse_yaml(f"port: {text}\n").documents
        assert doc.data == yaml.safe_load(f"port: {text}\n"), text
