import sys

from vitssl.cli import main

sys.exit(main())
