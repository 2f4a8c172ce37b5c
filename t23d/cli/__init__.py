"""The one ``t23d`` command. Progress bars, colour and exit codes live here, never in the library."""
