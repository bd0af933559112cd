"""The look / motion coupling check: its clips, and a run on a tiny backbone."""

import torch

from av_lightning.toy.coupling import TIMESTEPS, coupling, event_energy, exact_rates, table, variant_clips


def test_variants_leave_out_exactly_one_half_of_each_event():
    clips = variant_clips(16)
    events = clips["events"]
    whole = exact_rates(clips["frames"]["whole"], events)
    flash_only = exact_rates(clips["frames"]["flash only"], events)
    jump_only = exact_rates(clips["frames"]["jump only"], events)
    assert whole == {"jump": 1.0, "flash": 1.0}
    assert flash_only == {"jump": 0.0, "flash": 1.0}
    assert jump_only == {"jump": 1.0, "flash": 0.0}
    # the same clips otherwise: outside the event frames and the frame after, all three are equal
    for b, ev in enumerate(events):
        quiet = [f for f in range(12) if f not in ev and f - 1 not in ev]
        for name in ("flash only", "jump only"):
            assert torch.equal(clips["frames"][name][b, quiet], clips["frames"]["whole"][b, quiet])


def test_coupling_runs_on_the_shipped_backbone():
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.toy.demo import backbone_path

    backbone = DiffusersT2V(pretrained=backbone_path())
    result = coupling(backbone, n=4, timesteps=(900, 300))
    assert list(result) == [900, 300]
    for row in result.values():
        assert set(row) == {"whole", "flash only", "jump only"}
        assert all(0.0 <= v <= 1.0 for r in row.values() for v in r.values())
    # at a low noise level a trained backbone's one-step estimate keeps every jump it was shown
    assert result[300]["whole"]["jump"] == result[300]["jump only"]["jump"] == 1.0
    assert len(table(result)) == 2 + 2
    assert list(TIMESTEPS) == sorted(TIMESTEPS, reverse=True)


def test_event_energy_of_the_drum_look_is_the_closed_form():
    from av_lightning.data import toyworld as tw

    # one drum clip on a flat background (level 20, no noise), one event at frame 5
    events = torch.zeros(1, tw.NUM_FRAMES, dtype=torch.bool)
    events[0, 5] = True
    params = {"label": torch.tensor([0]), "events": events, "cy": torch.tensor([9]), "cx": torch.tensor([7]),
              "level": torch.tensor([20]), "noise": torch.zeros(1, tw.SIZE, tw.SIZE, dtype=torch.long)}
    colour = tw.COLOURS["drum"]
    flashed = [round(c + tw.FLASH * (255 - c)) for c in colour]

    def sq(a, b):
        return sum((x - y) ** 2 for x, y in zip(a, b)) / 127.5**2

    # frame 5: the 5x5 square recoloured, the 24-pixel ring around it drawn flashed over the background;
    # frame 6: the ring in the class colour (the object still grown, no longer flashed)
    look = 25 * sq(flashed, colour) + 24 * sq(flashed, [20] * 3) + 24 * sq(colour, [20] * 3)
    energy = event_energy(params=params)
    assert list(energy) == ["drum"]
    assert abs(energy["drum"]["look"] - look) < 1e-3
    # on sampled clips the look is of the jump's order for every class (more than a quarter of it)
    assert all(e["motion"] > 0 and e["look"] > 0.25 * e["motion"] for e in event_energy(64).values())
