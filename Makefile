# The two commands of README.md: `make demo` (the main job end to end) and `make test`.
.PHONY: setup demo test bench

setup:
	scripts/setup.sh

demo: setup
	.venv/bin/couponrank demo

test: setup
	scripts/test.sh

bench: setup
	.venv/bin/python bench/build_features.py
