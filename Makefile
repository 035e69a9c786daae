# irpkit — front door. Everything builds through CMake; this file only drives it and
# installs what a fresh Debian machine lacks.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_GEN  := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
PREFIX     ?= /usr/local
CC         ?= cc

.PHONY: all build demo test bench sanitize asan tsan install deps clean clang

all: build

# Debian packages the build needs; installed only when something is missing.
deps:
	@missing=""; \
	for t in cmake:cmake gcc:gcc g++:g++ make:make; do \
	  cmd=$${t%%:*}; pkg=$${t##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BUILD)/build.ninja $(BUILD)/Makefile: | deps
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX)

build: deps
	@[ -f $(BUILD)/CMakeCache.txt ] || cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/tools/irpkit/irpkit demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	@for b in $(BUILD)/bench/*/bench_*; do [ -x "$$b" ] && { echo "== $$b"; "$$b" || exit 1; }; done; true

# The test suite under AddressSanitizer+UBSan and, separately, ThreadSanitizer.
sanitize: asan tsan

asan: deps
	@[ -f $(BUILD_ASAN)/CMakeCache.txt ] || cmake -S . -B $(BUILD_ASAN) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DIRPK_SANITIZE=address
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && IRPK_STRESS_SCALE=$${IRPK_STRESS_SCALE:-0.1} ctest --output-on-failure -j $(JOBS) --timeout 1200 -LE nosan

tsan: deps
	@[ -f $(BUILD_TSAN)/CMakeCache.txt ] || cmake -S . -B $(BUILD_TSAN) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DIRPK_SANITIZE=thread
	cmake --build $(BUILD_TSAN) -j $(JOBS)
	cd $(BUILD_TSAN) && IRPK_STRESS_SCALE=$${IRPK_STRESS_SCALE:-0.05} ctest --output-on-failure -j $(JOBS) --timeout 1200 -LE nosan

# Second compiler: the whole tree must also build warning-free with clang.
clang: deps
	@command -v clang >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang; }
	@[ -f build-clang/CMakeCache.txt ] || CC=clang CXX=clang++ cmake -S . -B build-clang $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-clang -j $(JOBS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) build-clang
