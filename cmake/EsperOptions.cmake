# Every build option of esper, in one place. Tri-state options: AUTO uses the component when it is
# found, ON fails the configure when it is missing, OFF never uses it.
include_guard(GLOBAL)

function(esper_tristate name default doc)
  set(${name} ${default} CACHE STRING "${doc} (AUTO, ON or OFF)")
  set_property(CACHE ${name} PROPERTY STRINGS AUTO ON OFF)
  string(TOUPPER "${${name}}" value)
  if(NOT value MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "${name}=${${name}} is not valid: use AUTO, ON or OFF")
  endif()
  set(${name} ${value} PARENT_SCOPE)
endfunction()

esper_tristate(ESPER_CUDA  AUTO "Compile the CUDA seed-layer kernels (AUTO: when nvcc is found)")
esper_tristate(ESPER_NCCL  AUTO "Use NCCL collectives (needs CUDA)")
esper_tristate(ESPER_MPI   AUTO "Use MPI for bootstrap and CPU collectives")
esper_tristate(ESPER_REDIS AUTO "Build the Redis gateway and the Redis baselines (hiredis)")

option(ESPER_BUILD_TESTS "Build the GoogleTest suites" ON)
option(ESPER_BUILD_BENCHMARKS "Build the Google Benchmark programs" ON)
option(ESPER_WARNINGS_AS_ERRORS "Treat compiler warnings as errors (CI turns this on)" OFF)
option(ESPER_COVERAGE "Instrument for line coverage (gcov)" OFF)
set(ESPER_SANITIZERS "" CACHE STRING "Semicolon list of sanitizers: address;undefined or thread")

foreach(s IN LISTS ESPER_SANITIZERS)
  if(NOT s MATCHES "^(address|undefined|thread|leak)$")
    message(FATAL_ERROR "ESPER_SANITIZERS: '${s}' is not one of address, undefined, thread, leak")
  endif()
endforeach()
if("thread" IN_LIST ESPER_SANITIZERS AND "address" IN_LIST ESPER_SANITIZERS)
  message(FATAL_ERROR "ESPER_SANITIZERS: thread and address cannot be combined; configure two builds")
endif()
