"""``python -m lit_celeba.export ...``, the form documented before the commands moved to
:mod:`lit_celeba.commands`: the same as ``python -m lit_celeba export ...``."""

if __name__ == "__main__":
    import sys

    from lit_celeba.cli import cli_main

    cli_main(["export", *sys.argv[1:]])
