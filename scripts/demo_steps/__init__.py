"""One module per entry point; each exposes run(emulator_url, api_key, workdir) -> list[str]."""
