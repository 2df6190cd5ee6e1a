"""``python -m hyperrecon`` runs the ``hrbench`` command line."""

from .cli import main

if __name__ == "__main__":
    main()
