"""``python -m posecnn_core.train`` = ``posecnn-train``."""
from .cli import main

raise SystemExit(main())
