# esper_enable_cuda(): enables the CUDA language when nvcc is found (also in the toolkit's standard
# prefix, which is often not on PATH) and sets ESPER_HAVE_CUDA. Shared by the project and by the
# standalone kernels build (kernels/CMakeLists.txt) for GPU machines without our other libraries.
include_guard(GLOBAL)

macro(esper_enable_cuda)
  set(ESPER_HAVE_CUDA OFF)
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(ESPER_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH PATH_SUFFIXES bin
                 PATHS /usr/local/cuda/bin /usr/local/cuda)
    if(ESPER_NVCC)
      set(CMAKE_CUDA_COMPILER ${ESPER_NVCC} CACHE FILEPATH "CUDA compiler")
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    if(NOT CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "52")
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    set(ESPER_HAVE_CUDA ON)
  endif()
endmacro()
