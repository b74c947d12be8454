"""`python -m services.volunteers`: the entry point that make run and compose both use."""

from shared.runtime import run_service

if __name__ == "__main__":
    run_service("volunteers")
