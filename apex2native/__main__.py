"""`python -m apex2native` runs the same CLI as the console script."""

from apex2native.cli import main

if __name__ == "__main__":
    main()
