"""The exit codes every command returns (README: "Exit codes")."""

EXIT_OK = 0
EXIT_VLLM_ERROR = 1  # vLLM raised during the replay; partial results kept
EXIT_USAGE = 2  # bad input or usage
EXIT_INTERRUPTED = 130  # Ctrl-C; partial results kept
