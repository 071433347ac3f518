"""`python -m suite` is the same program as the `accelbench` console script."""

from suite.cli import main

if __name__ == "__main__":
    main()
