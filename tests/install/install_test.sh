#!/bin/sh
# install_test.sh BUILD_DIR SOURCE_DIR CC
set -eu
build=$1 src=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
if command -v pkg-config >/dev/null 2>&1; then
    "$cc" -Wall -Wextra -Werror "$src/consumer.c" $(pkg-config --cflags irpkit) \
        "$tmp/prefix/lib/libirpkit.a" -lpthread -ldl -o "$tmp/pc_consumer"
    "$tmp/pc_consumer" || { echo "FAIL: pkg-config consumer"; exit 1; }
    echo "pkg-config consumer: ok"
fi
mkdir "$tmp/cm"
cat >"$tmp/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(irpkit REQUIRED)
add_executable(consumer $src/consumer.c)
target_link_libraries(consumer PRIVATE irpkit::irpkit)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
"$tmp/cm/build/consumer" || { echo "FAIL: CMake consumer"; exit 1; }
echo "CMake consumer: ok"
