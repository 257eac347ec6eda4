"""python -m assistant.bank seed|show: the demo bank database's command line."""
import sys

from assistant.bank import main

sys.exit(main())
