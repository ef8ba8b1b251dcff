"""`python -m apex2native.verify ...` runs the verify command on its own."""

from apex2native.verify.command import verify

if __name__ == "__main__":
    verify(prog_name="apex2native verify")
