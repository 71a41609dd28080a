# `cmake --install` and the Debian package (CPack DEB; docs/deploy.md):
#   bin/tributary
#   lib/systemd/system/tributary-coordinator.service, tributary-worker@.service
#       (ExecStart rewritten to this prefix's bin/; systemd reads /usr/lib/systemd/system and
#       /usr/local/lib/systemd/system alike)
#   lib/sysusers.d/tributary.conf (the `tributary` system user; the .deb's postinst applies it)
#   share/doc/tributary/ README.md, docs/*.md, examples/ (configs and job specs: nothing is written
#       to /etc; the units' ConfigurationDirectory= creates /etc/tributary, empty)
set(TRIBUTARY_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where the systemd units are installed, relative to the prefix (or absolute)")
set(TRIBUTARY_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING
    "Where the sysusers.d file is installed, relative to the prefix (or absolute)")

# The units in deploy/systemd name /usr/bin/tributary (the .deb's path); the installed copies name the
# binary under the prefix of the install (cpack installs with its own prefix, /usr).
set(_units tributary-coordinator.service tributary-worker@.service)
install(CODE "set(TRIBUTARY_UNITS \"${_units}\")
set(TRIBUTARY_UNIT_SOURCE_DIR \"${PROJECT_SOURCE_DIR}/deploy/systemd\")
set(TRIBUTARY_UNIT_BINARY_DIR \"${PROJECT_BINARY_DIR}/deploy/systemd\")
set(TRIBUTARY_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
set(TRIBUTARY_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")")
install(SCRIPT cmake/TributaryInstallUnits.cmake)
foreach(unit IN LISTS _units)
  install(FILES ${PROJECT_BINARY_DIR}/deploy/systemd/${unit} DESTINATION ${TRIBUTARY_SYSTEMD_UNIT_DIR})
endforeach()
install(FILES deploy/systemd/tributary.sysusers DESTINATION ${TRIBUTARY_SYSUSERS_DIR} RENAME tributary.conf)

install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md" PATTERN "*.png")
install(DIRECTORY examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# ---- Debian package: `cpack -G DEB` in the build directory (or the `package` target) ----
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "tributary")
set(CPACK_PACKAGE_VENDOR "tributary")
set(CPACK_PACKAGE_CONTACT "tributary maintainers <tributary@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "federated and cluster fine-tuning of LLaMA-family models")
set(CPACK_PACKAGE_INSTALL_DIRECTORY "tributary")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "science")
# Runtime dependencies from the binary's NEEDED libraries (dpkg-shlibdeps; a CUDA runtime from
# NVIDIA's installer is no Debian package and is left out). systemd provides systemd-sysusers.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
