# Cross build for aarch64 Linux with Debian's cross toolchain (gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross); ctest runs the test programs under qemu-user. tests/run_all.sh's ARM stage:
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Add -DCMAKE_C_COMPILER=clang to build with clang (--target=aarch64-linux-gnu) instead.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(GM_CROSS_SYSROOT /usr/aarch64-linux-gnu CACHE PATH "the target's libraries, for qemu -L")
if(NOT CMAKE_C_COMPILER)
  set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
endif()
set(CMAKE_C_COMPILER_TARGET aarch64-linux-gnu) # used by clang only

set(CMAKE_FIND_ROOT_PATH ${GM_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)

# ctest runs every test program through this. qemu reads QEMU_CPU from the environment: its default
# ("max") has the dot product instructions, "cortex-a53" has not, so the two exercise both
# quantized-matmul variants and their run-time choice.
find_program(GM_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(GM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${GM_QEMU_AARCH64} -L ${GM_CROSS_SYSROOT})
endif()
