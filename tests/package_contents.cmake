# The .deb end to end: cpack -G DEB from the build tree into a scratch folder, then `dpkg-deb` reads
# back what a user would install. Run by CTest (tests/CMakeLists.txt) with
#   -DBUILD_DIR=<build tree> -DOUT_DIR=<scratch folder> -DCPACK=<cpack> -DDPKG_DEB=<dpkg-deb>
foreach(var BUILD_DIR OUT_DIR CPACK DPKG_DEB)
  if(NOT ${var})
    message(FATAL_ERROR "package_contents.cmake needs -D${var}=...")
  endif()
endforeach()

file(REMOVE_RECURSE "${OUT_DIR}")
file(MAKE_DIRECTORY "${OUT_DIR}")
execute_process(COMMAND "${CPACK}" -G DEB -B "${OUT_DIR}" --config "${BUILD_DIR}/CPackConfig.cmake"
                WORKING_DIRECTORY "${BUILD_DIR}" RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "cpack failed (${status}):\n${out}\n${err}")
endif()
file(GLOB debs "${OUT_DIR}/*.deb")
list(LENGTH debs count)
if(NOT count EQUAL 1)
  message(FATAL_ERROR "expected one .deb in ${OUT_DIR}, found ${count}: ${debs}\n${out}")
endif()

execute_process(COMMAND "${DPKG_DEB}" -c "${debs}" RESULT_VARIABLE status OUTPUT_VARIABLE listing ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "dpkg-deb -c ${debs} failed: ${err}")
endif()
set(missing "")
foreach(path
    ./usr/bin/fisedit
    ./usr/bin/fisedit-cli
    ./usr/share/applications/fisedit.desktop
    ./usr/share/icons/hicolor/scalable/apps/fisedit.svg
    ./usr/share/metainfo/io.github.fisedit.fisedit.metainfo.xml
    ./usr/share/doc/fisedit/user-guide.md
    ./usr/share/doc/fisedit/images/main-window.png
    ./usr/share/fisedit/models/toyworld/model_index.json
    ./usr/share/fisedit/models/toyworld/scheduler/scheduler_config.json
    ./usr/share/fisedit/models/toyworld/unet/config.json
    ./usr/share/fisedit/models/toyworld/unet/diffusion_pytorch_model.safetensors
    ./usr/share/fisedit/models/toyworld/vae/config.json
    ./usr/share/fisedit/models/toyworld/vae/diffusion_pytorch_model.safetensors
    ./usr/share/fisedit/models/toyworld/text_encoder/config.json
    ./usr/share/fisedit/models/toyworld/text_encoder/model.safetensors
    ./usr/share/fisedit/models/toyworld/tokenizer/vocab.json
    ./usr/share/fisedit/models/toyworld/tokenizer/merges.txt
    ./usr/share/fisedit/models/toyworld/tokenizer/special_tokens_map.json
    ./usr/share/fisedit/models/toyworld/tokenizer/tokenizer_config.json)
  # dpkg-deb lists "<mode> <owner> <size> <date> <time> <path>": match the path at a line's end.
  string(REGEX MATCH " ${path}\n" found "${listing}\n")
  if(NOT found)
    list(APPEND missing "${path}")
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "the package lacks:\n  ${missing}\nIt holds:\n${listing}")
endif()
# Debian's dpkg-shlibdeps (through CPack) turns the binaries' libraries into the package's Depends.
execute_process(COMMAND "${DPKG_DEB}" -f "${debs}" Package Depends OUTPUT_VARIABLE control)
if(NOT control MATCHES "Package: fisedit" OR NOT control MATCHES "libqt6widgets6")
  message(FATAL_ERROR "unexpected control fields (shlibdeps should list Qt):\n${control}")
endif()
message(STATUS "${debs}: every expected file present\n${control}")
