# odoo_sync: the two commands that matter are `make demo` and `make test`.
# Every target installs what it needs first (scripts/setup.sh is idempotent and quick when done).

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
CARGO ?= cargo

.PHONY: setup install test demo bench lint package clean-pg chaos

setup:
	@bash scripts/setup.sh

## Build the extension (release) and install it into the local PostgreSQL 15.
install: setup
	@PG_CONFIG=$(PG_CONFIG) bash scripts/install.sh

## The whole test suite, against a private PostgreSQL cluster and the Odoo simulator.
test: install
	@bash scripts/test.sh

## The long reliability proof: 1,000 orders under kills, faults and a PostgreSQL restart, a 60 s
## Odoo outage, reconnects, 4 workers x 8 writers; prints its figures (scripts/chaos.sh).
chaos: install
	@bash scripts/chaos.sh

## The main job on embedded defaults: private PostgreSQL + bundled Odoo simulator.
demo: install
	@bash scripts/demo.sh

## Benchmarks that print figures (capture cost; simulator throughput).
bench: install
	@bash scripts/bench.sh

## An installable tarball: extension files, worker binary, systemd unit, environment example.
package: setup
	@PG_CONFIG=$(PG_CONFIG) bash scripts/package.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -p odoo_sync -p odoo-sync-worker -p odoo_sync_tests --all-targets -- -D warnings

clean-pg:
	@bash scripts/pg.sh stop || true
