"""The program's ``--help``: every command listed, with this program's lines for the Trainer's
commands. Apart from ``commands/__init__.py``, which a command imports and which stays light."""

from __future__ import annotations

from typing import Any

from jsonargparse import ArgumentParser

from lit_celeba.checkpoints.runs import ckpt_path_help
from lit_celeba.commands import COMMANDS, PROG, TRAINER_HELP


def list_in_help(commands: Any) -> None:
    """Gives LightningCLI's subcommands action (jsonargparse's) this program's lines for the
    Trainer's commands and their ``--ckpt_path``, and adds :data:`COMMANDS`, so that ``--help``
    lists every command. Those have parsers of their own: ``cli_main`` runs them first."""
    # argparse's subparsers action has no public way to change a subcommand's help or to read
    # its parsers: its private maps, as jsonargparse's own subcommands code reads them.
    for name, subparser in commands._name_parser_map.items():
        subparser.description = TRAINER_HELP.get(name, subparser.description)
        for action in subparser._actions:
            if action.dest == "ckpt_path":  # Lightning's help offers best and hpc
                action.help = ckpt_path_help(name)
    for choice in commands._choices_actions:
        choice.help = TRAINER_HELP.get(choice.dest, choice.help)
    for name, line in COMMANDS.items():
        commands.add_subcommand(name, ArgumentParser(prog=f"{PROG} {name}", description=line),
                                help=line)  # fmt: skip
