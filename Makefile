# Front door: `make` builds build/gemma and libgemma, `make demo` runs the shipped model,
# `make test` runs the whole suite through ctest (see tests/tests.cmake and tests/run_all.sh).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all demo test test-fast clean

all:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: all
	./$(BUILD)/gemma info -m models/tiny-gemma | head -n 12
	./$(BUILD)/gemma generate -m models/tiny-gemma -p "The king said" -n 32 --temp 0.8 --seed 1
	./$(BUILD)/gemma generate -m models/tiny-gemma --chat -p "Hello! Who are you?" -n 24 --temp 0

test:
	@bash tests/run_all.sh

test-fast: all
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) build-asan build-fuzz
