# Test registry. Conventions (so helpers can add tests without touching this file):
#  - tests/unit/test_NAME.c      -> executable test_NAME, ctest name unit.NAME, run from the source root.
#  - tests/cli/test_NAME.sh      -> ctest name cli.NAME, run as `bash tests/cli/test_NAME.sh BUILD_DIR`.
#  - tests/fuzz/fuzz_NAME.c      -> libFuzzer target (built only with -DGM_FUZZ=ON and clang), ctest name fuzz.NAME:
#                                  runs briefly over its seed corpus tests/fuzz/corpus/NAME/.
#  - tests/unit/testlib.h        -> tiny assertion helpers shared by the unit tests.
#  - a unit test that needs hardware this machine lacks exits 77: ctest reports it skipped, not passed.
file(GLOB GM_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(t ${GM_UNIT_TESTS})
  get_filename_component(name ${t} NAME_WE)
  string(REGEX REPLACE "^test_" "" short ${name})
  add_executable(${name} ${t})
  target_link_libraries(${name} PRIVATE gemma_lib)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  add_test(NAME unit.${short} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(unit.${short} PROPERTIES ENVIRONMENT "GM_BUILD_DIR=${CMAKE_BINARY_DIR}" SKIP_RETURN_CODE 77)
endforeach()

# The AVX-512 quantized decode kernels have a VBMI variant (byte permutes) and one without; GM_VBMI=0
# switches VBMI off, so on a CPU that has it the kernel tests run once more, on the other variant.
foreach(short quant)
  add_test(NAME unit.${short}.novbmi COMMAND test_${short} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(unit.${short}.novbmi PROPERTIES ENVIRONMENT "GM_BUILD_DIR=${CMAKE_BINARY_DIR};GM_VBMI=0"
                       SKIP_RETURN_CODE 77)
endforeach()

file(GLOB GM_CLI_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cli/test_*.sh)
foreach(t ${GM_CLI_TESTS})
  get_filename_component(name ${t} NAME_WE)
  string(REGEX REPLACE "^test_" "" short ${name})
  add_test(NAME cli.${short} COMMAND bash ${t} ${CMAKE_BINARY_DIR} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
endforeach()

if(GM_FUZZ)
  file(GLOB GM_FUZZ_TARGETS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
  foreach(f ${GM_FUZZ_TARGETS})
    get_filename_component(name ${f} NAME_WE)
    string(REGEX REPLACE "^fuzz_" "" short ${name})
    add_executable(${name} ${f})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(${name} PRIVATE gemma_lib)
    file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz-corpus/${short})
    add_test(NAME fuzz.${short}
             COMMAND ${name} -max_total_time=20 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
                     ${CMAKE_BINARY_DIR}/fuzz-corpus/${short} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${short}
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  endforeach()
endif()
