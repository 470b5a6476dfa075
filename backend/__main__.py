"""``python -m carrara.backend`` is ``carrara-backend``: how the add-on starts a local backend."""
import sys

from .cli import main

sys.exit(main())
