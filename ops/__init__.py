"""The operator's command line: `python -m ops <command>`. One module per command."""
