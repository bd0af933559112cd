"""The Wan GPU benchmark runs end to end on tiny parts, builds its full-size parts on the meta device,
and writes its section of the results page without touching the others."""

from __future__ import annotations

from bench.gpu_wan import dry_run, main, write_section


def test_write_section_keeps_the_other_sections(tmp_path):
    page = tmp_path / "gpu.md"
    page.write_text("# Full-size GPU costs\n\nzeroscope table v1\n")
    write_section(page, "wan", "## Wan\n\nwan table v1")
    write_section(page, "zeroscope", "# Full-size GPU costs\n\nzeroscope table v2")
    write_section(page, "wan", "## Wan\n\nwan table v2")
    text = page.read_text()
    assert "zeroscope table v2" in text and "wan table v2" in text
    assert "v1" not in text
    assert text.index("zeroscope table") < text.index("wan table")


def test_smoke_run_on_tiny_parts(tmp_path, capsys):
    out = tmp_path / "gpu.md"
    assert main(["--smoke", "--modes", "direct", "--repeat", "1", "--out", str(out)]) == 0
    text = out.read_text()
    for row in ("floor: transformer fwd+bwd, text", "adapter step, cached", "stock text-conditioned loop",
                "audio-conditioned (TempoTokens)", "text_mode: direct"):
        assert row in text


def test_full_size_parts_have_the_1_3b_shapes():
    text = dry_run(81)
    assert "| transformer | 1419M |" in text  # 12 heads × 128, 30 layers, FFN 8960
    assert "| umT5-XXL encoder | 5681M |" in text
    assert "latents (1, 16, 21, 60, 104), 32760 video tokens" in text
