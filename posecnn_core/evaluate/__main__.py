"""``python -m posecnn_core.evaluate`` = ``posecnn-eval``."""
from .cli import main

raise SystemExit(main())
