# Finds every dependency and turns the tri-state options into ESPER_HAVE_* results.
# Packages come from Debian (scripts/setup.sh installs them).
include_guard(GLOBAL)
find_package(PkgConfig REQUIRED)

find_package(FlatBuffers REQUIRED CONFIG)
find_package(cppzmq REQUIRED CONFIG)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd>=1.4)
find_package(Threads REQUIRED)

function(esper_require option found what)
  if(${option} STREQUAL "ON" AND NOT ${found})
    message(FATAL_ERROR "${option}=ON but ${what} was not found; run scripts/setup.sh or set ${option}=OFF")
  endif()
endfunction()

set(ESPER_HAVE_CUDA OFF)
if(NOT ESPER_CUDA STREQUAL "OFF")
  include(EsperCuda)
  esper_enable_cuda()
  esper_require(ESPER_CUDA ESPER_HAVE_CUDA "nvcc")
endif()

set(ESPER_HAVE_NCCL OFF)
if(ESPER_HAVE_CUDA AND NOT ESPER_NCCL STREQUAL "OFF")
  find_path(ESPER_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  find_library(ESPER_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib
               ${CUDAToolkit_LIBRARY_ROOT}/lib64)
  if(ESPER_NCCL_INCLUDE AND ESPER_NCCL_LIBRARY)
    add_library(esper_nccl INTERFACE IMPORTED GLOBAL)
    target_include_directories(esper_nccl INTERFACE ${ESPER_NCCL_INCLUDE})
    target_link_libraries(esper_nccl INTERFACE ${ESPER_NCCL_LIBRARY})
    add_library(esper::nccl ALIAS esper_nccl)
    set(ESPER_HAVE_NCCL ON)
  endif()
endif()
esper_require(ESPER_NCCL ESPER_HAVE_NCCL "NCCL (with CUDA)")

set(ESPER_HAVE_MPI OFF)
if(NOT ESPER_MPI STREQUAL "OFF")
  find_package(MPI COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    set(ESPER_HAVE_MPI ON)
  endif()
  esper_require(ESPER_MPI ESPER_HAVE_MPI "MPI (libopenmpi-dev)")
endif()

set(ESPER_HAVE_REDIS OFF)
if(NOT ESPER_REDIS STREQUAL "OFF")
  pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
  find_program(ESPER_REDIS_SERVER redis-server)
  if(HIREDIS_FOUND AND ESPER_REDIS_SERVER)
    set(ESPER_HAVE_REDIS ON)
  endif()
  esper_require(ESPER_REDIS ESPER_HAVE_REDIS "hiredis and redis-server")
endif()

if(ESPER_BUILD_TESTS)
  find_package(GTest REQUIRED CONFIG)
endif()
if(ESPER_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED CONFIG)
endif()

function(esper_print_summary)
  message(STATUS "esper ${PROJECT_VERSION} (${CMAKE_BUILD_TYPE}): CUDA=${ESPER_HAVE_CUDA} NCCL=${ESPER_HAVE_NCCL} "
                 "MPI=${ESPER_HAVE_MPI} Redis=${ESPER_HAVE_REDIS} tests=${ESPER_BUILD_TESTS} "
                 "benchmarks=${ESPER_BUILD_BENCHMARKS} sanitizers='${ESPER_SANITIZERS}' coverage=${ESPER_COVERAGE}")
endfunction()
