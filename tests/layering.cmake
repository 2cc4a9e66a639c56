# The layering test: builds each check target of tests/layering/ (each a file that includes a header
# its layer may not see, linked as that layer) and requires the compiler to say that header is not
# found; the control target (a permitted include) must build. Run by CTest as
#   cmake -DBUILD_DIR=... -DCHECKS="target:header|..." -DCONTROL=target -P layering.cmake
string(REPLACE "|" ";" CHECKS "${CHECKS}")
foreach(check IN LISTS CHECKS)
  string(REPLACE ":" ";" parts "${check}")
  list(GET parts 0 target)
  list(GET parts 1 header)
  execute_process(COMMAND ${CMAKE_COMMAND} --build "${BUILD_DIR}" --target ${target}
                  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(status EQUAL 0)
    message(FATAL_ERROR "${target}: built, but its layer must not see ${header}")
  endif()
  string(FIND "${out}${err}" "${header}: No such file or directory" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "${target}: failed, but not because ${header} was not found:\n${out}${err}")
  endif()
  message(STATUS "${target}: ${header} not found, as the layering requires")
endforeach()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${BUILD_DIR}" --target ${CONTROL}
                RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${CONTROL}: a permitted include failed to build:\n${out}${err}")
endif()
message(STATUS "${CONTROL}: built")
