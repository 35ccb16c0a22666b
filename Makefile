# Convenience entry points; the build itself is CMake (see CMakeLists.txt).
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=

.PHONY: all deps build run check swift-test asan bench format install fuzz clean valgrind

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSK_WERROR=ON \
	      -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Start the server on its embedded default: 127.0.0.1:2525, data under ./var,
# local domain localhost, relaying only from loopback; AUTH allowed without
# TLS on loopback, to try it locally (RUN_ARGS="--users FILE" adds accounts);
# the HTTP API on 127.0.0.1:8025 with a new admin key (the previous one that
# make run made is revoked), printed here.
run: build
	@mkdir -p ./var
	@./$(BUILD)/smtpkit apikey --data-dir ./var revoke make-run >/dev/null 2>&1 || true
	@echo "HTTP API on http://127.0.0.1:8025 (docs/http-api.md); key for this run:"
	@./$(BUILD)/smtpkit apikey --data-dir ./var create --name make-run --scope admin | sed -n 's/^key /  /p'
	@exec ./$(BUILD)/smtpkit serve --data-dir ./var --auth-plaintext-loopback --print-usage \
	  --http 127.0.0.1:8025 $(RUN_ARGS)

check: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The Swift package alone: `swift test` with its peers (test_swift.py),
# failing rather than skipping when no toolchain is found. make check runs
# the same test; CI sets SK_REQUIRE_SWIFT=1 there so it cannot be skipped.
swift-test: build
	cd $(BUILD) && SK_REQUIRE_SWIFT=1 ctest --output-on-failure -R integration/test_swift

asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSK_WERROR=ON -DSK_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# Unit tests that start threads (the background workers) and integration
# tests with smtpkit under valgrind memcheck (errors and leaks).
VALGRIND_UNIT ?= test_worker
valgrind: build
	@for t in $(VALGRIND_UNIT); do \
	  echo "valgrind $$t"; \
	  valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	    $(BUILD)/tests/$$t >/dev/null || exit 1; \
	done
	./scripts/valgrind-integration.sh $(BUILD) $(VALGRIND_TESTS)

bench: build
	./bench/run.sh $(BUILD)

fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSK_FUZZ=ON -DSK_TESTS=OFF >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	./tests/fuzz/run.sh $(FUZZ_BUILD) $${FUZZ_SECONDS:-60}

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

install: build
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
