import sys

from av_lightning.cli import main

sys.exit(main())
