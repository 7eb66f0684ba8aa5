# esper_flatbuffers(target OUT_DIR dir SCHEMAS a.fbs ... [INCLUDE_DIRS dir ...] [DEPENDS target ...])
# Generates C++ headers (object API, comparison operators, mutable accessors, scoped enums) at build
# time into OUT_DIR and makes `target` an INTERFACE library that carries their include path.
include_guard(GLOBAL)

function(esper_flatbuffers target)
  cmake_parse_arguments(arg "" "OUT_DIR" "SCHEMAS;INCLUDE_DIRS;DEPENDS" ${ARGN})
  set(headers)
  set(include_flags)
  foreach(dir IN LISTS arg_INCLUDE_DIRS)
    list(APPEND include_flags -I ${dir})
  endforeach()
  foreach(schema IN LISTS arg_SCHEMAS)
    get_filename_component(stem ${schema} NAME_WE)
    get_filename_component(abs ${schema} ABSOLUTE)
    set(header ${arg_OUT_DIR}/${stem}_generated.h)
    add_custom_command(
      OUTPUT ${header}
      COMMAND flatbuffers::flatc --cpp --gen-object-api --gen-compare --gen-mutable --scoped-enums
              --reflect-names -o ${arg_OUT_DIR} ${include_flags} ${abs}
      DEPENDS ${abs} flatbuffers::flatc ${arg_SCHEMAS}
      COMMENT "flatc ${stem}.fbs"
      VERBATIM)
    list(APPEND headers ${header})
  endforeach()
  add_custom_target(${target}_generate DEPENDS ${headers})
  add_library(${target} INTERFACE)
  add_dependencies(${target} ${target}_generate ${arg_DEPENDS})
  get_filename_component(parent ${arg_OUT_DIR} DIRECTORY)
  target_include_directories(${target} SYSTEM INTERFACE ${parent} ${arg_OUT_DIR})
  target_link_libraries(${target} INTERFACE flatbuffers::flatbuffers)
endfunction()
