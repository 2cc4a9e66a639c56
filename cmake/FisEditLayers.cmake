# fisedit_layer(): one target per layer, whose headers are reachable only through the include root it
# publishes (docs/design-notes.md, "Layers").
#
# fisedit_layer(TARGET [EXECUTABLE] [SEALED] [BASE dir] PUBLISH paths... SOURCES files...
#               [PUBLIC deps...] [PRIVATE deps...])
# PUBLISH: folders (or single headers) relative to BASE (default: the calling CMakeLists' folder). The target's include
# root, build/.../layers/<target>/, holds links to those paths and nothing else; a target compiles with
# its own root and the roots of the targets it links. An include that names a layer the target does not
# link (a lower layer including "pipeline/...", the UI including "backend/cuda/...") finds no such file,
# and the build fails there.
# SEALED: the root is private to the target: what links it sees none of its headers.
# EXECUTABLE: an executable (its root is private) instead of a static library.
set(FISEDIT_LAYER_ROOT "${PROJECT_BINARY_DIR}/layers")

function(fisedit_layer target)
  cmake_parse_arguments(L "SEALED;EXECUTABLE" "BASE" "PUBLISH;SOURCES;PUBLIC;PRIVATE" ${ARGN})
  set(root "${FISEDIT_LAYER_ROOT}/${target}")
  if(NOT L_BASE)
    set(L_BASE "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  file(REMOVE_RECURSE "${root}")
  file(MAKE_DIRECTORY "${root}")
  foreach(path IN LISTS L_PUBLISH)
    if(NOT EXISTS "${L_BASE}/${path}")
      message(FATAL_ERROR "fisedit_layer(${target}): ${L_BASE}/${path} does not exist")
    endif()
    get_filename_component(parent "${root}/${path}" DIRECTORY)
    file(MAKE_DIRECTORY "${parent}")
    file(CREATE_LINK "${L_BASE}/${path}" "${root}/${path}" SYMBOLIC)
  endforeach()
  if(L_EXECUTABLE)
    add_executable(${target} ${L_SOURCES})
    target_include_directories(${target} PRIVATE "${root}")
    target_link_libraries(${target} PRIVATE ${L_PUBLIC} ${L_PRIVATE})
    return()
  endif()
  add_library(${target} STATIC ${L_SOURCES})
  if(L_SEALED)
    target_include_directories(${target} PRIVATE "${root}")
  else()
    target_include_directories(${target} PUBLIC "${root}")
  endif()
  target_link_libraries(${target} PUBLIC ${L_PUBLIC} PRIVATE ${L_PRIVATE})
endfunction()
