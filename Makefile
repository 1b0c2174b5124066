# Front door: `make` builds build/gemma and libgemma, `make demo` runs the shipped model,
# `make test` runs the whole suite through ctest (see tests/tests.cmake and tests/run_all.sh).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all demo test test-fast tiny-model clean

all:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The shipped story model (models/tiny-stories, trained by `make tiny-model`) writes a short story.
demo: all
	./$(BUILD)/gemma info -m models/tiny-stories | head -n 12
	./$(BUILD)/gemma generate -m models/tiny-stories -p "Once upon a time, there was a little dog named Max." -n 120 --temp 0.7 --top-p 0.9 --seed 7

# Retrain models/tiny-stories from data/tinystories: tokenizer (spm_train), shards, gemma train, bf16 export.
tiny-model: all
	tools/make_tiny_model.sh $(BUILD)

test:
	@bash tests/run_all.sh

test-fast: all
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) build-asan build-fuzz build-arm
