"""``python -m magento_standin``: serve the stand-in alone (:func:`magento_standin.app.main`)."""

import sys

from .app import main

main(sys.argv[1:])
