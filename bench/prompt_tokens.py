"""Host cost of preparing the per-frame prompts of one training step: tokenising the templates and
checking their placeholder masks every step, against the cached ids and masks of
``PromptInjector.template_ids``.

    python bench/prompt_tokens.py [--batch 8] [--calls 200]
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import report, table


def main(argv=None) -> None:
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.backbones.tiny import tiny_configs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--out", default="docs/results/prompt_tokens.md")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    injector = DiffusersT2V(**tiny_configs(pixel_space=True)).add_placeholder("<audio>", 7)
    templates = ["a <audio>"] * a.batch

    def every_step():
        ids = injector.tokenize([injector.expand(t) for t in templates])
        injector.placeholder_mask(ids)

    def cached():
        [torch.stack(x) for x in zip(*(injector.template_ids(t) for t in templates))]

    rows = []
    for name, fn in (("tokenise + check every step", every_step), ("cached ids and masks", cached)):
        fn()
        start = time.perf_counter()
        for _ in range(a.calls):
            fn()
        rows.append([name, round((time.perf_counter() - start) / a.calls * 1e3, 4)])
    body = (f"{a.batch} templates (`a <audio>`, K = 7), mean of {a.calls} calls after one warm-up, one CPU thread.\n\n"
            + table(["per-step prompt preparation", "ms per step"], rows))
    report(a.out, "Prompt preparation per training step", body)


if __name__ == "__main__":
    main()
