"""The ``sftpilot`` command line."""
