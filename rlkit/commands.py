"""The built-in subcommands that live in their own modules, registered through
``rlkit_register_commands`` exactly as a plugin's commands are."""

from __future__ import annotations

from typing import Any

from rlkit.hookspecs import hookimpl


@hookimpl
def rlkit_register_commands(cli: Any) -> None:
    from rlkit.cli_training import sft_command, train_rm_command
    from rlkit.compare.cli_compare import compare_command
    from rlkit.compare.cli_report import report_command
    from rlkit.compare.cli_tune import tune_command
    from rlkit.scaffold import new_plugin_command

    for command in (sft_command, train_rm_command, report_command, compare_command,
                    tune_command, new_plugin_command):
        cli.add_command(command)
