# The two commands of the README, and a few conveniences.
.PHONY: run test test-quick bench lint

run:            ## set everything up and run FinFlow (SQLite, seeded demo model)
	./scripts/run.sh

test:           ## set everything up and run every test (browser and PostgreSQL included)
	./scripts/test.sh

test-quick:     ## the fast local loop: no browser, no heavy tests
	./scripts/test.sh -m "not browser and not heavy"

bench:          ## the benchmark suite (prints a table, writes bench/results/)
	./scripts/bootstrap.sh && .venv/bin/python -m bench

lint:
	./scripts/bootstrap.sh && .venv/bin/ruff check .
