"""Allow ``python -m downpour``."""

from downpour.cli.main import main

if __name__ == "__main__":
    main()
