"""Allow ``python -m downpour``."""

from downpour.cli import main

if __name__ == "__main__":
    main()
