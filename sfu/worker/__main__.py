import sys

from sfu.worker.process import main

sys.exit(main())
