"""magento-edge command line (placeholder while the core lands)."""


def main() -> None:
    raise SystemExit("not yet")
