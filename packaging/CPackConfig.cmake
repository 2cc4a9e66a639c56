# `cpack -G DEB` in a build folder makes a .deb with the app, the CLI and the desktop integration.
install(FILES ${PROJECT_SOURCE_DIR}/packaging/fisedit.desktop DESTINATION share/applications)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/io.github.fisedit.fisedit.metainfo.xml DESTINATION share/metainfo)
install(FILES ${PROJECT_SOURCE_DIR}/resources/fisedit.svg DESTINATION share/icons/hicolor/scalable/apps)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME fisedit)
set(CPACK_PACKAGE_VENDOR "fisedit developers")
set(CPACK_PACKAGE_CONTACT "fisedit developers <fisedit@users.noreply.github.com>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_DEBIAN_PACKAGE_SECTION graphics)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps (dpkg-dev) and `file`, from install-deps.sh
# The package carries the binaries without their debug information: a tenth of the size, and the
# build tree keeps the unstripped ones for debugging.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
include(CPack)
