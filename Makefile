# Thin aliases for ./dev.sh, which does the work and needs no make: `make X ARGS=...` runs
# `./dev.sh X ...`. See ./dev.sh help.
DEV := ./dev.sh
ARGS ?=

.PHONY: setup test lint cov py39 demo bench-tiny ci clean

setup: ; $(DEV) setup
test: ; $(DEV) test $(ARGS)
lint: ; $(DEV) lint
cov: ; $(DEV) cov $(ARGS)
py39: ; $(DEV) py39 $(ARGS)
demo: ; $(DEV) demo
bench-tiny: ; $(DEV) bench-tiny
ci: ; $(DEV) ci
clean: ; $(DEV) clean
