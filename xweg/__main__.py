import sys

from xweg.cli import main

sys.exit(main())
