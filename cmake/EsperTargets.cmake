# Build settings every esper target shares: warnings, sanitizers, coverage.
include_guard(GLOBAL)

add_library(esper_build_flags INTERFACE)
add_library(esper::build_flags ALIAS esper_build_flags)
target_compile_options(esper_build_flags INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion -Wno-missing-field-initializers
                            -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual>)
if(ESPER_WARNINGS_AS_ERRORS)
  target_compile_options(esper_build_flags INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
if(ESPER_SANITIZERS)
  list(JOIN ESPER_SANITIZERS "," sanitizers)
  target_compile_options(esper_build_flags INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${sanitizers} -fno-omit-frame-pointer -fno-sanitize-recover=all>)
  target_link_options(esper_build_flags INTERFACE -fsanitize=${sanitizers})
endif()
if(ESPER_FUZZ)
  # libFuzzer's coverage feedback in every esper target; only the fuzzers link its main (tests/fuzz).
  target_compile_options(esper_build_flags INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>)
endif()
if(ESPER_COVERAGE)
  # Atomic counter updates: the fabric's threads would otherwise race on the counters and leave
  # negative branch counts that gcovr refuses to parse.
  target_compile_options(esper_build_flags INTERFACE $<$<COMPILE_LANGUAGE:CXX>:--coverage -fprofile-update=atomic -O0>)
  target_link_options(esper_build_flags INTERFACE --coverage -fprofile-update=atomic)
endif()

# esper_executable(name SOURCES ... LIBS ...): an executable with the shared settings.
function(esper_executable name)
  cmake_parse_arguments(arg "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE esper::build_flags ${arg_LIBS})
endfunction()

# Adds a folder when it has a CMakeLists.txt (parts that land in separate steps).
function(esper_subdirectories)
  foreach(dir IN LISTS ARGN)
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/CMakeLists.txt)
      add_subdirectory(${dir})
    endif()
  endforeach()
endfunction()
