"""python -m proxy: the magento-edge command line."""

from .cli import main

raise SystemExit(main())
