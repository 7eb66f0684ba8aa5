# `cmake --install`: the public headers, the libraries, the `esper` tools, the schemas, a CMake
# package (find_package(esper REQUIRED COMPONENTS fabric controller ...), targets esper::<part>)
# and a pkg-config file (docs/embedding.md). Included last by the top CMakeLists.txt, when every
# target exists.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ESPER_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/esper)
set(ESPER_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/esper)

# Every library, as the export names it (esper_fabric -> esper::fabric). Parts a build leaves out
# (no MPI, no CUDA) are simply absent from the package.
set(esper_libraries esper_core esper_fbs esper_fbs_dead_letter esper_wire esper_kernel_rules esper_kernels
                    esper_lifecycle esper_fabric esper_controller esper_morphogenesis esper_resilience)
foreach(t esper_kernels_cuda esper_mpi esper_rank_commands esper_rank)
  if(TARGET ${t})
    list(APPEND esper_libraries ${t})
  endif()
endforeach()

# Build-tree include directories become the installed include/esper. (esper::build_flags, the
# warnings and sanitizers of this tree's own sources, is linked as $<BUILD_INTERFACE:...> and so
# never reaches an installed consumer.)
foreach(t IN LISTS esper_libraries)
  string(REGEX REPLACE "^esper_" "" name ${t})
  set_target_properties(${t} PROPERTIES EXPORT_NAME ${name})
  foreach(prop INTERFACE_INCLUDE_DIRECTORIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES)
    get_target_property(dirs ${t} ${prop})
    if(dirs)
      set(wrapped)
      foreach(d IN LISTS dirs)
        list(APPEND wrapped "$<BUILD_INTERFACE:${d}>")
      endforeach()
      list(APPEND wrapped "$<INSTALL_INTERFACE:${ESPER_INSTALL_INCLUDEDIR}>")
      if(t MATCHES "^esper_fbs")  # the generated headers include each other by bare name
        list(APPEND wrapped "$<INSTALL_INTERFACE:${ESPER_INSTALL_INCLUDEDIR}/fbs>")
      endif()
      list(REMOVE_DUPLICATES wrapped)
      set_target_properties(${t} PROPERTIES ${prop} "${wrapped}")
    endif()
  endforeach()
endforeach()

install(TARGETS ${esper_libraries} EXPORT esperTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${ESPER_INSTALL_INCLUDEDIR})
install(EXPORT esperTargets NAMESPACE esper:: DESTINATION ${ESPER_INSTALL_CMAKEDIR})

# The tools: esper, and esper-run beside it (esper executes it for `esper run`).
foreach(t esper esper-run)
  if(TARGET ${t})
    install(TARGETS ${t} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()

# Headers keep the paths the sources include them by: "fabric/node.hpp", "kernels/seed_layer.hpp",
# "mpi/bootstrap.hpp", "fbs/envelope_generated.h".
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/ DESTINATION ${ESPER_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp" PATTERN "cli" EXCLUDE)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/kernels/ DESTINATION ${ESPER_INSTALL_INCLUDEDIR}/kernels
        FILES_MATCHING PATTERN "*.hpp" PATTERN "*.cuh")
if(TARGET esper_mpi)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/mpi/ DESTINATION ${ESPER_INSTALL_INCLUDEDIR}/mpi FILES_MATCHING PATTERN "*.hpp")
endif()
install(DIRECTORY ${CMAKE_BINARY_DIR}/generated/fbs/ DESTINATION ${ESPER_INSTALL_INCLUDEDIR}/fbs
        FILES_MATCHING PATTERN "*_generated.h")
# The schemas, for a peer written in another language (docs/protocol.md, "Implementing a peer").
install(DIRECTORY ${PROJECT_SOURCE_DIR}/fbs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/esper/fbs FILES_MATCHING PATTERN "*.fbs")

# The package: what the export needs found again, and which parts this build has.
set(ESPER_PACKAGE_COMPONENTS)
foreach(t IN LISTS esper_libraries)
  string(REGEX REPLACE "^esper_" "" name ${t})
  list(APPEND ESPER_PACKAGE_COMPONENTS ${name})
endforeach()
set(ESPER_PACKAGE_NCCL_LIBRARY "")
set(ESPER_PACKAGE_NCCL_INCLUDE "")
if(ESPER_HAVE_NCCL)
  set(ESPER_PACKAGE_NCCL_LIBRARY ${ESPER_NCCL_LIBRARY})
  set(ESPER_PACKAGE_NCCL_INCLUDE ${ESPER_NCCL_INCLUDE})
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/esperConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/esperConfig.cmake INSTALL_DESTINATION ${ESPER_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/esperConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/esperConfig.cmake ${CMAKE_BINARY_DIR}/esperConfigVersion.cmake
        DESTINATION ${ESPER_INSTALL_CMAKEDIR})

# pkg-config: the fabric and what it needs (static libraries, so their dependencies are listed as
# Requires/Libs, not .private).
file(RELATIVE_PATH ESPER_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(${PROJECT_SOURCE_DIR}/cmake/esper.pc.in ${CMAKE_BINARY_DIR}/esper.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/esper.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
