# Entry points; the logic lives in scripts/. `make test` is the one command the README promises.
.PHONY: test bootstrap unit integration sanity lint demo bench docs clean

test:
	scripts/test

bootstrap:
	scripts/bootstrap

unit: bootstrap
	.venv/bin/python -m pytest tests/unit

integration: bootstrap
	.venv/bin/python -m pytest tests/integration

sanity: bootstrap
	scripts/sanity

lint: bootstrap
	scripts/lint

demo: bootstrap
	.venv/bin/python scripts/demo.py $(DEMO_ARGS)

bench: bootstrap
	.venv/bin/python scripts/benchmark.py

docs: bootstrap
	scripts/docs build

clean:
	rm -rf build tests/output .pytest_cache .coverage htmlcov
