import sys

from disentkit.cli import main

sys.exit(main())
