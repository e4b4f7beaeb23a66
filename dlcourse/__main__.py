import sys

from dlcourse.cli import main

sys.exit(main())
