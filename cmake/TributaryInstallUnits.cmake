# Install-time step of cmake/TributaryPackaging.cmake: writes the systemd units with ExecStart and
# Documentation= naming the binary and the docs under the prefix being installed to
# (CMAKE_INSTALL_PREFIX is the install's, not the configure's: cpack installs to /usr).
foreach(unit IN LISTS TRIBUTARY_UNITS)
  file(READ "${TRIBUTARY_UNIT_SOURCE_DIR}/${unit}" text)
  string(REPLACE "/usr/bin/tributary" "${CMAKE_INSTALL_PREFIX}/${TRIBUTARY_BINDIR}/tributary" text "${text}")
  string(REPLACE "/usr/share/doc/tributary" "${CMAKE_INSTALL_PREFIX}/${TRIBUTARY_DOCDIR}" text "${text}")
  file(WRITE "${TRIBUTARY_UNIT_BINARY_DIR}/${unit}" "${text}")
endforeach()
