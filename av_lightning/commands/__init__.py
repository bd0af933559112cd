"""Sub-commands of ``av-lightning`` beyond LightningCLI's fit/validate/test/predict.

Each module here exposes ``main(argv: list[str] | None = None) -> int`` built on argparse;
``av_lightning.cli.main`` dispatches ``av-lightning NAME ...`` to ``commands/NAME.py``
(dashes in NAME become underscores).
"""
