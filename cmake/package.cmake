# The Debian package (CPack): `cpack -G DEB` in a release build directory makes
# agentbox_<version>_<arch>.deb with agentboxd and the CLI in /usr/bin, the static guest and the
# jail helper in /usr/lib/agentbox (agentboxd finds them there), a hardened systemd unit, a default
# configuration in /etc/agentbox, and the alert rules and dashboard in /usr/share/agentbox.
install(TARGETS agentboxd agentbox RUNTIME DESTINATION bin)
install(PROGRAMS $<TARGET_FILE:agentbox-jail> DESTINATION lib/agentbox)
install(PROGRAMS ${AGENTBOX_SANDBOX_GUEST} DESTINATION lib/agentbox RENAME agentbox-guest)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/agentboxd.service DESTINATION lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/agentbox.conf ${PROJECT_SOURCE_DIR}/deploy/agentbox.env
        DESTINATION /etc/agentbox PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/prometheus/agentbox-rules.yml
              ${PROJECT_SOURCE_DIR}/deploy/grafana/agentbox-dashboard.json
        DESTINATION share/agentbox)
install(FILES ${PROJECT_SOURCE_DIR}/docs/operations.md ${PROJECT_SOURCE_DIR}/README.md
        DESTINATION share/doc/agentbox)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME agentbox)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "agentbox maintainers <agentbox@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "sandbox runtime for AI agents (jail, docker and Cloud Run backends)")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "e2fsprogs")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "docker.io, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
