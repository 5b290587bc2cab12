import sys

from twostage.cli import main

sys.exit(main())
