"""`python -m dynamo_ref`: the `dynamo-ref` command line (what local clusters launch)."""

from dynamo_ref.cli import main

if __name__ == "__main__":
    main()
